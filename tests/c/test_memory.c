/* test_memory.c: the differentiable memory (memory.h). Finite differences of
 * the read in query, keys and values; usage counting with duplicate argmax
 * slots counted once; the write against a hand computation; parity with the
 * PyTorch golden dumps (scores, softmax, output, usage, read gradients, the
 * upstream write); the standalone object; bad input and NaN queries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory.h"

/* ---- fixture helpers --------------------------------------------------- */

/* Reads exactly n float32 values from tests/fixtures/<dir>/<name>.bin. */
static float *load(const char *dir, const char *name, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (tests run from the repository root)", path);
    float *buf = malloc(n * sizeof(float) + 1);
    size_t got = fread(buf, sizeof(float), n + 1, f);
    fclose(f);
    if (got != n) fail_msg("%s: expected %zu floats, file has %zu", path, n, got);
    return buf;
}

/* |a - b| <= tol * max|ref| elementwise (tolerance relative to the scale). */
static void assert_close(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    if (scale == 0.0) scale = 1.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= tol * scale))
            fail_msg("%s[%zu]: got %.9g, want %.9g (|diff| %.3g > %.3g)", what, i, got[i], ref[i],
                     d, tol * scale);
    }
}

/* ---- finite differences ------------------------------------------------ */

/* loss = sum(out * r): its gradient wrt out is r. */
static double read_loss(const float *q, const float *k, const float *v, const float *r, size_t N,
                        size_t M, size_t D)
{
    float out[64], w[64];
    dm_memory_read_forward(out, w, NULL, q, k, v, N, M, D);
    double s = 0.0;
    for (size_t i = 0; i < N * D; i++) s += (double)out[i] * r[i];
    return s;
}

static void check_fd(const char *what, float *x, const float *analytic, size_t n, const float *q,
                     const float *k, const float *v, const float *r, size_t N, size_t M, size_t D)
{
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + h;
        double lp = read_loss(q, k, v, r, N, M, D);
        x[i] = save - h;
        double lm = read_loss(q, k, v, r, N, M, D);
        x[i] = save;
        double num = (lp - lm) / (2.0 * h);
        double d = fabs(num - analytic[i]);
        if (d > 2e-3 + 2e-2 * fabs(num))
            fail_msg("%s[%zu]: analytic %.6g, numeric %.6g", what, i, analytic[i], num);
    }
}

static void test_read_finite_differences(void **state)
{
    enum { N = 4, M = 5, D = 3 };
    dm_rng rng;
    dm_rng_seed(&rng, 11);
    float q[N * D], k[M * D], v[M * D], r[N * D];
    for (int i = 0; i < N * D; i++) q[i] = dm_rng_normal(&rng);
    for (int i = 0; i < M * D; i++) k[i] = dm_rng_normal(&rng), v[i] = dm_rng_normal(&rng);
    for (int i = 0; i < N * D; i++) r[i] = dm_rng_normal(&rng);
    float out[N * D], w[N * M], scratch[N * M];
    dm_memory_read_forward(out, w, NULL, q, k, v, N, M, D);
    /* Start the gradients at 1 to check that backward adds rather than sets. */
    float dq[N * D], dk[M * D], dv[M * D];
    for (int i = 0; i < N * D; i++) dq[i] = 1.0f;
    for (int i = 0; i < M * D; i++) dk[i] = 1.0f, dv[i] = 1.0f;
    dm_memory_read_backward(dq, dk, dv, r, w, q, k, v, N, M, D, scratch);
    for (int i = 0; i < N * D; i++) dq[i] -= 1.0f;
    for (int i = 0; i < M * D; i++) dk[i] -= 1.0f, dv[i] -= 1.0f;
    check_fd("dquery", q, dq, N * D, q, k, v, r, N, M, D);
    check_fd("dkeys", k, dk, M * D, q, k, v, r, N, M, D);
    check_fd("dvalues", v, dv, M * D, q, k, v, r, N, M, D);
    /* dquery NULL is allowed and still fills dkeys/dvalues. */
    float dk2[M * D] = {0}, dv2[M * D] = {0};
    dm_memory_read_backward(NULL, dk2, dv2, r, w, q, k, v, N, M, D, scratch);
    assert_close("dkeys (dquery NULL)", dk2, dk, M * D, 1e-6);
    /* Softmax rows sum to one. */
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < M; j++) s += w[i * M + j];
        assert_true(fabs(s - 1.0) < 1e-6);
    }
}

