/* test_contentwrite.c: the `content` write policy (src/core/contentwrite.c).
 * Its post-step write against a double-precision computation of the rule
 * written out in the file's header; the properties that make it differ
 * from blend (a slot nobody read is left exactly as it was, a slot read by
 * every row with full strength becomes the mean of the normalised rows,
 * the row order does not matter); bad input refused in one line with the
 * memory untouched; the kind is registered as a write policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "core/part.h"
#include "core/rng.h"

static const dm_part_ops *kind(void)
{
    const dm_part_ops *ops = dm_part_find("content", DM_ROLE_POLICY);
    assert_non_null(ops);
    assert_non_null(ops->memory_write);
    return ops;
}

static int write(float *keys, float *values, size_t M, size_t D, const float *nk, const float *nv,
                 const float *w, size_t R, float s, dm_error *err)
{
    return kind()->memory_write(NULL, keys, values, M, D, nk, nv, w, R, s, err);
}

/* The rule in double: a_i = mean_r w_ri; x_i <- (1 - s a_i) x_i + (s/R) sum_r w_ri xh_r. */
static void reference(double *out, const float *x, const float *rows, const float *w, size_t M,
                      size_t D, size_t R, double s)
{
    for (size_t i = 0; i < M; i++) {
        double a = 0.0;
        for (size_t r = 0; r < R; r++) a += w[r * M + i];
        a /= (double)R;
        for (size_t j = 0; j < D; j++) {
            double acc = 0.0;
            for (size_t r = 0; r < R; r++) {
                double nrm = 0.0;
                for (size_t c = 0; c < D; c++) nrm += (double)rows[r * D + c] * rows[r * D + c];
                acc += w[r * M + i] * rows[r * D + j] / fmax(sqrt(nrm), 1e-12);
            }
            out[i * D + j] = (1.0 - s * a) * x[i * D + j] + s / (double)R * acc;
        }
    }
}

/* Softmax rows of random scores: weights as a read leaves them. */
static void random_weights(float *w, size_t R, size_t M, dm_rng *rng)
{
    for (size_t r = 0; r < R; r++) {
        double z = 0.0;
        for (size_t i = 0; i < M; i++) {
            w[r * M + i] = expf(3.0f * (2.0f * dm_rng_uniform(rng) - 1.0f));
            z += w[r * M + i];
        }
        for (size_t i = 0; i < M; i++) w[r * M + i] = (float)(w[r * M + i] / z);
    }
}

static void random_fill(float *x, size_t n, dm_rng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * dm_rng_uniform(rng) - 1.0f;
}

static void test_rule(void **state)
{
    (void)state;
    enum { M = 5, D = 3, R = 4 };
    dm_rng rng;
    dm_rng_seed(&rng, 11);
    float keys[M * D], values[M * D], k0[M * D], v0[M * D], nk[R * D], nv[R * D], w[R * M];
    random_fill(keys, M * D, &rng);
    random_fill(values, M * D, &rng);
    random_fill(nk, R * D, &rng);
    random_fill(nv, R * D, &rng);
    random_weights(w, R, M, &rng);
    memcpy(k0, keys, sizeof keys);
    memcpy(v0, values, sizeof values);
    dm_error err = {0};
    assert_int_equal(write(keys, values, M, D, nk, nv, w, R, 0.3f, &err), 0);
    double rk[M * D], rv[M * D];
    reference(rk, k0, nk, w, M, D, R, 0.3);
    reference(rv, v0, nv, w, M, D, R, 0.3);
    for (size_t i = 0; i < M * D; i++) {
        assert_true(fabs(keys[i] - rk[i]) < 1e-6);
        assert_true(fabs(values[i] - rv[i]) < 1e-6);
        /* and the write did move the memory */
        assert_true(fabs(keys[i] - k0[i]) > 1e-4 || fabs(values[i] - v0[i]) > 1e-4);
    }
}

