/* test_vmath.c: the vectorised kernels of vmath.h against double-precision
 * libm, over millions of inputs.
 *
 * Error is measured in ulp of the correctly rounded float result: |got -
 * ref| / ulp(ref), ref = the double result, ulp(ref) the spacing of floats
 * at |ref| (2^-149 for subnormals). Each function is swept over an evenly
 * spaced grid of its whole interesting range (2^21 points), over 2^20
 * random float bit patterns of magnitude up to the range's bound on its
 * side(s) of zero (which weights every binade equally, so tiny arguments
 * are covered too), and over the special values.
 * The bounds asserted are the ones vmath.h states. The composite kernels
 * (GELU forward/backward, exp-sum, softmax gradient, GRU gates) are checked
 * against the same formulas in double with relative bounds, including
 * lengths that are not a multiple of any SIMD width and in-place calls.
 * The packed small-M product is compared bit for bit with the naive triple
 * loop (same sums in the same order), on shapes with row and column tails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/vmath.h"

#define GRID (1u << 21)
#define RANDOM (1u << 20)

static double ulp_of(double ref)
{
    double a = fabs(ref);
    if (a < FLT_MIN) return ldexp(1.0, -149);
    if (a >= FLT_MAX) return ldexp(1.0, 104); /* ulp at FLT_MAX */
    int e;
    frexp(a, &e); /* a = m 2^e, m in [0.5, 1) */
    return ldexp(1.0, e - 24);
}

static double ulp_err(float got, double ref)
{
    if (isnan(ref)) return isnan(got) ? 0.0 : INFINITY;
    if (isinf(ref) || (fabs(ref) > FLT_MAX)) {
        /* A result that overflows float must be +-inf. */
        return isinf(got) && (got > 0) == (ref > 0) ? 0.0 : INFINITY;
    }
    return fabs((double)got - ref) / ulp_of(ref);
}

typedef void (*vfun)(float *, const float *, size_t);
typedef double (*dfun)(double);

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Inputs in [lo, hi]: a grid, then random bit patterns of the floats in
 * [lo, hi] (uniform over the bit patterns between them, per sign). */
static float *make_inputs(float lo, float hi, size_t *n_out)
{
    size_t n = GRID + RANDOM;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < GRID; i++) x[i] = lo + (hi - lo) * (float)((double)i / (GRID - 1));
    dm_rng r;
    dm_rng_seed(&r, 77);
    for (size_t i = 0; i < RANDOM; i++) {
        /* Pick a sign side in proportion, then a bit pattern up to the bound. */
        int neg = lo < 0 && (hi <= 0 || dm_rng_uniform(&r) < 0.5f);
        float bound = neg ? -lo : hi;
        uint32_t top;
        memcpy(&top, &bound, sizeof top);
        uint32_t u = (uint32_t)(dm_rng_uniform_double(&r) * (double)top);
        float v;
        memcpy(&v, &u, sizeof v);
        x[GRID + i] = neg ? -v : v;
    }
    *n_out = n;
    return x;
}

/* Max ulp error of f against ref over x[0..n), only where keep(ref) holds. */
static double max_ulp(vfun f, dfun ref, const float *x, size_t n, double min_abs_ref, float *worst)
{
    float *y = malloc(n * sizeof *y);
    f(y, x, n);
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = ref((double)x[i]);
        if (fabs(r) < min_abs_ref) continue;
        double e = ulp_err(y[i], r);
        if (e > mx) {
            mx = e;
            *worst = x[i];
        }
    }
    free(y);
    return mx;
}

static void sweep(const char *name, vfun f, dfun ref, float lo, float hi, double bound,
                  double min_abs_ref)
{
    size_t n;
    float *x = make_inputs(lo, hi, &n);
    float worst = 0;
    double e = max_ulp(f, ref, x, n, min_abs_ref, &worst);
    print_message("%s: max %.3f ulp over %zu inputs in [%g, %g] (worst at %.9g)\n", name, e, n,
                  (double)lo, (double)hi, (double)worst);
    if (!(e <= bound)) fail_msg("%s: %.3f ulp at x = %.9g exceeds %.1f", name, e, (double)worst, bound);
    free(x);
}

