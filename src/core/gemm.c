/* gemm.c: dm_sgemm over OpenBLAS or oneDNN (contract in gemm.h).
 *
 * oneDNN is opened with dlopen(RTLD_LOCAL) rather than linked: it exports
 * BLAS-named symbols of its own, and a link-time dependency would make it a
 * build requirement. Only three of its C functions are used, with the
 * prototypes of oneDNN 2.x's dnnl.h written out here (dnnl_dim_t is
 * int64_t, dnnl_status_t an int enum whose success is 0). Its OpenMP pool
 * (libgomp, which it brings in) takes the thread count through
 * omp_set_num_threads, found through the same handle. */
#include "core/gemm.h"

#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*dnnl_sgemm_fn)(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc);

static struct {
    int resolved;          /* DRLMEM_GEMM read */
    dm_gemm_backend which;
    int dnnl_tried;        /* dlopen attempted (once) */
    void *dnnl;            /* handle, or NULL when it did not load */
    char dnnl_why[256];    /* dlerror of the failed load */
    dnnl_sgemm_fn sgemm;
    int (*isa)(void);
    void (*omp_set_threads)(int);
    int (*omp_get_threads)(void);
    /* libgomp's entry points for a parallel region (what GCC emits for
     * `#pragma omp parallel`), so the core needs no -fopenmp */
    void (*gomp_parallel)(void (*fn)(void *), void *data, unsigned nthreads, unsigned flags);
    int (*omp_thread_num)(void), (*omp_num_threads)(void);
    int threads;           /* last dm_gemm_set_threads, 0 = library defaults */
} G;

static int dnnl_load(void)
{
    if (G.dnnl_tried) return G.dnnl != NULL;
    G.dnnl_tried = 1;
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(G.dnnl_why, sizeof G.dnnl_why, "%s", e ? e : "dlopen failed");
        return 0;
    }
    /* A function pointer from dlsym's void *: POSIX guarantees the
     * conversion; memcpy keeps -Wpedantic quiet. */
    void *s = dlsym(h, "dnnl_sgemm"), *i = dlsym(h, "dnnl_get_effective_cpu_isa");
    void *ot = dlsym(h, "omp_set_num_threads"), *og = dlsym(h, "omp_get_max_threads");
    if (!s || !i) {
        snprintf(G.dnnl_why, sizeof G.dnnl_why, "libdnnl.so.2 has no dnnl_sgemm");
        dlclose(h);
        return 0;
    }
    memcpy(&G.sgemm, &s, sizeof s);
    memcpy(&G.isa, &i, sizeof i);
    if (ot) memcpy(&G.omp_set_threads, &ot, sizeof ot);
    if (og) memcpy(&G.omp_get_threads, &og, sizeof og);
    void *gp = dlsym(h, "GOMP_parallel"), *tn = dlsym(h, "omp_get_thread_num"),
         *nt = dlsym(h, "omp_get_num_threads");
    if (gp && tn && nt) {
        memcpy(&G.gomp_parallel, &gp, sizeof gp);
        memcpy(&G.omp_thread_num, &tn, sizeof tn);
        memcpy(&G.omp_num_threads, &nt, sizeof nt);
    }
    G.dnnl = h;
    if (G.threads > 0 && G.omp_set_threads) G.omp_set_threads(G.threads);
    return 1;
}

static void resolve(void)
{
    if (G.resolved) return;
    G.resolved = 1;
    const char *env = getenv("DRLMEM_GEMM");
    if (env && strcmp(env, "openblas") == 0) {
        G.which = DM_GEMM_OPENBLAS;
    } else {
        /* "dnnl" that cannot load falls back too: a product has no way to
         * fail, and dm.gemm_info names the backend that ran. */
        G.which = dnnl_load() ? DM_GEMM_DNNL : DM_GEMM_OPENBLAS;
    }
}

