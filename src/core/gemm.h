/* gemm.h: the core's one matrix product. Every sgemm of the core (layers,
 * the GRU and LSTM, the memory, tensor matmul) goes through dm_sgemm, so
 * the library that does it is chosen in one place.
 *
 * Two backends: OpenBLAS, which the core links and which always works, and
 * oneDNN (Debian's libdnnl), opened with dlopen on first use. oneDNN picks
 * its JIT kernels from the CPU at run time (AVX-512 where the CPU has it),
 * while Debian's OpenBLAS runs whatever OPENBLAS_CORETYPE or its detection
 * selects (Haswell kernels on the CPUs this was measured on, half the speed
 * of AVX-512 on the step's products). Loading it at run time keeps the
 * build and the tests working with OpenBLAS alone: where libdnnl.so.2 is
 * absent the products run on OpenBLAS.
 *
 * The choice: DRLMEM_GEMM=openblas|dnnl|auto in the environment at the
 * first product (auto, the default: oneDNN when it loads, else OpenBLAS),
 * or dm_gemm_use(). Results differ between the backends by float rounding
 * (the order of the sums); each backend is deterministic for a given
 * thread count. */
#ifndef DM_GEMM_H
#define DM_GEMM_H

#include "core/common.h"

/* C (M,N) = alpha op(A) op(B) + beta C, all row-major (cblas's RowMajor):
 * op(A) is (M,K), stored as A (M,lda) when ta == 'N' or as A^T (K,lda) when
 * ta == 'T'; likewise op(B) (K,N) from B (K,ldb) or B^T (N,ldb). beta == 0
 * overwrites C without reading it. M, N or K == 0 are allowed (K == 0
 * scales C by beta). Sizes must fit int (the callers check rows). */
void dm_sgemm(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

typedef enum { DM_GEMM_OPENBLAS = 0, DM_GEMM_DNNL = 1 } dm_gemm_backend;

/* Selects the backend by name ("openblas", "dnnl" or "auto"). Fails (-1)
 * on another name, or for "dnnl" when libdnnl.so.2 cannot be loaded (the
 * message says why); the backend is then unchanged. */
int dm_gemm_use(const char *name, dm_error *err);
/* The backend in use (resolving DRLMEM_GEMM on first call). */
dm_gemm_backend dm_gemm_current(void);
const char *dm_gemm_name(void);
/* The kernel set the backend chose: OpenBLAS's core name ("Haswell") or
 * oneDNN's ISA ("avx512_core", "avx2", ...). */
const char *dm_gemm_kernel(void);
/* Whether oneDNN can be loaded here (tests run both paths where it can). */
int dm_gemm_dnnl_available(void);
/* Threads for the products of both libraries (OpenBLAS's pool and the
 * OpenMP pool oneDNN runs on), n >= 1. */
void dm_gemm_set_threads(int n);
int dm_gemm_get_threads(void);

/* Rows [0,n) split into one contiguous range per thread of the products'
 * pool, fn(ctx, r0, r1) called once per range, all ranges done on return.
 * The pool is oneDNN's OpenMP pool (the same threads its products use, so
 * no second pool waits beside them); with OpenBLAS products, one thread,
 * or fewer than 2 * min_rows rows, fn runs once over [0,n) on the caller.
 * fn must write disjoint rows (the ranges run concurrently); results that
 * depend only on their own rows are then the same for any thread count. */
typedef void (*dm_rows_fn)(void *ctx, size_t r0, size_t r1);
void dm_parallel_rows(size_t n, size_t min_rows, dm_rows_fn fn, void *ctx);

#endif