static void check_specials(const char *name, vfun f, dfun ref)
{
    float s[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
                 1e-30f, -1e-30f, 1e-45f, 0.5f, -0.5f, 1.0f, -1.0f};
    size_t n = sizeof s / sizeof s[0];
    float y[sizeof s / sizeof s[0]];
    f(y, s, n);
    for (size_t i = 0; i < n; i++) {
        double r = ref((double)s[i]);
        if (isnan(r)) {
            if (!isnan(y[i])) fail_msg("%s(%g) = %g, expected NaN", name, (double)s[i], (double)y[i]);
        } else if (ulp_err(y[i], r) > 3.0) {
            fail_msg("%s(%g) = %.9g, expected %.9g", name, (double)s[i], (double)y[i], r);
        }
    }
}

static void test_exp(void **state)
{
    /* Normal results: within 2 ulp. */
    sweep("exp", dm_vexp, exp, -87.3f, 88.7f, 2.0, 0.0);
    /* Subnormal results: absolute error within one subnormal step. */
    sweep("exp (subnormal range)", dm_vexp, exp, -104.0f, -87.4f, 1.0, 0.0);
    check_specials("exp", dm_vexp, exp);
    float big[3] = {88.73f, 100.0f, -105.0f}, y[3];
    dm_vexp(y, big, 3);
    assert_true(isinf(y[0]) && isinf(y[1]));
    assert_true(y[2] == 0.0f);
}

static void test_erf(void **state)
{
    sweep("erf", dm_verf, erf, -6.0f, 6.0f, 2.0, 0.0);
    check_specials("erf", dm_verf, erf);
}

static void test_tanh(void **state)
{
    sweep("tanh", dm_vtanh, tanh, -12.0f, 12.0f, 3.0, 0.0);
    check_specials("tanh", dm_vtanh, tanh);
}

static void test_sigmoid(void **state)
{
    sweep("sigmoid", dm_vsigmoid, sigmoid_d, -69.0f, 90.0f, 3.0, 1e-30);
    check_specials("sigmoid", dm_vsigmoid, sigmoid_d);
}

/* Odd lengths and in-place calls take the scalar tails and the aliasing
 * checks' other path; the results must be the same elementwise. */
static void test_lengths_in_place(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 5);
    float x[37], a[37], b[37];
    for (size_t i = 0; i < 37; i++) x[i] = (2.0f * dm_rng_uniform(&r) - 1.0f) * 6.0f;
    vfun fs[4] = {dm_vexp, dm_verf, dm_vtanh, dm_vsigmoid};
    for (int k = 0; k < 4; k++) {
        fs[k](a, x, 37);
        for (size_t n = 0; n <= 37; n++) {
            memcpy(b, x, sizeof b);
            fs[k](b, b, n);
            for (size_t i = 0; i < n; i++) assert_true(a[i] == b[i]);
            for (size_t i = n; i < 37; i++) assert_true(b[i] == x[i]);
        }
    }
}

static void test_gelu(void **state)
{
    size_t n;
    float *x = make_inputs(-10.0f, 10.0f, &n);
    float *y = malloc(n * sizeof *y), *d = malloc(n * sizeof *d), *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = 1.0f;
    dm_vgelu_forward(y, x, n);
    dm_vgelu_backward(d, g, x, n, 0);
    double fe = 0, be = 0;
    for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        double cdf = 0.5 * (1.0 + erf(xd * M_SQRT1_2));
        double ref = xd * cdf;
        double dref = cdf + xd * exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI);
        /* Absolute error, relative to max(1, |x|): the float formula
         * 0.5 x (1 + erf) cancels for negative x, as PyTorch's does. */
        double sc = fabs(xd) > 1.0 ? fabs(xd) : 1.0;
        double e1 = fabs(y[i] - ref) / sc, e2 = fabs(d[i] - dref) / sc;
        if (e1 > fe) fe = e1;
        if (e2 > be) be = e2;
    }
    print_message("gelu: forward max err %.3g, backward %.3g (x max(1,|x|))\n", fe, be);
    assert_true(fe < 3e-7);
    assert_true(be < 3e-7);
    /* accumulate adds exactly what overwrite wrote */
    float *d2 = malloc(n * sizeof *d2);
    for (size_t i = 0; i < n; i++) d2[i] = 1.0f;
    dm_vgelu_backward(d2, g, x, n, 1);
    for (size_t i = 0; i < n; i++) assert_true(d2[i] == 1.0f + d[i]);
    free(x), free(y), free(d), free(g), free(d2);
}