int dm_gemm_use(const char *name, dm_error *err)
{
    resolve();
    if (strcmp(name, "openblas") == 0) {
        G.which = DM_GEMM_OPENBLAS;
    } else if (strcmp(name, "dnnl") == 0 || strcmp(name, "auto") == 0) {
        if (dnnl_load())
            G.which = DM_GEMM_DNNL;
        else if (name[0] == 'd')
            return dm_fail(err, "gemm: oneDNN cannot be loaded (%s); install libdnnl2", G.dnnl_why);
        else
            G.which = DM_GEMM_OPENBLAS;
    } else {
        return dm_fail(err, "gemm: unknown backend \"%s\" (expected openblas, dnnl or auto)", name);
    }
    return 0;
}

dm_gemm_backend dm_gemm_current(void)
{
    resolve();
    return G.which;
}

const char *dm_gemm_name(void) { return dm_gemm_current() == DM_GEMM_DNNL ? "oneDNN" : "OpenBLAS"; }

const char *dm_gemm_kernel(void)
{
    if (dm_gemm_current() == DM_GEMM_OPENBLAS) return openblas_get_corename();
    /* The values of dnnl_cpu_isa_t in oneDNN 2.6's dnnl_types.h. */
    static const struct { int v; const char *s; } isas[] = {
        {0x1, "sse41"}, {0x3, "avx"}, {0x7, "avx2"}, {0x407, "avx2_vnni"},
        {0xf, "avx512_mic"}, {0x1f, "avx512_mic_4ops"}, {0x27, "avx512_core"},
        {0x67, "avx512_core_vnni"}, {0xe7, "avx512_core_bf16"}, {0x3e7, "avx512_core_amx"}};
    int v = G.isa();
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        if (isas[i].v == v) return isas[i].s;
    return "unknown";
}

int dm_gemm_dnnl_available(void) { return dnnl_load(); }

void dm_gemm_set_threads(int n)
{
    if (n < 1) n = 1;
    G.threads = n;
    openblas_set_num_threads(n);
    if (G.dnnl && G.omp_set_threads) G.omp_set_threads(n);
}

int dm_gemm_get_threads(void)
{
    if (dm_gemm_current() == DM_GEMM_DNNL && G.omp_get_threads) return G.omp_get_threads();
    return openblas_get_num_threads();
}

void dm_sgemm(char ta, char tb, size_t M, size_t N, size_t K, float alpha, const float *A,
              size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    if (M == 0 || N == 0) return;
    if (K == 0) {
        /* No product: C = beta C (both libraries would, but not all
         * versions accept K = 0 with these leading dimensions). */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    resolve();
    if (G.which == DM_GEMM_DNNL &&
        G.sgemm(ta, tb, (int64_t)M, (int64_t)N, (int64_t)K, alpha, A, (int64_t)lda, B,
                (int64_t)ldb, beta, C, (int64_t)ldc) == 0)
        return;
    /* oneDNN refuses only arguments OpenBLAS would refuse as well; a
     * refusal falls through to it rather than leaving C unwritten. */
    cblas_sgemm(CblasRowMajor, ta == 'T' ? CblasTrans : CblasNoTrans,
                tb == 'T' ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

typedef struct rows_job {
    size_t n;
    dm_rows_fn fn;
    void *ctx;
} rows_job;

static void rows_thread(void *data)
{
    const rows_job *j = data;
    size_t k = (size_t)G.omp_thread_num(), m = (size_t)G.omp_num_threads();
    size_t r0 = j->n * k / m, r1 = j->n * (k + 1) / m;
    if (r1 > r0) j->fn(j->ctx, r0, r1);
}

void dm_parallel_rows(size_t n, size_t min_rows, dm_rows_fn fn, void *ctx)
{
    if (n == 0) return;
    int nt = 1;
    if (dm_gemm_current() == DM_GEMM_DNNL && G.gomp_parallel && G.omp_get_threads)
        nt = G.omp_get_threads();
    if (min_rows < 1) min_rows = 1;
    if ((size_t)nt > n / min_rows) nt = (int)(n / min_rows);
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    rows_job j = {n, fn, ctx};
    G.gomp_parallel(rows_thread, &j, (unsigned)nt, 0);
}
