/* vmath.c: the vectorised elementwise kernels (contract and accuracy in
 * vmath.h).
 *
 * The scalar helpers below are branch-free (selects, not ifs) and call no
 * library function, so every loop over them is a plain SIMD loop. Two
 * things GCC needs for that are switched on for this file only, before any
 * function is defined: the vectoriser with its dynamic cost model (-O2 in
 * GCC 12 only vectorises loops without an epilogue), and -fno-trapping-math
 * (otherwise the selects on float compares count as possibly trapping and
 * stay branches). Neither changes a single result: no reassociation, no
 * contraction, only which FP exception flags could be raised. Each array
 * kernel is cloned for AVX-512 (avx512f), AVX2 and the build's baseline; the dynamic
 * loader picks the clone once per process. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic", "no-trapping-math")
#endif

#include "core/vmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DM_VCLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DM_VCLONES
#endif

static inline float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* 2^e for e in [-126, 127], built in the exponent field. */
static inline float pow2i(int32_t e) { return bits_to_float((uint32_t)(e + 127) << 23); }

/* exp(x): x = k ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 split into a
 * 9-bit head, exact times any k here, and a tail), exp(r) = 1 + r + r^2 P(r)
 * with P of degree 4 (relative fit error 4e-9), then times 2^k applied as
 * two factors 2^(k/2) and 2^(k - k/2) so that k = 128 (x up to 88.72) and
 * k down to -150 (subnormal results, rounded once) both stay in range. */
static inline float v_exp(float x)
{
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 88.75f ? 88.75f : xc;
    xc = xc == xc ? xc : 0.0f; /* NaN: keep the int conversion defined */
    /* Round to nearest through the 1.5 * 2^23 shifter (floorf would be a
     * libm call under trapping math). */
    float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    int32_t k = (int32_t)kf;
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440054690583e-4f;
    float p = 0.0013751407895870279f;
    p = p * r + 0.008368916341375284f;
    p = p * r + 0.04166953310922316f;
    p = p * r + 0.16666518459980373f;
    p = p * r + 0.4999998859511281f;
    p = 1.0f + (r + (r * r) * p);
    int32_t k1 = k / 2, k2 = k - k1;
    float y = (p * pow2i(k1)) * pow2i(k2);
    return x == x ? y : x;
}

/* erf(x): |x| < 0.75: x P(x^2) = x + x (P(x^2) - 1), P of degree 5 (relative fit error 2e-9);
 * 0.75 <= |x| < 4: 1 - exp(Q(t) - t^2), Q = log(erfc(t)) + t^2 of degree 8
 * in w = (t - 2.75)/2 (absolute fit error 4e-8, i.e. relative in erfc);
 * beyond 4, erfc < 2e-8 and the result rounds to +-1. Both branches are
 * computed and one selected, which is what lets the loop vectorise. */
static inline float v_erf(float x)
{
    float t = fabsf(x), s = x * x;
    float ps = -0.0006775750165347972f;
    ps = ps * s + 0.005118289359341483f;
    ps = ps * s + -0.026836751967145092f;
    ps = ps * s + 0.11283425545493236f;
    ps = ps * s + -0.3761262310485747f;
    ps = ps * s + 0.128379166391767f;
    /* x + x (P - 1): the leading 1 is exact, so P's rounding errors only
     * touch the small correction term. */
    float small = x + x * ps;
    float tc = t < 4.0f ? t : 4.0f; /* NaN goes to 4; the select below keeps NaN */
    float w = (tc - 2.75f) * 0.5f;
    float q = 0.00039759865525109826f;
    q = q * w + -0.0013055586144466824f;
    q = q * w + 0.0036552710361434063f;
    q = q * w + -0.010232183176695978f;
    q = q * w + 0.0272880527475245f;
    q = q * w + -0.07147034453157824f;
    q = q * w + 0.1948524483097362f;
    q = q * w + -0.6530717262866272f;
    q = q * w + -1.6416404048142588f;
    float large = copysignf(1.0f - v_exp(q - tc * tc), x);
    return t >= 0.75f ? large : small;
}