static void test_exp_sum_and_grad(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 9);
    size_t lens[] = {1, 7, 8, 9, 511, 512, 513, 1500, 10000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        float *x = malloc(n * sizeof *x), *e = malloc(n * sizeof *e), *g = malloc(n * sizeof *g);
        float mx = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            x[i] = (2.0f * dm_rng_uniform(&r) - 1.0f) * 20.0f;
            if (x[i] > mx) mx = x[i];
        }
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += exp((double)x[i] - mx);
        double s1 = dm_vexp_sum(NULL, x, mx, n), s2 = dm_vexp_sum(e, x, mx, n);
        assert_true(s1 == s2);
        assert_true(fabs(s1 - ref) <= 2.5e-7 * ref);
        /* the difference is rounded to float first (vmath.h) */
        for (size_t i = 0; i < n; i++) assert_true(ulp_err(e[i], exp((double)(x[i] - mx))) <= 2.0);
        double lse = mx + log(ref);
        for (size_t i = 0; i < n; i++) g[i] = 1.0f;
        dm_vsoftmax_grad_row(g, x, lse, 0.25, n, 1);
        for (size_t i = 0; i < n; i++) {
            double want = 1.0 + 0.25 * exp((double)x[i] - lse);
            assert_true(fabs(g[i] - want) <= 3e-7 * want);
        }
        free(x), free(e), free(g);
    }
}

static void test_max(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 13);
    float x[45];
    for (size_t n = 1; n <= 45; n++) {
        for (size_t i = 0; i < n; i++) x[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
        float m = x[0];
        for (size_t i = 1; i < n; i++)
            if (x[i] > m) m = x[i];
        assert_true(dm_vmax(x, n) == m);
    }
    /* NaN: skipped after the first element, returned when first. */
    for (size_t i = 0; i < 45; i++) x[i] = (float)i;
    x[20] = NAN;
    assert_true(dm_vmax(x, 45) == 44.0f);
    x[0] = NAN;
    assert_true(isnan(dm_vmax(x, 45)));
}

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

static void test_gru_gates(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 11);
    const size_t H = 37;
    float gx[3 * 37], gx0[3 * 37], gh[3 * 37], hp[37], h[37], h0[37];
    for (size_t i = 0; i < 3 * H; i++) {
        gx0[i] = (2.0f * dm_rng_uniform(&r) - 1.0f) * 4.0f;
        gh[i] = (2.0f * dm_rng_uniform(&r) - 1.0f) * 4.0f;
    }
    for (size_t j = 0; j < H; j++) hp[j] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    for (int with_prev = 0; with_prev < 2; with_prev++) {
        memcpy(gx, gx0, sizeof gx);
        dm_vgru_gates(gx, gh, with_prev ? hp : NULL, h, H);
        for (size_t j = 0; j < H; j++) {
            double rr = sig((double)gx0[j] + gh[j]);
            double zz = sig((double)gx0[H + j] + gh[H + j]);
            double nn = tanh((double)gx0[2 * H + j] + rr * gh[2 * H + j]);
            double hh = (1 - zz) * nn + zz * (with_prev ? hp[j] : 0.0);
            assert_true(fabs(gx[j] - rr) <= 1e-6);
            assert_true(fabs(gx[H + j] - zz) <= 1e-6);
            assert_true(fabs(gx[2 * H + j] - nn) <= 2e-6);
            assert_true(fabs(h[j] - hh) <= 2e-6);
        }
        if (with_prev) memcpy(h0, h, sizeof h0);
    }
    /* backward: dh carries g * z; the gradient formulas in double */
    float dx[3 * 37], dhh[3 * 37], dh[37], dy[37], dh0[37];
    for (size_t j = 0; j < H; j++) {
        dy[j] = 2.0f * dm_rng_uniform(&r) - 1.0f;
        dh0[j] = dh[j] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    }
    memcpy(gx, gx0, sizeof gx);
    dm_vgru_gates(gx, gh, hp, h, H);
    dm_vgru_gates_backward(dx, dhh, dh, gx, gh, dy, hp, H);
    for (size_t j = 0; j < H; j++) {
        double rr = gx[j], zz = gx[H + j], nn = gx[2 * H + j];
        double g = (double)dy[j] + dh0[j];
        double dn = g * (1 - zz) * (1 - nn * nn);
        double dz = g * (hp[j] - nn) * zz * (1 - zz);
        double dr = dn * gh[2 * H + j] * rr * (1 - rr);
        assert_true(fabs(dx[j] - dr) <= 1e-5 && fabs(dhh[j] - dr) <= 1e-5);
        assert_true(fabs(dx[H + j] - dz) <= 1e-5 && fabs(dhh[H + j] - dz) <= 1e-5);
        assert_true(fabs(dx[2 * H + j] - dn) <= 1e-5 && fabs(dhh[2 * H + j] - dn * rr) <= 1e-5);
        assert_true(fabs(dh[j] - g * zz) <= 1e-5);
    }
    (void)h0;
}