/* ---- usage ------------------------------------------------------------- */

static void test_usage_duplicates_once(void **state)
{
    float usage[4] = {1, 1, 1, 1};
    int32_t argmax[5] = {2, 2, 0, 2, 0};
    int32_t scratch[4];
    dm_memory_usage_update(usage, argmax, 5, 4, scratch);
    float want[4] = {2, 1, 2, 1};
    assert_memory_equal(usage, want, sizeof want);
    /* argmax picks the first index on ties. */
    float q[2] = {1, 0}, k[6] = {1, 0, 1, 0, 0, 1}, v[6] = {0}, out[2], w[3];
    int32_t a;
    dm_memory_read_forward(out, w, &a, q, k, v, 1, 3, 2);
    assert_int_equal(a, 0);
}

/* ---- write ------------------------------------------------------------- */

static void test_write_by_hand(void **state)
{
    /* M=2, D=2, R=2, s=0.5. New key rows (3,4) and (0,2) normalise to
     * (0.6,0.8) and (0,1); their mean is (0.3,0.9). Key row (1,0) blends to
     * (0.65,0.45) and normalises to (0.65,0.45)/0.790569. */
    float keys[4] = {1, 0, 0, 1}, values[4] = {0, 2, 2, 0};
    float nk[4] = {3, 4, 0, 2}, nv[4] = {1, 0, 1, 0};
    dm_error err;
    assert_int_equal(dm_memory_write(keys, values, nk, nv, 2, 2, 2, 0.5f, &err), 0);
    double n0 = sqrt(0.65 * 0.65 + 0.45 * 0.45), n1 = sqrt(0.15 * 0.15 + 0.95 * 0.95);
    float wk[4] = {(float)(0.65 / n0), (float)(0.45 / n0), (float)(0.15 / n1), (float)(0.95 / n1)};
    assert_close("keys", keys, wk, 4, 1e-6);
    /* values: mean of (1,0),(1,0) is (1,0); (0,2)->(0.5,1)->/1.118; (2,0)->(1.5,0)->(1,0) */
    double n2 = sqrt(0.25 + 1.0);
    float wv[4] = {(float)(0.5 / n2), (float)(1.0 / n2), 1.0f, 0.0f};
    assert_close("values", values, wv, 4, 1e-6);
    /* s = 0 still re-normalises the rows; a zero row stays zero (eps). */
    float k0[4] = {0, 0, 3, 4}, v0[4] = {1, 1, 1, 1};
    assert_int_equal(dm_memory_write(k0, v0, nk, nv, 2, 2, 2, 0.0f, &err), 0);
    float wk0[4] = {0, 0, 0.6f, 0.8f};
    assert_close("keys s=0", k0, wk0, 4, 1e-6);
}

/* The two-step write: sums then apply is dm_memory_write bit for bit, and
 * the sums of two halves of the rows, added, give the same write up to the
 * order of the float additions (a batch split over two processes). */
static void test_write_sums_apply(void **state)
{
    enum { M = 3, D = 4, R = 5 };
    float nk[R * D], nv[R * D], k1[M * D], v1[M * D];
    for (int i = 0; i < R * D; i++) {
        nk[i] = (float)sin(0.7 * i + 0.1);
        nv[i] = (float)cos(1.3 * i - 0.4);
    }
    for (int i = 0; i < M * D; i++) k1[i] = v1[i] = (float)(0.1 * i - 0.5);
    float k2[M * D], v2[M * D], k3[M * D], v3[M * D];
    memcpy(k2, k1, sizeof k1), memcpy(v2, v1, sizeof v1), memcpy(k3, k1, sizeof k1), memcpy(v3, v1, sizeof v1);
    dm_error err;
    assert_int_equal(dm_memory_write(k1, v1, nk, nv, R, M, D, 0.3f, &err), 0);
    float sums[2 * D], part[2 * D];
    assert_int_equal(dm_memory_write_sums(sums, nk, nv, R, D, &err), 0);
    assert_int_equal(dm_memory_write_apply(k2, v2, sums, R, M, D, 0.3f, &err), 0);
    assert_memory_equal(k1, k2, sizeof k1);
    assert_memory_equal(v1, v2, sizeof v1);
    /* rows 0-1 on one process, 2-4 on the other */
    assert_int_equal(dm_memory_write_sums(sums, nk, nv, 2, D, &err), 0);
    assert_int_equal(dm_memory_write_sums(part, nk + 2 * D, nv + 2 * D, 3, D, &err), 0);
    for (int j = 0; j < 2 * D; j++) sums[j] += part[j];
    assert_int_equal(dm_memory_write_apply(k3, v3, sums, R, M, D, 0.3f, &err), 0);
    assert_close("keys from two halves", k3, k1, M * D, 1e-6);
    assert_close("values from two halves", v3, v1, M * D, 1e-6);
    /* no rows: zero sums, and an apply with count 0 is refused */
    assert_int_equal(dm_memory_write_sums(sums, nk, nv, 0, D, &err), 0);
    for (int j = 0; j < 2 * D; j++) assert_true(sums[j] == 0.0f);
    assert_int_equal(dm_memory_write_apply(k3, v3, sums, 0, M, D, 0.3f, &err), -1);
    assert_non_null(strstr(err.msg, "need at least 1 new row, got 0"));
    assert_int_equal(dm_memory_write_apply(k3, v3, sums, 1, M, D, 1.5f, &err), -1);
    assert_non_null(strstr(err.msg, "strength must be in [0, 1]"));
}

