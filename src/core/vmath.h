/* vmath.h: vectorised float kernels for the elementwise hot spots: exp,
 * erf, tanh, sigmoid over arrays, the GELU forward and backward, the GRU
 * gate math of one batch row, and the exp-and-sum of a softmax row.
 *
 * libm's expf/erff/tanhf are scalar calls with branches, so a loop over the
 * 16M logits of a V=10000 batch runs one element at a time. These kernels
 * are branch-free polynomials (coefficients fitted for this file by least
 * squares on Chebyshev nodes against double-precision references) that GCC
 * turns into SIMD code: SSE4.2 under the build's -march=x86-64-v2, and
 * AVX-512 (avx512f) and AVX2 clones picked at run time on CPUs that have
 * them (neither needed at build time; AVX-512 runs the GELU and exp loops
 * of a V=10000 batch 2-4x faster than AVX2 here). The clones do the same IEEE operations lane by lane (no FMA
 * contraction under -std=c11), so every CPU computes the same bits.
 *
 * Accuracy against the double-precision libm result, measured by
 * tests/c/test_vmath.c over millions of inputs:
 *   dm_vexp      <= 2 ulp for x in [-87.3, 88.7]; below, subnormal results
 *                   are within 1 ulp of the smallest subnormal (absolute
 *                   error < 2e-45); x < -104 gives 0, x > 88.73 gives +inf
 *   dm_verf      <= 2 ulp everywhere (|erf| rounds to 1 beyond |x| = 4)
 *   dm_vtanh     <= 3 ulp everywhere
 *   dm_vsigmoid  <= 3 ulp where the result is >= 1e-30 (1/(1+exp(-x)))
 * NaN in gives NaN out; +-inf give the limits. Every array kernel accepts
 * out == in (elementwise in place) but no other overlap. */
#ifndef DM_VMATH_H
#define DM_VMATH_H

#include <stddef.h>

void dm_vexp(float *out /* (n) */, const float *in /* (n) */, size_t n);
void dm_verf(float *out /* (n) */, const float *in /* (n) */, size_t n);
void dm_vtanh(float *out /* (n) */, const float *in /* (n) */, size_t n);
void dm_vsigmoid(float *out /* (n) */, const float *in /* (n) */, size_t n);

/* out = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's exact GELU formula. */
void dm_vgelu_forward(float *out /* (n) */, const float *in /* (n) */, size_t n);
/* din (+)= dout * (Phi(x) + x phi(x)) with x = in; accumulate != 0 adds
 * into din, 0 overwrites it (saves zeroing a buffer first). */
void dm_vgelu_backward(float *din /* (n) */, const float *dout /* (n) */,
                       const float *in /* (n) pre-activation */, size_t n, int accumulate);

/* max of x[0..n), n >= 1, as the loop `m = x[0]; if (x[i] > m) m = x[i]`
 * gives it: NaN only when x[0] is NaN. */
float dm_vmax(const float *x /* (n) */, size_t n);

/* exp(x[i] - shift), the difference rounded to float as PyTorch's
 * softmax does, summed in double (8 interleaved partial sums, so the
 * result is independent of the SIMD width). When out is not NULL it also
 * gets the exps (out may equal x). */
double dm_vexp_sum(float *out /* (n) or NULL */, const float *x /* (n) */, float shift, size_t n);

/* Cross-entropy gradient of one row: g[v] (+)= (float)(scale * exp(x[v] - lse)),
 * the exponent and product in double as the reference computes them (the
 * exp itself in float). The caller subtracts the one-hot term. */
void dm_vsoftmax_grad_row(float *g /* (n) */, const float *x /* (n) */, double lse,
                          double scale, size_t n, int accumulate);

/* One GRU timestep of one batch row (gate rows r, z, n as PyTorch):
 *   r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z),
 *   n = tanh(gx_n + r * gh_n), h = (1 - z) n + z hprev
 * gx holds the input projections on entry and r, z, n on return (what
 * backward needs). hprev NULL means h0 = 0. */
void dm_vgru_gates(float *gx /* (3H) in/out */, const float *gh /* (3H) */,
                   const float *hprev /* (H) or NULL */, float *h /* (H) */, size_t H);

/* The matching backward of one row: from gh_total = dy + dh_carry (dh is
 * the carried gradient, replaced by its next value gh_total * z), writes
 * the pre-activation gradients of the input projection (dx) and of the
 * hidden projection (dhh; equal except the n rows, scaled by r). */
void dm_vgru_gates_backward(float *dx /* (3H) */, float *dhh /* (3H) */, float *dh /* (H) in/out */,
                            const float *gates /* (3H) r,z,n */, const float *gh /* (3H) */,
                            const float *dy /* (H) */, const float *hprev /* (H) or NULL */,
                            size_t H);

/* A small-M matrix product for the GRU recurrence, C (M,N) += A (M,K) B (K,N),
 * M around the batch size. OpenBLAS repacks B on every call and its kernel
 * for the CPU it picks here is slow at M = 16; packing B once per sequence
 * into panels of DM_VGEMM_NR columns (zero-padded) and running a C kernel
 * (GCC generic vectors, AVX2 clone at run time) over them is faster. Each C element is summed over k in order and
 * then added to C, so every CPU gives the same bits. */
#define DM_VGEMM_NR 16
/* Floats of the packed B: K * N rounded up to a multiple of DM_VGEMM_NR. */
size_t dm_vgemm_packed_numel(size_t K, size_t N);
/* Packs B (K,N) for dm_vgemm_packed; trans = 0: B[k][n] = b[k*ldb + n],
 * trans != 0: B[k][n] = b[n*ldb + k] (b is B^T, as W_hh for h W_hh^T). */
void dm_vgemm_pack(float *packed /* (packed_numel) */, const float *b, size_t ldb, int trans,
                   size_t K, size_t N);
/* C[i][j] += sum_k A[i][k] B[k][j], A rows lda apart, C rows ldc apart. */
void dm_vgemm_packed(float *c /* (M,ldc) */, size_t ldc, const float *a /* (M,lda) */, size_t lda,
                     const float *packed, size_t M, size_t N, size_t K);

#endif