/* C (M,N) += A (M,K) B (K,N) with strided A and C, B given as B or as B^T;
 * the naive loop sums over k from 0 and then adds, as the kernel does. */
static void check_vgemm(size_t M, size_t N, size_t K, int trans, uint64_t seed)
{
    dm_rng r;
    dm_rng_seed(&r, seed);
    const size_t lda = K + 3, ldc = N + 5, ldb = trans ? K + 2 : N + 1;
    const size_t brows = trans ? N : K;
    float *a = malloc(M * lda * sizeof *a), *b = malloc(brows * ldb * sizeof *b);
    float *c = malloc(M * ldc * sizeof *c), *ref = malloc(M * ldc * sizeof *ref);
    float *pk = malloc(dm_vgemm_packed_numel(K, N) * sizeof *pk);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(ref);
    assert_non_null(pk);
    for (size_t i = 0; i < M * lda; i++) a[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < brows * ldb; i++) b[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    for (size_t i = 0; i < M * ldc; i++) ref[i] = c[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    /* NaN in the packing buffer must all be overwritten (tail panels too). */
    for (size_t i = 0; i < dm_vgemm_packed_numel(K, N); i++) pk[i] = NAN;
    dm_vgemm_pack(pk, b, ldb, trans, K, N);
    dm_vgemm_packed(c, ldc, a, lda, pk, M, N, K);
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (size_t k = 0; k < K; k++)
                s += a[i * lda + k] * (trans ? b[j * ldb + k] : b[k * ldb + j]);
            ref[i * ldc + j] += s;
        }
    /* Exact: the padding columns of C (j >= N) must be untouched as well. */
    for (size_t i = 0; i < M * ldc; i++)
        if (memcmp(&c[i], &ref[i], sizeof *c) != 0)
            fail_msg("vgemm M=%zu N=%zu K=%zu trans=%d: c[%zu] = %.9g, naive %.9g", M, N, K,
                     trans, i, c[i], ref[i]);
    free(a);
    free(b);
    free(c);
    free(ref);
    free(pk);
}

static void test_vgemm_packed(void **state)
{
    assert_int_equal(dm_vgemm_packed_numel(5, 15), 5 * 16);
    assert_int_equal(dm_vgemm_packed_numel(256, 768), 256 * 768);
    check_vgemm(3, 15, 5, 1, 1);     /* B=3, H=5: one partial panel, rows < 4 */
    check_vgemm(3, 15, 5, 0, 2);
    check_vgemm(1, 1, 1, 1, 3);
    check_vgemm(7, 40, 19, 0, 4);    /* 4 + 3 rows, 2 full panels + 8 columns */
    check_vgemm(9, 33, 17, 1, 5);
    check_vgemm(16, 768, 256, 1, 6); /* the seed's recurrence: h (16,256) W_hh^T */
    check_vgemm(16, 256, 768, 0, 7); /* and its backward: dhg (16,768) W_hh */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),          cmocka_unit_test(test_erf),
        cmocka_unit_test(test_tanh),         cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_lengths_in_place), cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_exp_sum_and_grad), cmocka_unit_test(test_gru_gates),
        cmocka_unit_test(test_max),          cmocka_unit_test(test_vgemm_packed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