/* tanh(x): |x| < 0.625: x + x^3 P(x^2), P of degree 4 (relative fit error
 * 5e-9); beyond, 1 - 2/(exp(2|x|) + 1) with the sign of x, which rounds to
 * +-1 from |x| = 9 on. */
static inline float v_tanh(float x)
{
    float t = fabsf(x), s = x * x;
    float p = -0.005718978858352316f;
    p = p * s + 0.020653140828681818f;
    p = p * s + -0.05374466362719712f;
    p = p * s + 0.13331512746509455f;
    p = p * s + -0.33333285223367565f;
    float small = x + (x * s) * p;
    float tc = t < 9.0f ? t : 9.0f;
    float large = copysignf(1.0f - 2.0f / (v_exp(2.0f * tc) + 1.0f), x);
    return t >= 0.625f ? large : small;
}

static inline float v_sigmoid(float x) { return 1.0f / (1.0f + v_exp(-x)); }

#define SQRT1_2F 0.70710678118654752f
#define INV_SQRT_2PI_F 0.3989422804014327f

DM_VCLONES void dm_vexp(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = v_exp(in[i]);
}

DM_VCLONES void dm_verf(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = v_erf(in[i]);
}

DM_VCLONES void dm_vtanh(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = v_tanh(in[i]);
}

DM_VCLONES void dm_vsigmoid(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = v_sigmoid(in[i]);
}

DM_VCLONES void dm_vgelu_forward(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + v_erf(x * SQRT1_2F));
    }
}

DM_VCLONES void dm_vgelu_backward(float *din, const float *dout, const float *in, size_t n,
                                  int accumulate)
{
    /* Two loops rather than a select per element: the store differs. */
    if (accumulate) {
        for (size_t i = 0; i < n; i++) {
            float x = in[i];
            float cdf = 0.5f * (1.0f + v_erf(x * SQRT1_2F));
            float pdf = INV_SQRT_2PI_F * v_exp(-0.5f * x * x);
            din[i] += dout[i] * (cdf + x * pdf);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float x = in[i];
            float cdf = 0.5f * (1.0f + v_erf(x * SQRT1_2F));
            float pdf = INV_SQRT_2PI_F * v_exp(-0.5f * x * x);
            din[i] = dout[i] * (cdf + x * pdf);
        }
    }
}

/* Eight running maxima, all seeded with x[0], so that the result is the
 * scalar loop's exactly: NaN elements after the first are skipped (x > m
 * is false), and a NaN x[0] stays in every lane and comes out. */
DM_VCLONES float dm_vmax(const float *x, size_t n)
{
    float m[8];
    for (int k = 0; k < 8; k++) m[k] = x[0];
    size_t i = 1;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int k = 1; k < 8; k++) r = m[k] > r ? m[k] : r;
    return r;
}

/* Rows are handled in chunks that stay in L1: the exps go to a stack
 * buffer (or to out), then are added into 8 double partial sums. */
#define CHUNK 512

