/* test_gemm.c: dm_sgemm on each backend (OpenBLAS always, oneDNN where
 * libdnnl.so.2 loads; skipped with a message elsewhere) against a double
 * triple loop: all four transpose pairs, sizes that are no multiple of any
 * kernel's tile, leading dimensions wider than the rows, beta 0 (C is not
 * read: NaN there must not leak) and beta 1 (accumulates), alpha != 1, and
 * K = 0. Also the backend selection: a bad name is refused in one line and
 * changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm.h"
#include "core/rng.h"

static float at(const float *x, size_t ld, char tr, size_t i, size_t j)
{
    return tr == 'N' ? x[i * ld + j] : x[j * ld + i];
}

/* One product on the current backend against the double loop. */
static void check_one(char ta, char tb, size_t M, size_t N, size_t K, float alpha, float beta)
{
    const size_t pad = 3;
    const size_t lda = (ta == 'N' ? K : M) + pad, ldb = (tb == 'N' ? N : K) + pad, ldc = N + pad;
    const size_t ra = ta == 'N' ? M : K, rb = tb == 'N' ? K : N;
    float *A = malloc((ra * lda + 1) * sizeof *A), *B = malloc((rb * ldb + 1) * sizeof *B);
    float *C = malloc((M * ldc + 1) * sizeof *C), *C0 = malloc((M * ldc + 1) * sizeof *C0);
    dm_rng rng;
    dm_rng_seed(&rng, 7 + M * 31 + N * 7 + K);
    for (size_t i = 0; i < ra * lda; i++) A[i] = 2.0f * dm_rng_uniform(&rng) - 1.0f;
    for (size_t i = 0; i < rb * ldb; i++) B[i] = 2.0f * dm_rng_uniform(&rng) - 1.0f;
    for (size_t i = 0; i < M * ldc; i++)
        C0[i] = beta == 0.0f ? NAN : 2.0f * dm_rng_uniform(&rng) - 1.0f;
    memcpy(C, C0, M * ldc * sizeof *C);
    dm_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < ldc; j++) {
            if (j >= N) {
                /* the padding of each C row is left alone */
                assert_memory_equal(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float));
                continue;
            }
            double s = 0.0, mag = 0.0;
            for (size_t k = 0; k < K; k++) {
                double p = (double)at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
                s += p;
                mag += fabs(p);
            }
            double ref = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C0[i * ldc + j]);
            double tol = 1e-5 * (fabs(alpha) * mag + fabs(beta) + 1.0);
            if (!(fabs(C[i * ldc + j] - ref) <= tol))
                fail_msg("%s %c%c %zux%zux%zu alpha %g beta %g: C[%zu][%zu] = %.9g, expected %.9g",
                         dm_gemm_name(), ta, tb, M, N, K, alpha, beta, i, j, C[i * ldc + j], ref);
        }
    }
    free(A);
    free(B);
    free(C);
    free(C0);
}

static void check_backend(void)
{
    static const size_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 33, 65}, {16, 768, 256},
                                       {37, 129, 200}, {130, 19, 1}};
    const char tr[2] = {'N', 'T'};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                check_one(tr[a], tr[b], shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
                check_one(tr[a], tr[b], shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 1.0f);
            }
    /* K = 0: C = beta C */
    float C[6] = {1, 2, 3, 4, 5, 6}, one = 1.0f;
    dm_sgemm('N', 'N', 2, 3, 0, 1.0f, &one, 1, &one, 3, 0.5f, C, 3);
    for (int i = 0; i < 6; i++) assert_float_equal(C[i], 0.5f * (float)(i + 1), 0.0f);
    dm_sgemm('N', 'N', 2, 3, 0, 1.0f, &one, 1, &one, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_float_equal(C[i], 0.0f, 0.0f);
}

static void test_openblas(void **state)
{
    dm_error err;
    assert_int_equal(dm_gemm_use("openblas", &err), 0);
    assert_int_equal(dm_gemm_current(), DM_GEMM_OPENBLAS);
    assert_string_equal(dm_gemm_name(), "OpenBLAS");
    check_backend();
}

static void test_dnnl(void **state)
{
    dm_error err;
    if (!dm_gemm_dnnl_available()) {
        /* cmocka's skip() becomes TAP's "# SKIP" */
        print_message("oneDNN (libdnnl.so.2) does not load here; its path is not tested\n");
        skip();
    }
    assert_int_equal(dm_gemm_use("dnnl", &err), 0);
    assert_int_equal(dm_gemm_current(), DM_GEMM_DNNL);
    assert_string_equal(dm_gemm_name(), "oneDNN");
    assert_string_not_equal(dm_gemm_kernel(), "unknown");
    check_backend();
    /* thread counts reach oneDNN's pool */
    dm_gemm_set_threads(1);
    assert_int_equal(dm_gemm_get_threads(), 1);
    check_one('N', 'T', 64, 300, 70, 1.0f, 1.0f);
    dm_gemm_set_threads(2);
    assert_int_equal(dm_gemm_get_threads(), 2);
    check_one('N', 'T', 64, 300, 70, 1.0f, 1.0f);
}

static void test_bad_name(void **state)
{
    dm_error err;
    assert_int_equal(dm_gemm_use("openblas", &err), 0);
    assert_int_equal(dm_gemm_use("mkl", &err), -1);
    assert_non_null(strstr(err.msg, "unknown backend \"mkl\""));
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(dm_gemm_current(), DM_GEMM_OPENBLAS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openblas),
        cmocka_unit_test(test_dnnl),
        cmocka_unit_test(test_bad_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
