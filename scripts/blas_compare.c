/* blas_compare.c: times single-precision matrix products (sgemm) of given
 * shapes through one of three libraries, OpenBLAS, BLIS or oneDNN, so that
 * the speed each reaches on drlmem's own product shapes can be compared
 * before the core is pointed at one of them, and so that scripts/bench.lua
 * can time the products of a training step alone (the limit a step could
 * reach if nothing but its matrix products took time). It is a measuring
 * tool, not part of the core build: `make blas-compare` builds and runs it
 * through scripts/blas_compare.lua, which prints the table.
 *
 *   blas_compare --lib openblas|blis|dnnl [--threads N] [--min-time S]
 *                --shape MxNxK[:AB] ...     (A, B: N or T, row-major, cblas)
 *
 * prints one JSON line per shape: the library and the kernel it chose, the
 * thread count, the median time of the repetitions, GFLOP/s (2MNK / time)
 * and the largest relative error of 32 sampled entries of C against a double
 * dot product (so a transpose handled wrongly shows, not just a fast time).
 *
 * Each library is opened with dlopen, one per process: all three export
 * BLAS/CBLAS symbols of the same names (cblas_sgemm, sgemm_), and linking
 * two would silently bind every call to whichever came first. The thread
 * count goes to the library's environment variable before it is loaded and
 * to its API after. The few prototypes are written out here (with the
 * integer widths of Debian's builds: BLIS dim_t and oneDNN dnnl_dim_t are
 * 64-bit) because the libraries' headers cannot be included together. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_SHAPES = 256 };

typedef struct shape {
    long m, n, k;
    char ta, tb; /* 'N' or 'T' */
} shape;

/* One library's sgemm behind a row-major cblas-like call. */
typedef struct blas_lib {
    const char *name;
    char kernel[128];
    void *handle;
    /* OpenBLAS */
    void (*cblas_sgemm)(int order, int ta, int tb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c,
                        int ldc);
    /* BLIS: general strides, so a transpose is a swap of strides */
    void (*bli_sgemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *alpha,
                      const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb,
                      int64_t csb, const float *beta, float *c, int64_t rsc, int64_t csc);
    /* oneDNN */
    int (*dnnl_sgemm)(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc);
} blas_lib;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *need_sym(void *h, const char *lib, const char *sym)
{
    void *p = dlsym(h, sym);
    if (!p) fprintf(stderr, "blas_compare: %s has no symbol %s\n", lib, sym);
    return p;
}

/* Opens lib with nthreads threads; 0 on success, else a message on stderr. */
static int blas_lib_open(blas_lib *L, const char *name, int nthreads)
{
    char tbuf[32];
    snprintf(tbuf, sizeof tbuf, "%d", nthreads);
    memset(L, 0, sizeof *L);
    L->name = name;
    if (strcmp(name, "openblas") == 0) {
        setenv("OPENBLAS_NUM_THREADS", tbuf, 1);
        L->handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!L->handle) goto noload;
        L->cblas_sgemm = need_sym(L->handle, name, "cblas_sgemm");
        void (*set_threads)(int) = need_sym(L->handle, name, "openblas_set_num_threads");
        char *(*corename)(void) = need_sym(L->handle, name, "openblas_get_corename");
        if (!L->cblas_sgemm || !set_threads || !corename) return -1;
        set_threads(nthreads);
        snprintf(L->kernel, sizeof L->kernel, "%s", corename());
    } else if (strcmp(name, "blis") == 0) {
        setenv("BLIS_NUM_THREADS", tbuf, 1);
        setenv("OMP_NUM_THREADS", tbuf, 1);
        L->handle = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!L->handle) goto noload;
        L->bli_sgemm = need_sym(L->handle, name, "bli_sgemm");
        void (*set_threads)(int64_t) = need_sym(L->handle, name, "bli_thread_set_num_threads");
        int (*arch_id)(void) = need_sym(L->handle, name, "bli_arch_query_id");
        char *(*arch_str)(int) = need_sym(L->handle, name, "bli_arch_string");
        if (!L->bli_sgemm || !set_threads || !arch_id || !arch_str) return -1;
        set_threads(nthreads);
        snprintf(L->kernel, sizeof L->kernel, "%s", arch_str(arch_id()));
    } else if (strcmp(name, "dnnl") == 0) {
        setenv("OMP_NUM_THREADS", tbuf, 1);
        L->handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!L->handle) goto noload;
        L->dnnl_sgemm = need_sym(L->handle, name, "dnnl_sgemm");
        int (*isa)(void) = need_sym(L->handle, name, "dnnl_get_effective_cpu_isa");
        /* libgomp comes in with libdnnl; its pool takes the count. */
        void (*omp_threads)(int) = dlsym(L->handle, "omp_set_num_threads");
        if (!L->dnnl_sgemm || !isa) return -1;
        if (omp_threads) omp_threads(nthreads);
        /* The values of dnnl_cpu_isa_t (dnnl_types.h of oneDNN 2.6). */
        static const struct { int v; const char *s; } isas[] = {
            {0x1, "sse41"}, {0x3, "avx"}, {0x7, "avx2"}, {0x407, "avx2_vnni"},
            {0xf, "avx512_mic"}, {0x1f, "avx512_mic_4ops"}, {0x27, "avx512_core"},
            {0x67, "avx512_core_vnni"}, {0xe7, "avx512_core_bf16"}, {0x3e7, "avx512_core_amx"}};
        int v = isa();
        const char *s = "unknown";
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
            if (isas[i].v == v) s = isas[i].s;
        snprintf(L->kernel, sizeof L->kernel, "%s", s);
    } else {
        fprintf(stderr, "blas_compare: unknown --lib %s (expected openblas, blis or dnnl)\n", name);
        return -1;
    }
    return 0;