DM_VCLONES double dm_vexp_sum(float *out, const float *x, float shift, size_t n)
{
    double acc[8] = {0};
    float buf[CHUNK];
    size_t done = 0;
    while (done < n) {
        size_t m = n - done < CHUNK ? n - done : CHUNK;
        float *e = out ? out + done : buf;
        const float *xs = x + done;
        for (size_t i = 0; i < m; i++) e[i] = v_exp(xs[i] - shift);
        size_t i = 0;
        for (; i + 8 <= m; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += (double)e[i + k];
        for (; i < m; i++) acc[i % 8] += (double)e[i];
        done += m;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

DM_VCLONES void dm_vsoftmax_grad_row(float *g, const float *x, double lse, double scale, size_t n,
                                     int accumulate)
{
    float buf[CHUNK];
    for (size_t done = 0; done < n; done += CHUNK) {
        size_t m = n - done < CHUNK ? n - done : CHUNK;
        const float *xs = x + done;
        float *gs = g + done;
        for (size_t i = 0; i < m; i++) buf[i] = v_exp((float)((double)xs[i] - lse));
        if (accumulate)
            for (size_t i = 0; i < m; i++) gs[i] += (float)(scale * (double)buf[i]);
        else
            for (size_t i = 0; i < m; i++) gs[i] = (float)(scale * (double)buf[i]);
    }
}

DM_VCLONES void dm_vgru_gates(float *restrict gx, const float *restrict gh,
                              const float *restrict hprev, float *restrict h, size_t H)
{
    float *gr = gx, *gz = gx + H, *gn = gx + 2 * H;
    const float *hr = gh, *hz = gh + H, *hn = gh + 2 * H;
    if (hprev) {
        for (size_t j = 0; j < H; j++) {
            float r = v_sigmoid(gr[j] + hr[j]);
            float z = v_sigmoid(gz[j] + hz[j]);
            float n = v_tanh(gn[j] + r * hn[j]);
            gr[j] = r;
            gz[j] = z;
            gn[j] = n;
            h[j] = (1.0f - z) * n + z * hprev[j];
        }
    } else {
        for (size_t j = 0; j < H; j++) {
            float r = v_sigmoid(gr[j] + hr[j]);
            float z = v_sigmoid(gz[j] + hz[j]);
            float n = v_tanh(gn[j] + r * hn[j]);
            gr[j] = r;
            gz[j] = z;
            gn[j] = n;
            h[j] = (1.0f - z) * n + z * 0.0f;
        }
    }
}

DM_VCLONES void dm_vgru_gates_backward(float *restrict dx, float *restrict dhh, float *restrict dh,
                                       const float *restrict gates, const float *restrict gh,
                                       const float *restrict dy, const float *restrict hprev,
                                       size_t H)
{
    const float *gr = gates, *gz = gates + H, *gn = gates + 2 * H, *hn = gh + 2 * H;
    for (size_t j = 0; j < H; j++) {
        float r = gr[j], z = gz[j], n = gn[j];
        float prev = hprev ? hprev[j] : 0.0f;
        float g = dy[j] + dh[j];
        float dn = g * (1.0f - z) * (1.0f - n * n);
        float dz = g * (prev - n) * z * (1.0f - z);
        float dr = dn * hn[j] * r * (1.0f - r);
        dx[j] = dr;
        dx[H + j] = dz;
        dx[2 * H + j] = dn;
        dhh[j] = dr;
        dhh[H + j] = dz;
        dhh[2 * H + j] = dn * r;
        dh[j] = g * z;
    }
}

size_t dm_vgemm_packed_numel(size_t K, size_t N)
{
    return K * ((N + DM_VGEMM_NR - 1) / DM_VGEMM_NR) * DM_VGEMM_NR;
}

/* Panel p holds columns p*NR .. p*NR+NR-1 of B, row k of the panel at
 * (p*K + k)*NR, so the kernel's inner loop reads NR contiguous floats. */
void dm_vgemm_pack(float *packed, const float *b, size_t ldb, int trans, size_t K, size_t N)
{
    const size_t NR = DM_VGEMM_NR, np = (N + NR - 1) / NR;
    for (size_t p = 0; p < np; p++)
        for (size_t k = 0; k < K; k++) {
            float *dst = packed + (p * K + k) * NR;
            for (size_t jj = 0; jj < NR; jj++) {
                size_t j = p * NR + jj;
                dst[jj] = j >= N ? 0.0f : trans ? b[j * ldb + k] : b[k * ldb + j];
            }
        }
}

/* The tile kernels use GCC's generic vectors (8 floats; two SSE registers
 * in the baseline clone, one ymm in the AVX2 one): written as scalar loops,
 * GCC 12 vectorises them over k with shuffles instead of keeping the tile
 * of sums in registers. Each lane still sums its column in k order, so the
 * result is the scalar loop's, bit for bit. */
typedef float dm_v8f __attribute__((vector_size(32)));
/* Unaligned vector load and add-into-memory; macros, since passing a
 * 32-byte vector by value to a non-AVX function draws GCC's -Wpsabi note. */
#define V8_LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define V8_ADD_STORE(p, v)                                                                     \
    do {                                                                                       \
        dm_v8f c_;                                                                             \
        V8_LOAD(c_, p);                                                                        \
        c_ += (v);                                                                             \
        memcpy((p), &c_, sizeof c_);                                                           \
    } while (0)

/* MR = 4 rows of C times one panel (NR = 16 = two vectors): 8 vectors of
 * sums stay in registers while k runs. It adds all NR columns into c (ldc
 * apart); the caller points it at a local tile for a panel that sticks out
 * of C. */
#define DM_VGEMM_MR 4
static inline void vgemm_4x16(float *c, size_t ldc, const float *a, size_t lda, const float *w,
                              size_t K)
{
    dm_v8f s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0}, s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0};
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
    for (size_t k = 0; k < K; k++) {
        dm_v8f w0, w1;
        V8_LOAD(w0, w + k * 16);
        V8_LOAD(w1, w + k * 16 + 8);
        float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
        s00 += x0 * w0;
        s01 += x0 * w1;
        s10 += x1 * w0;
        s11 += x1 * w1;
        s20 += x2 * w0;
        s21 += x2 * w1;
        s30 += x3 * w0;
        s31 += x3 * w1;
    }
    V8_ADD_STORE(c, s00);
    V8_ADD_STORE(c + 8, s01);
    V8_ADD_STORE(c + ldc, s10);
    V8_ADD_STORE(c + ldc + 8, s11);
    V8_ADD_STORE(c + 2 * ldc, s20);
    V8_ADD_STORE(c + 2 * ldc + 8, s21);
    V8_ADD_STORE(c + 3 * ldc, s30);
    V8_ADD_STORE(c + 3 * ldc + 8, s31);
}

/* One row of C times one panel (rows left over below a multiple of 4). */
static inline void vgemm_1x16(float *c, const float *a, const float *w, size_t K)
{
    dm_v8f s0 = {0}, s1 = {0};
    for (size_t k = 0; k < K; k++) {
        dm_v8f w0, w1;
        V8_LOAD(w0, w + k * 16);
        V8_LOAD(w1, w + k * 16 + 8);
        s0 += a[k] * w0;
        s1 += a[k] * w1;
    }
    V8_ADD_STORE(c, s0);
    V8_ADD_STORE(c + 8, s1);
}

DM_VCLONES void dm_vgemm_packed(float *c, size_t ldc, const float *a, size_t lda,
                                const float *packed, size_t M, size_t N, size_t K)
{
    enum { NR = DM_VGEMM_NR, MR = DM_VGEMM_MR };
    _Static_assert(DM_VGEMM_NR == 16, "the tile kernels are 16 columns wide");
    const size_t np = (N + NR - 1) / NR;
    /* Panel outer: one panel (K*NR floats) stays in L1 across all rows. */
    for (size_t p = 0; p < np; p++) {
        const size_t nr = N - p * NR < NR ? N - p * NR : NR;
        const float *w = packed + p * K * NR;
        float tile[MR * NR];
        for (size_t i = 0; i < M;) {
            const size_t mr = M - i >= MR ? MR : 1;
            float *dst = c + i * ldc + p * NR;
            size_t ld = ldc;
            if (nr < NR) {
                memset(tile, 0, sizeof tile);
                dst = tile;
                ld = NR;
            }
            if (mr == MR)
                vgemm_4x16(dst, ld, a + i * lda, lda, w, K);
            else
                vgemm_1x16(dst, a + i * lda, w, K);
            if (nr < NR)
                for (size_t r = 0; r < mr; r++)
                    for (size_t jj = 0; jj < nr; jj++)
                        c[(i + r) * ldc + p * NR + jj] += tile[r * NR + jj];
            i += mr;
        }
    }
}
