/* test_dist.c: core/dist.c in a process no MPI launcher started, the way
 * every drlmem run without mpirun works: dm_dist_init calls no MPI at all
 * (MPI_Initialized stays false), the world is rank 0 of 1, collectives
 * leave the data as it is (times the prescale), bad arguments fail with a
 * message, and nothing works after finalize. The collectives across ranks
 * are tested under mpirun by tests/host/dist.sh.
 *
 * The dist state is per process and finalize is final, so the tests run in
 * the order listed in main and each builds on the one before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"

static void test_not_launched(void **state)
{
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMIX_RANK");
    assert_int_equal(dm_dist_launched(), 0);
    setenv("PMIX_RANK", "0", 1);
    assert_int_equal(dm_dist_launched(), 1);
    unsetenv("PMIX_RANK");
    assert_int_equal(dm_dist_initialized(), 0);
    assert_int_equal(dm_dist_rank(), 0);
    assert_int_equal(dm_dist_size(), 1);
}

static void test_bad_timeout_env(void **state)
{
    dm_error err;
    setenv("DRLMEM_DIST_TIMEOUT", "ten", 1);
    assert_int_equal(dm_dist_init(-1, &err), -1);
    assert_string_equal(err.msg, "dist.init: DRLMEM_DIST_TIMEOUT must be a number of seconds >= 0 "
                                 "(0: no limit), got 'ten'");
    setenv("DRLMEM_DIST_TIMEOUT", "-3", 1);
    assert_int_equal(dm_dist_init(-1, &err), -1);
    assert_int_equal(dm_dist_initialized(), 0);
    setenv("DRLMEM_DIST_TIMEOUT", "2.5", 1);
}

static void test_single_init_calls_no_mpi(void **state)
{
    dm_error err;
    assert_int_equal(dm_dist_init(-1, &err), 0);
    assert_int_equal(dm_dist_initialized(), 1);
    assert_int_equal(dm_dist_uses_mpi(), 0);
    assert_true(dm_dist_timeout() == 2.5);
    assert_int_equal(dm_dist_rank(), 0);
    assert_int_equal(dm_dist_size(), 1);
    int mpi_up = 1;
    MPI_Initialized(&mpi_up);
    assert_int_equal(mpi_up, 0);
    /* init again only changes the deadline */
    assert_int_equal(dm_dist_init(7, &err), 0);
    assert_true(dm_dist_timeout() == 7);
}

static void test_single_collectives(void **state)
{
    dm_error err;
    dm_tensor a = {0}, b = {0}, bt = {0};
    int64_t sa[1] = {3}, sb[2] = {2, 2};
    assert_int_equal(dm_tensor_init(&a, DM_F32, 1, sa, "t", &err), 0);
    assert_int_equal(dm_tensor_init(&b, DM_F32, 2, sb, "t", &err), 0);
    float *pa = dm_tensor_f32(&a), *pb = dm_tensor_f32(&b);
    for (int i = 0; i < 3; i++) pa[i] = (float)(i + 1);
    for (int i = 0; i < 4; i++) pb[i] = (float)(10 * (i + 1));
    /* a transposed (strided) view is scaled through its strides */
    assert_int_equal(dm_tensor_transpose(&bt, &b, 0, 1, &err), 0);
    dm_tensor *ts[2] = {&a, &bt};
    assert_int_equal(dm_dist_allreduce_tensors(ts, 2, DM_DIST_MEAN, 1.0, 4, &err), 0);
    assert_true(pa[0] == 1 && pa[2] == 3 && pb[3] == 40);
    assert_int_equal(dm_dist_allreduce_tensors(ts, 2, DM_DIST_SUM, 0.5, 0, &err), 0);
    assert_true(pa[0] == 0.5f && pa[2] == 1.5f && pb[0] == 5 && pb[3] == 20);
    double v[2] = {3, -1};
    assert_int_equal(dm_dist_allreduce_f64(v, 2, DM_DIST_MAX, &err), 0);
    assert_true(v[0] == 3 && v[1] == -1);
    char s[4] = "abc";
    assert_int_equal(dm_dist_broadcast_bytes(s, 4, 0, &err), 0);
    assert_string_equal(s, "abc");
    assert_int_equal(dm_dist_broadcast_tensors(ts, 2, 0, 0, &err), 0);
    assert_int_equal(dm_dist_barrier(&err), 0);
    dm_tensor_release(&bt);
    dm_tensor_release(&b);
    dm_tensor_release(&a);
}

static void test_bad_arguments(void **state)
{
    dm_error err;
    dm_tensor f = {0}, i = {0}, empty = {0};
    int64_t s[1] = {2};
    assert_int_equal(dm_tensor_init(&f, DM_F32, 1, s, "t", &err), 0);
    assert_int_equal(dm_tensor_init(&i, DM_I32, 1, s, "t", &err), 0);
    dm_tensor *ti[1] = {&i}, *tf[1] = {&f}, *te[2] = {&f, &empty};
    assert_int_equal(dm_dist_allreduce_tensors(ti, 1, DM_DIST_MEAN, 1.0, 0, &err), -1);
    assert_non_null(strstr(err.msg, "op mean of int32 tensor 1"));
    assert_int_equal(dm_dist_allreduce_tensors(tf, 1, DM_DIST_MAX, 2.0, 0, &err), -1);
    assert_string_equal(err.msg, "dist.allreduce: scale applies to float32 sum and mean only "
                                 "(tensor 1 is float32, op max)");
    assert_int_equal(dm_dist_allreduce_tensors(tf, 1, (dm_dist_op)9, 1.0, 0, &err), -1);
    assert_non_null(strstr(err.msg, "unknown op 9"));
    assert_int_equal(dm_dist_allreduce_tensors(te, 2, DM_DIST_SUM, 1.0, 0, &err), -1);
    assert_string_equal(err.msg, "dist.allreduce: tensor 2 is empty");
    assert_int_equal(dm_dist_broadcast_tensors(tf, 1, 1, 0, &err), -1);
    assert_string_equal(err.msg, "dist.broadcast: root 1 is not a rank (0..0)");
    dm_tensor_release(&i);
    dm_tensor_release(&f);
}

static void test_after_finalize(void **state)
{
    dm_error err;
    assert_int_equal(dm_dist_finalize(&err), 0);
    assert_int_equal(dm_dist_finalize(&err), 0);
    assert_int_equal(dm_dist_initialized(), 0);
    assert_int_equal(dm_dist_barrier(&err), -1);
    assert_non_null(strstr(err.msg, "dist.barrier: MPI has been finalized"));
    assert_int_equal(dm_dist_init(-1, &err), -1);
    assert_non_null(strstr(err.msg, "cannot be initialized again"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_launched),
        cmocka_unit_test(test_bad_timeout_env),
        cmocka_unit_test(test_single_init_calls_no_mpi),
        cmocka_unit_test(test_single_collectives),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_after_finalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