noload:
    fprintf(stderr, "blas_compare: cannot load %s: %s\n", name, dlerror());
    return -1;
}

/* C (m,n) = op(A) op(B), row-major; op(A) is (m,k), op(B) is (k,n). */
static void blas_lib_sgemm(const blas_lib *L, const shape *s, const float *a, const float *b,
                           float *c)
{
    const long m = s->m, n = s->n, k = s->k;
    const int at = s->ta == 'T', bt = s->tb == 'T';
    const long lda = at ? m : k, ldb = bt ? k : n;
    if (L->cblas_sgemm) {
        /* CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 */
        L->cblas_sgemm(101, at ? 112 : 111, bt ? 112 : 111, (int)m, (int)n, (int)k, 1.0f, a,
                       (int)lda, b, (int)ldb, 0.0f, c, (int)n);
    } else if (L->bli_sgemm) {
        const float one = 1.0f, zero = 0.0f;
        /* element (i,p) of op(A): row stride rsa, column stride csa */
        int64_t rsa = at ? 1 : lda, csa = at ? lda : 1;
        int64_t rsb = bt ? 1 : ldb, csb = bt ? ldb : 1;
        L->bli_sgemm(0, 0, m, n, k, &one, a, rsa, csa, b, rsb, csb, &zero, c, n, 1);
    } else {
        L->dnnl_sgemm(s->ta, s->tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
    }
}

static int parse_shape(shape *s, const char *text)
{
    char ta = 'N', tb = 'N';
    int used = 0;
    if (sscanf(text, "%ldx%ldx%ld%n", &s->m, &s->n, &s->k, &used) != 3) return -1;
    if (text[used] == ':') {
        if (strlen(text + used) != 3) return -1;
        ta = text[used + 1];
        tb = text[used + 2];
    } else if (text[used] != '\0') {
        return -1;
    }
    if ((ta != 'N' && ta != 'T') || (tb != 'N' && tb != 'T')) return -1;
    if (s->m < 1 || s->n < 1 || s->k < 1 || s->m > 1000000 || s->n > 1000000 || s->k > 1000000)
        return -1;
    s->ta = ta;
    s->tb = tb;
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Largest relative error of 32 sampled C entries against double sums. */
static double sampled_rel_err(const shape *s, const float *a, const float *b, const float *c)
{
    const long lda = s->ta == 'T' ? s->m : s->k, ldb = s->tb == 'T' ? s->k : s->n;
    double worst = 0.0;
    unsigned long x = 12345;
    for (int q = 0; q < 32; q++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        long i = (long)((x >> 33) % (unsigned long)s->m);
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        long j = (long)((x >> 33) % (unsigned long)s->n);
        double sum = 0.0, mag = 0.0;
        for (long p = 0; p < s->k; p++) {
            double av = s->ta == 'T' ? a[p * lda + i] : a[i * lda + p];
            double bv = s->tb == 'T' ? b[j * ldb + p] : b[p * ldb + j];
            sum += av * bv;
            mag += fabs(av * bv);
        }
        double e = fabs((double)c[i * s->n + j] - sum) / (mag > 0 ? mag : 1.0);
        if (e > worst) worst = e;
    }
    return worst;
}

int main(int argc, char **argv)
{
    const char *libname = "openblas";
    int nthreads = 1;
    double min_time = 0.2;
    shape shapes[MAX_SHAPES];
    int nshapes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--lib") == 0 && v) {
            libname = v;
            i++;
        } else if (strcmp(a, "--threads") == 0 && v) {
            nthreads = atoi(v);
            if (nthreads < 1 || nthreads > 256) {
                fprintf(stderr, "blas_compare: --threads expects 1..256, got %s\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--min-time") == 0 && v) {
            min_time = atof(v);
            if (!(min_time >= 0.0 && min_time <= 60.0)) {
                fprintf(stderr, "blas_compare: --min-time expects 0..60 seconds, got %s\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--shape") == 0 && v) {
            if (nshapes == MAX_SHAPES) {
                fprintf(stderr, "blas_compare: at most %d shapes\n", MAX_SHAPES);
                return 2;
            }
            if (parse_shape(&shapes[nshapes], v) != 0) {
                fprintf(stderr, "blas_compare: --shape expects MxNxK or MxNxK:AB with A, B in {N, T} "
                                "and sizes 1..1000000, got %s\n", v);
                return 2;
            }
            nshapes++;
            i++;
        } else {
            fprintf(stderr, "usage: blas_compare --lib openblas|blis|dnnl [--threads N] "
                            "[--min-time S] --shape MxNxK[:AB] ...\n");
            return 2;
        }
    }
    if (nshapes == 0) {
        fprintf(stderr, "blas_compare: no --shape given\n");
        return 2;
    }
    blas_lib lib;
    if (blas_lib_open(&lib, libname, nthreads) != 0) return 1;
    for (int si = 0; si < nshapes; si++) {
        const shape *s = &shapes[si];
        size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
        if (!a || !b || !c) {
            fprintf(stderr, "blas_compare: out of memory for %ldx%ldx%ld\n", s->m, s->n, s->k);
            return 1;
        }
        unsigned long x = 1;
        for (size_t i = 0; i < na; i++) a[i] = (float)((x = x * 1103515245 + 12345) >> 16 & 1023) / 512.0f - 1.0f;
        for (size_t i = 0; i < nb; i++) b[i] = (float)((x = x * 1103515245 + 12345) >> 16 & 1023) / 512.0f - 1.0f;
        memset(c, 0, nc * sizeof *c);
        blas_lib_sgemm(&lib, s, a, b, c); /* warm-up: first-touch, thread start */
        double times[1000];
        int reps = 0;
        double t_all = now_s();
        while (reps < 1000 && (reps < 3 || now_s() - t_all < min_time)) {
            double t0 = now_s();
            blas_lib_sgemm(&lib, s, a, b, c);
            times[reps++] = now_s() - t0;
        }
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        double med = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
        double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
        printf("{\"lib\":\"%s\",\"kernel\":\"%s\",\"threads\":%d,\"m\":%ld,\"n\":%ld,\"k\":%ld,"
               "\"ta\":\"%c\",\"tb\":\"%c\",\"reps\":%d,\"median_s\":%.9g,\"min_s\":%.9g,"
               "\"gflops\":%.4g,\"max_rel_err\":%.3g}\n",
               lib.name, lib.kernel, nthreads, s->m, s->n, s->k, s->ta, s->tb, reps, med, times[0],
               flops / med * 1e-9, sampled_rel_err(s, a, b, c));
        fflush(stdout);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