static void test_write_bad_input(void **state)
{
    float k[4] = {0}, v[4] = {0}, nk[4] = {1, 0, 0, 1};
    dm_error err;
    assert_int_equal(dm_memory_write(k, v, nk, nk, 2, 2, 2, 2.0f, &err), -1);
    assert_non_null(strstr(err.msg, "strength must be in [0, 1], got 2"));
    assert_int_equal(dm_memory_write(k, v, nk, nk, 2, 2, 2, -0.1f, &err), -1);
    assert_int_equal(dm_memory_write(k, v, nk, nk, 2, 2, 2, NAN, &err), -1);
    assert_int_equal(dm_memory_write(k, v, nk, nk, 0, 2, 2, 0.5f, &err), -1);
    assert_non_null(strstr(err.msg, "got 0"));
    assert_int_equal(dm_memory_write(k, v, nk, nk, 2, 0, 2, 0.5f, &err), -1);
    assert_non_null(strstr(err.msg, "slots must be >= 1"));
}

/* ---- golden parity ----------------------------------------------------- */

typedef struct golden {
    const char *dir;
    size_t B, T, M, D;
} golden;

static void check_golden(const golden *g)
{
    const size_t N = g->B * g->T, M = g->M, D = g->D;
    float *q = load(g->dir, "acts/query", N * D);
    float *keys = load(g->dir, "params/memory.keys", M * D);
    float *values = load(g->dir, "params/memory.values", M * D);
    float *ref_scores = load(g->dir, "acts/mem_scores", N * M);
    float *ref_w = load(g->dir, "acts/mem_weights", N * M);
    float *ref_out = load(g->dir, "acts/mem_out", N * D);
    float *ref_usage = load(g->dir, "usage_counts_after_forward", M);
    float *usage0 = load(g->dir, "params/memory.usage_counts", M);
    float *scores = malloc(N * M * 4), *w = malloc(N * M * 4), *out = malloc(N * D * 4);
    int32_t *am = malloc(N * 4), *is = malloc(M * 4);

    dm_memory_scores(scores, q, keys, N, M, D);
    assert_close("mem_scores", scores, ref_scores, N * M, 1e-5);
    dm_memory_read_forward(out, w, am, q, keys, values, N, M, D);
    assert_close("mem_weights", w, ref_w, N * M, 1e-5);
    assert_close("mem_out", out, ref_out, N * D, 1e-5);
    dm_memory_usage_update(usage0, am, N, M, is);
    assert_close("usage_counts_after_forward", usage0, ref_usage, M, 0.0);

    /* Read backward: act_grads/mem_out -> act_grads/query and the memory
     * grads (the read is the only use of keys/values/query with a grad). */
    {
        float *dout = load(g->dir, "act_grads/mem_out", N * D);
        float *ref_dq = load(g->dir, "act_grads/query", N * D);
        float *ref_dk = load(g->dir, "grads/memory.keys", M * D);
        float *ref_dv = load(g->dir, "grads/memory.values", M * D);
        float *dq = calloc(N * D, 4), *dk = calloc(M * D, 4), *dv = calloc(M * D, 4);
        float *scratch = malloc(N * M * 4);
        dm_memory_read_backward(dq, dk, dv, dout, w, q, keys, values, N, M, D, scratch);
        assert_close("act_grads/query", dq, ref_dq, N * D, 1e-5);
        assert_close("grads/memory.keys", dk, ref_dk, M * D, 1e-5);
        assert_close("grads/memory.values", dv, ref_dv, M * D, 1e-5);
        free(dout), free(ref_dq), free(ref_dk), free(ref_dv), free(dq), free(dk), free(dv);
        free(scratch);
    }

    /* The upstream write, on the initial memory. */
    float *qt = load(g->dir, "write/qm_time_mean", g->B * D);
    float *vt = load(g->dir, "write/vm_time_mean", g->B * D);
    float *ref_k = load(g->dir, "write/keys", M * D);
    float *ref_v = load(g->dir, "write/values", M * D);
    dm_error err;
    assert_int_equal(dm_memory_write(keys, values, qt, vt, g->B, M, D, 0.1f, &err), 0);
    assert_close("write/keys", keys, ref_k, M * D, 1e-5);
    assert_close("write/values", values, ref_v, M * D, 1e-5);

    free(q), free(keys), free(values), free(ref_scores), free(ref_w), free(ref_out);
    free(ref_usage), free(usage0), free(scores), free(w), free(out), free(am), free(is);
    free(qt), free(vt), free(ref_k), free(ref_v);
}