static void test_where_it_was_read(void **state)
{
    (void)state;
    enum { M = 4, D = 2, R = 3 };
    float keys[M * D] = {1, 2, 3, 4, 5, 6, 7, 8}, values[M * D] = {-1, -2, -3, -4, -5, -6, -7, -8};
    const float nk[R * D] = {3, 4, 0, 2, -1, 0}, nv[R * D] = {1, 0, 0, -5, 6, 8};
    /* every row reads slot 1 (0-based) only; slot 3 nobody */
    float w[R * M] = {0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0};
    float k0[M * D];
    memcpy(k0, keys, sizeof keys);
    dm_error err = {0};
    assert_int_equal(write(keys, values, M, D, nk, nv, w, R, 1.0f, &err), 0);
    /* unread slots: bit for bit as they were (blend would have moved all) */
    for (size_t i = 0; i < M; i++) {
        if (i == 1) continue;
        for (size_t j = 0; j < D; j++) assert_true(keys[i * D + j] == k0[i * D + j]);
    }
    /* the slot every row read, at full strength: the mean of the unit rows */
    const float mk[2] = {(0.6f + 0.0f - 1.0f) / 3, (0.8f + 1.0f + 0.0f) / 3};
    const float mv[2] = {(1.0f + 0.0f + 0.6f) / 3, (0.0f - 1.0f + 0.8f) / 3};
    for (size_t j = 0; j < D; j++) {
        assert_true(fabsf(keys[D + j] - mk[j]) < 1e-6f);
        assert_true(fabsf(values[D + j] - mv[j]) < 1e-6f);
    }
}

static void test_row_order(void **state)
{
    (void)state;
    enum { M = 6, D = 4, R = 5 };
    dm_rng rng;
    dm_rng_seed(&rng, 3);
    float k1[M * D], v1[M * D], nk[R * D], nv[R * D], w[R * M];
    random_fill(k1, M * D, &rng);
    random_fill(v1, M * D, &rng);
    random_fill(nk, R * D, &rng);
    random_fill(nv, R * D, &rng);
    random_weights(w, R, M, &rng);
    float k2[M * D], v2[M * D], pk[R * D], pv[R * D], pw[R * M];
    memcpy(k2, k1, sizeof k1);
    memcpy(v2, v1, sizeof v1);
    for (size_t r = 0; r < R; r++) { /* rows reversed */
        memcpy(pk + r * D, nk + (R - 1 - r) * D, D * sizeof(float));
        memcpy(pv + r * D, nv + (R - 1 - r) * D, D * sizeof(float));
        memcpy(pw + r * M, w + (R - 1 - r) * M, M * sizeof(float));
    }
    dm_error err = {0};
    assert_int_equal(write(k1, v1, M, D, nk, nv, w, R, 0.5f, &err), 0);
    assert_int_equal(write(k2, v2, M, D, pk, pv, pw, R, 0.5f, &err), 0);
    for (size_t i = 0; i < M * D; i++) {
        assert_true(fabsf(k1[i] - k2[i]) < 1e-6f);
        assert_true(fabsf(v1[i] - v2[i]) < 1e-6f);
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    float keys[4] = {1, 2, 3, 4}, values[4] = {5, 6, 7, 8}, nk[2] = {1, 0}, nv[2] = {0, 1},
          w[2] = {0.5f, 0.5f};
    const float k0[4] = {1, 2, 3, 4}, v0[4] = {5, 6, 7, 8};
    dm_error err = {0};
    assert_int_equal(write(keys, values, 2, 2, nk, nv, w, 1, 1.5f, &err), -1);
    assert_non_null(strstr(err.msg, "strength must be in [0, 1], got 1.5"));
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(write(keys, values, 2, 2, nk, nv, w, 1, NAN, &err), -1);
    assert_int_equal(write(keys, values, 2, 2, nk, nv, w, 0, 0.5f, &err), -1);
    assert_non_null(strstr(err.msg, "rows must be >= 1"));
    assert_memory_equal(keys, k0, sizeof k0);
    assert_memory_equal(values, v0, sizeof v0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_where_it_was_read),
        cmocka_unit_test(test_row_order),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