static void test_golden_1234(void **state)
{
    golden g = {"golden_1234", 3, 5, 6, 8};
    check_golden(&g);
}

static void test_golden_7(void **state)
{
    golden g = {"golden_7", 4, 7, 32, 12};
    check_golden(&g);
}

/* ---- the object -------------------------------------------------------- */

static void test_object(void **state)
{
    dm_memory m;
    dm_error err;
    dm_rng rng;
    dm_rng_seed(&rng, 3);
    const size_t M = 8, D = 4, N = 3;
    assert_int_equal(dm_memory_create(&m, M, D, &rng, &err), 0);
    /* kaiming_uniform_: U(+-sqrt(6/D)). */
    double b = sqrt(6.0 / D), mx = 0.0;
    for (size_t i = 0; i < M * D; i++) {
        assert_true(fabs(m.keys[i]) <= b && fabs(m.values[i]) <= b);
        mx = fmax(mx, fabs(m.keys[i]));
    }
    assert_true(mx > 0.5 * b);
    for (size_t j = 0; j < M; j++) assert_true(m.usage[j] == 1.0f);

    float q[12], out[12], w[24], ref_out[12], ref_w[24];
    for (size_t i = 0; i < N * D; i++) q[i] = dm_rng_normal(&rng);
    assert_int_equal(dm_memory_read(&m, out, w, q, N, &err), 0);
    dm_memory_read_forward(ref_out, ref_w, NULL, q, m.keys, m.values, N, M, D);
    assert_close("object out", out, ref_out, N * D, 0.0);
    assert_close("object weights", w, ref_w, N * M, 0.0);
    float total = 0;
    for (size_t j = 0; j < M; j++) total += m.usage[j];
    assert_true(total >= M + 1 && total <= M + N);

    /* Backward accumulates into the object's grads across calls. */
    float dout[12], dq[12] = {0};
    for (size_t i = 0; i < N * D; i++) dout[i] = 1.0f;
    assert_int_equal(dm_memory_backward(&m, dq, dout, N, &err), 0);
    float dk1 = m.dkeys[0];
    assert_int_equal(dm_memory_backward(&m, NULL, dout, N, &err), 0);
    assert_true(fabsf(m.dkeys[0] - 2 * dk1) <= 1e-6f * fabsf(dk1) + 1e-7f);
    dm_memory_zero_grad(&m);
    assert_true(m.dkeys[0] == 0.0f);
    assert_int_equal(dm_memory_backward(&m, NULL, dout, 2, &err), -1);
    assert_non_null(strstr(err.msg, "dout has 2 rows, the last read had 3"));

    /* topk: sorted weights, matching the read's softmax, usage untouched. */
    float tw[6], u0 = m.usage[0];
    int64_t ti[6];
    assert_int_equal(dm_memory_topk(&m, tw, ti, q, N, 2, &err), 0);
    for (size_t i = 0; i < N; i++) {
        assert_true(tw[i * 2] >= tw[i * 2 + 1]);
        assert_true(tw[i * 2] == ref_w[i * M + ti[i * 2]]);
        for (size_t j = 0; j < M; j++) assert_true(ref_w[i * M + j] <= tw[i * 2]);
    }
    assert_true(m.usage[0] == u0);
    assert_int_equal(dm_memory_topk(&m, tw, ti, q, N, 9, &err), -1);
    assert_non_null(strstr(err.msg, "k must be in [1, 8], got 9"));

    /* Write through the object; rows come out unit length. */
    float nk[8] = {1, 2, 3, 4, 0, 1, 0, 0}, nv[8] = {4, 3, 2, 1, 1, 0, 0, 0};
    assert_int_equal(dm_memory_update(&m, nk, nv, 2, 0.5f, &err), 0);
    assert_int_equal(dm_memory_backward(&m, NULL, dout, N, &err), -1);
    assert_non_null(strstr(err.msg, "written after the last read"));
    for (size_t i = 0; i < M; i++) {
        double s = 0;
        for (size_t j = 0; j < D; j++) s += (double)m.keys[i * D + j] * m.keys[i * D + j];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    assert_int_equal(dm_memory_update(&m, nk, nv, 2, 2.0f, &err), -1);
    assert_string_equal(err.msg, "Memory.write: strength must be in [0, 1], got 2");
    dm_memory_reset_usage(&m);
    for (size_t j = 0; j < M; j++) assert_true(m.usage[j] == 1.0f);

    /* A larger read regrows the kept buffers. */
    float q2[40], out2[40];
    for (size_t i = 0; i < 40; i++) q2[i] = 0.1f * (float)i;
    assert_int_equal(dm_memory_read(&m, out2, NULL, q2, 10, &err), 0);
    assert_int_equal(m.last_n, 10);
    dm_memory_free(&m);
    dm_memory_free(&m); /* twice is safe */
}

static void test_object_bad_input(void **state)
{
    dm_memory m;
    dm_error err;
    assert_int_equal(dm_memory_create(&m, 0, 4, NULL, &err), -1);
    assert_string_equal(err.msg, "Memory: slots must be >= 1, got 0");
    assert_int_equal(dm_memory_create(&m, 4, 0, NULL, &err), -1);
    assert_string_equal(err.msg, "Memory: width must be >= 1, got 0");
    dm_memory_free(&m);
    assert_int_equal(dm_memory_create(&m, 2, 2, NULL, &err), 0);
    float dout[2] = {0};
    assert_int_equal(dm_memory_backward(&m, NULL, dout, 1, &err), -1);
    assert_non_null(strstr(err.msg, "no read"));
    dm_memory_free(&m);
}

/* A NaN query gives a NaN row (weights and output), a valid argmax (the
 * first NaN score, like torch.argmax), and leaves the other rows alone. */
static void test_nan_query(void **state)
{
    dm_memory m;
    dm_error err;
    dm_rng rng;
    dm_rng_seed(&rng, 5);
    assert_int_equal(dm_memory_create(&m, 4, 2, &rng, &err), 0);
    float q[4] = {NAN, 1.0f, 0.5f, -0.5f}, out[4], w[8], ref_out[2], ref_w[4];
    assert_int_equal(dm_memory_read(&m, out, w, q, 2, &err), 0);
    for (int j = 0; j < 4; j++) assert_true(isnan(w[j]));
    assert_true(isnan(out[0]) && isnan(out[1]));
    assert_int_equal(m.last_argmax[0], 0);
    dm_memory_read_forward(ref_out, ref_w, NULL, q + 2, m.keys, m.values, 1, 4, 2);
    assert_close("clean row", out + 2, ref_out, 2, 0.0);
    float total = 0;
    for (int j = 0; j < 4; j++) total += m.usage[j];
    assert_true(total >= 5.0f && total <= 6.0f);
    /* Backward through it: NaN grads, no crash. */
    float dout[4] = {1, 1, 1, 1};
    assert_int_equal(dm_memory_backward(&m, NULL, dout, 2, &err), 0);
    dm_memory_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_finite_differences),
        cmocka_unit_test(test_usage_duplicates_once),
        cmocka_unit_test(test_write_by_hand),
        cmocka_unit_test(test_write_bad_input),
        cmocka_unit_test(test_golden_1234),
        cmocka_unit_test(test_golden_7),
        cmocka_unit_test(test_write_sums_apply),
        cmocka_unit_test(test_object),
        cmocka_unit_test(test_object_bad_input),
        cmocka_unit_test(test_nan_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
