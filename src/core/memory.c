/* memory.c: the differentiable key-value memory (memory.h). The read is two
 * sgemm calls around a row softmax; its backward is four sgemm calls around
 * the softmax Jacobian-vector product. The write is a few passes over M rows
 * and needs no BLAS. */
#include "core/memory.h"

#include "core/gemm.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/vmath.h"

/* BLAS takes int dimensions: every size handed to it must fit. */
#define DM_BLAS_MAX ((size_t)INT_MAX)

void dm_memory_scores(float *scores, const float *query, const float *keys, size_t N, size_t M,
                      size_t D)
{
    if (N == 0 || M == 0) return;
    if (D == 0) {
        memset(scores, 0, N * M * sizeof(float));
        return;
    }
    dm_sgemm('N', 'T', N, M, D, 1.0f, query, D, keys, D, 0.0f, scores, M);
}

/* Softmax of one row in place, max-subtracted. The max skips NaN so that a
 * NaN score poisons its row (exp(NaN) = NaN reaches the sum) rather than
 * being hidden; returns torch.argmax of the original row: the first NaN if
 * there is one, else the first largest value. */
static int32_t softmax_row(float *row, size_t M)
{
    size_t arg = 0, nan_at = M;
    float mx = -INFINITY;
    for (size_t j = 0; j < M; j++) {
        float x = row[j];
        if (isnan(x)) {
            if (nan_at == M) nan_at = j;
        } else if (x > mx) {
            mx = x;
            arg = j;
        }
    }
    if (nan_at < M) arg = nan_at;
    /* All -inf (and no NaN): torch gives NaN for 0/0; keep that. */
    double sum = dm_vexp_sum(row, row, mx, M);
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < M; j++) row[j] *= inv;
    return (int32_t)arg;
}

void dm_memory_read_forward(float *out, float *weights, int32_t *argmax, const float *query,
                            const float *keys, const float *values, size_t N, size_t M, size_t D)
{
    if (N == 0 || M == 0 || D == 0) {
        if (N && D) memset(out, 0, N * D * sizeof(float));
        return;
    }
    dm_memory_scores(weights, query, keys, N, M, D);
    for (size_t i = 0; i < N; i++) {
        int32_t a = softmax_row(weights + i * M, M);
        if (argmax) argmax[i] = a;
    }
    dm_sgemm('N', 'N', N, D, M, 1.0f, weights, M, values, D, 0.0f, out, D);
}

void dm_memory_usage_update(float *usage, const int32_t *argmax, size_t N, size_t M,
                            int32_t *scratch)
{
    memset(scratch, 0, M * sizeof(int32_t));
    for (size_t i = 0; i < N; i++) {
        int32_t a = argmax[i];
        if (a >= 0 && (size_t)a < M) scratch[a] = 1;
    }
    for (size_t j = 0; j < M; j++)
        if (scratch[j]) usage[j] += 1.0f;
}

void dm_memory_read_backward(float *dquery, float *dkeys, float *dvalues, const float *dout,
                             const float *weights, const float *query, const float *keys,
                             const float *values, size_t N, size_t M, size_t D, float *scratch)
{
    if (N == 0 || M == 0 || D == 0) return;
    const int n = (int)N, m = (int)M, d = (int)D;
    /* dvalues += W^T dout */
    dm_sgemm('T', 'N', m, d, n, 1.0f, weights, m, dout, d, 1.0f, dvalues, d);
    /* dW = dout values^T, then dS = W * (dW - <dW, W>) row by row. */
    dm_sgemm('N', 'T', n, m, d, 1.0f, dout, d, values, d, 0.0f, scratch, m);
    for (size_t i = 0; i < N; i++) {
        float *ds = scratch + i * M;
        const float *w = weights + i * M;
        double dot = 0.0;
        for (size_t j = 0; j < M; j++) dot += (double)ds[j] * w[j];
        float fdot = (float)dot;
        for (size_t j = 0; j < M; j++) ds[j] = w[j] * (ds[j] - fdot);
    }
    if (dquery)
        dm_sgemm('N', 'N', n, d, m, 1.0f, scratch, m, keys, d, 1.0f, dquery, d);
    dm_sgemm('T', 'N', m, d, n, 1.0f, scratch, m, query, d, 1.0f, dkeys, d);
}

/* x / max(||x||, 1e-12), F.normalize's rule; the norm in double. */
static void normalize_row(float *x, size_t D)
{
    double ss = 0.0;
    for (size_t j = 0; j < D; j++) ss += (double)x[j] * x[j];
    double n = sqrt(ss);
    if (n < 1e-12) n = 1e-12;
    float fn = (float)n;
    for (size_t j = 0; j < D; j++) x[j] /= fn;
}

/* sum over R rows of each row L2-normalised, into sum (D), added in row
 * order. */
static void normalized_sum(float *sum, float *tmp, const float *rows, size_t R, size_t D)
{
    memset(sum, 0, D * sizeof(float));
    for (size_t r = 0; r < R; r++) {
        memcpy(tmp, rows + r * D, D * sizeof(float));
        normalize_row(tmp, D);
        for (size_t j = 0; j < D; j++) sum[j] += tmp[j];
    }
}

static void blend_rows(float *x, const float *mean, size_t M, size_t D, float s)
{
    float keep = 1.0f - s;
    for (size_t i = 0; i < M; i++) {
        float *row = x + i * D;
        for (size_t j = 0; j < D; j++) row[j] = keep * row[j] + s * mean[j];
        normalize_row(row, D);
    }
}

int dm_memory_write_sums(float *sums, const float *new_keys, const float *new_values, size_t R,
                         size_t D, dm_error *err)
{
    if (D == 0) return dm_fail(err, "memory_write: width must be >= 1, got 0");
    float *tmp = dm_alloc(D * sizeof(float)); /* (D) */
    if (!tmp) return dm_fail(err, "memory_write: out of memory (%zu floats)", D);
    normalized_sum(sums, tmp, new_keys, R, D);
    normalized_sum(sums + D, tmp, new_values, R, D);
    dm_free(tmp);
    return 0;
}

int dm_memory_write_apply(float *keys, float *values, float *sums, double count, size_t M,
                          size_t D, float s, dm_error *err)
{
    if (M == 0) return dm_fail(err, "memory_write: slots must be >= 1, got 0");
    if (D == 0) return dm_fail(err, "memory_write: width must be >= 1, got 0");
    if (!(count >= 1.0))
        return dm_fail(err, "memory_write: need at least 1 new row, got %g", count);
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "memory_write: strength must be in [0, 1], got %g", (double)s);
    /* The float division of the one-process mean, so that a sum of R rows
     * gives the bytes dm_memory_write always gave. */
    const float inv = (float)count;
    for (size_t j = 0; j < 2 * D; j++) sums[j] /= inv;
    blend_rows(keys, sums, M, D, s);
    blend_rows(values, sums + D, M, D, s);
    return 0;
}

int dm_memory_write(float *keys, float *values, const float *new_keys, const float *new_values,
                    size_t R, size_t M, size_t D, float s, dm_error *err)
{
    if (M == 0) return dm_fail(err, "memory_write: slots must be >= 1, got 0");
    if (D == 0) return dm_fail(err, "memory_write: width must be >= 1, got 0");
    if (R == 0) return dm_fail(err, "memory_write: need at least 1 new row, got 0");
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "memory_write: strength must be in [0, 1], got %g", (double)s);
    float *sums = dm_alloc(2 * D * sizeof(float)); /* (2,D) */
    if (!sums) return dm_fail(err, "memory_write: out of memory (%zu floats)", 2 * D);
    int rc = dm_memory_write_sums(sums, new_keys, new_values, R, D, err);
    if (rc == 0) rc = dm_memory_write_apply(keys, values, sums, (double)R, M, D, s, err);
    dm_free(sums);
    return rc;
}

void dm_memory_init_params(float *keys, float *values, size_t M, size_t D, dm_rng *rng)
{
    if (D == 0) return;
    double bound = sqrt(6.0 / (double)D);
    for (size_t i = 0; i < M * D; i++)
        keys[i] = (float)((2.0 * dm_rng_uniform_double(rng) - 1.0) * bound);
    for (size_t i = 0; i < M * D; i++)
        values[i] = (float)((2.0 * dm_rng_uniform_double(rng) - 1.0) * bound);
}

/* ---- object ----------------------------------------------------------- */

void dm_memory_free(dm_memory *m)
{
    dm_arena_free(&m->params);
    dm_arena_free(&m->grads);
    dm_arena_free(&m->work);
    memset(m, 0, sizeof *m);
}

/* Lays out and allocates the working arena for reads of up to N rows into
 * *work (the scheme of arena.h: a size table for a capacity of rows). The
 * int32 entries take one float-sized cell per value. */
static int layout_work(const dm_memory *m, size_t N, dm_arena *work, dm_error *err)
{
    const int64_t n = (int64_t)N, M = (int64_t)m->M, D = (int64_t)m->D;
    const int64_t nd[2] = {n, D}, nm[2] = {n, M}, rows[1] = {n}, slots[1] = {M};
    dm_arena_init(work);
    if (dm_arena_add(work, "read.query", 2, nd, err) < 0 ||
        dm_arena_add(work, "read.weights", 2, nm, err) < 0 ||
        dm_arena_add(work, "read.argmax", 1, rows, err) < 0 ||
        dm_arena_add(work, "backward.scratch", 2, nm, err) < 0 ||
        dm_arena_add(work, "usage.scratch", 1, slots, err) < 0 || dm_arena_alloc(work, err) != 0) {
        dm_arena_free(work);
        return -1;
    }
    return 0;
}

/* Points the working buffers into m->work (entries in layout_work's order). */
static void bind_work(dm_memory *m, size_t cap_n)
{
    m->last_query = dm_arena_ptr(&m->work, 0);
    m->last_weights = dm_arena_ptr(&m->work, 1);
    m->last_argmax = (int32_t *)dm_arena_ptr(&m->work, 2);
    m->scratch = dm_arena_ptr(&m->work, 3);
    m->iscratch = (int32_t *)dm_arena_ptr(&m->work, 4);
    m->cap_n = cap_n;
}

int dm_memory_create(dm_memory *m, size_t M, size_t D, dm_rng *rng, dm_error *err)
{
    memset(m, 0, sizeof *m);
    if (M == 0) return dm_fail(err, "Memory: slots must be >= 1, got 0");
    if (D == 0) return dm_fail(err, "Memory: width must be >= 1, got 0");
    if (M > DM_BLAS_MAX || D > DM_BLAS_MAX || M > SIZE_MAX / 2 / D)
        return dm_fail(err, "Memory: %zu slots x %zu width is too large", M, D);
    m->M = M;
    m->D = D;
    int64_t shape[2] = {(int64_t)M, (int64_t)D}, slots[1] = {(int64_t)M};
    dm_arena_init(&m->params);
    /* usage is state beside the parameters, as the controller's
     * memory.usage_counts; its gradient entry stays zero. */
    if (dm_arena_add(&m->params, "keys", 2, shape, err) < 0 ||
        dm_arena_add(&m->params, "values", 2, shape, err) < 0 ||
        dm_arena_add(&m->params, "usage", 1, slots, err) < 0 ||
        dm_arena_alloc(&m->params, err) != 0 || dm_arena_init_like(&m->grads, &m->params, err) != 0)
        goto fail;
    /* No rows yet: the first read lays the working arena out for its N. */
    if (layout_work(m, 0, &m->work, err) != 0) goto fail;
    bind_work(m, 0);
    m->keys = dm_arena_ptr(&m->params, 0);
    m->values = dm_arena_ptr(&m->params, 1);
    m->usage = dm_arena_ptr(&m->params, 2);
    m->dkeys = dm_arena_ptr(&m->grads, 0);
    m->dvalues = dm_arena_ptr(&m->grads, 1);
    dm_memory_reset_usage(m);
    dm_memory_init_params(m->keys, m->values, M, D, rng ? rng : &dm_rng_global);
    return 0;
fail:
    dm_memory_free(m);
    return -1;
}

/* Regrows the working arena to hold N rows: a fresh arena is laid out and
 * allocated before the old one is freed, so a failure keeps the last read. */
static int reserve(dm_memory *m, size_t N, dm_error *err)
{
    if (N <= m->cap_n) return 0;
    if (N > DM_BLAS_MAX || N > SIZE_MAX / sizeof(float) / (m->M > m->D ? m->M : m->D))
        return dm_fail(err, "Memory.read: %zu query rows is too many", N);
    dm_arena fresh;
    if (layout_work(m, N, &fresh, err) != 0)
        return dm_fail(err, "Memory.read: out of memory for %zu query rows", N);
    dm_arena_free(&m->work);
    m->work = fresh;
    bind_work(m, N);
    m->has_last = 0;
    return 0;
}

int dm_memory_read(dm_memory *m, float *out, float *weights_out, const float *query, size_t N,
                   dm_error *err)
{
    if (reserve(m, N, err) != 0) return -1;
    if (N) memcpy(m->last_query, query, N * m->D * sizeof(float));
    dm_memory_read_forward(out, m->last_weights, m->last_argmax, m->last_query, m->keys, m->values,
                           N, m->M, m->D);
    dm_memory_usage_update(m->usage, m->last_argmax, N, m->M, m->iscratch);
    if (weights_out && N) memcpy(weights_out, m->last_weights, N * m->M * sizeof(float));
    m->last_n = N;
    m->has_last = 1;
    m->written = 0;
    return 0;
}

int dm_memory_backward(dm_memory *m, float *dquery, const float *dout, size_t N, dm_error *err)
{
    if (!m->has_last) return dm_fail(err, "Memory.backward: no read to differentiate (call read first)");
    if (m->written)
        return dm_fail(err, "Memory.backward: the memory was written after the last read; read again "
                            "before backward");
    if (N != m->last_n)
        return dm_fail(err, "Memory.backward: dout has %zu rows, the last read had %zu", N,
                       m->last_n);
    dm_memory_read_backward(dquery, m->dkeys, m->dvalues, dout, m->last_weights, m->last_query,
                            m->keys, m->values, N, m->M, m->D, m->scratch);
    return 0;
}

int dm_memory_update(dm_memory *m, const float *new_keys, const float *new_values, size_t R,
                     float s, dm_error *err)
{
    /* Checked here too so that a Lua user reads the method's name. */
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "Memory.write: strength must be in [0, 1], got %g", (double)s);
    if (R == 0) return dm_fail(err, "Memory.write: need at least 1 new row, got 0");
    if (dm_memory_write(m->keys, m->values, new_keys, new_values, R, m->M, m->D, s, err) != 0)
        return -1;
    m->written = 1;
    return 0;
}

int dm_memory_topk(const dm_memory *m, float *top_w, int64_t *top_idx, const float *query,
                   size_t N, size_t k, dm_error *err)
{
    if (k == 0 || k > m->M)
        return dm_fail(err, "Memory.topk: k must be in [1, %zu], got %zu", m->M, k);
    if (N == 0) return 0;
    if (N > DM_BLAS_MAX || N > SIZE_MAX / sizeof(float) / m->M)
        return dm_fail(err, "Memory.topk: %zu query rows is too many", N);
    float *w = dm_alloc(N * m->M * sizeof(float));
    unsigned char *taken = dm_alloc(m->M);
    if (!w || !taken) {
        dm_free(w), dm_free(taken);
        return dm_fail(err, "Memory.topk: out of memory for %zu query rows", N);
    }
    dm_memory_scores(w, query, m->keys, N, m->M, m->D);
    for (size_t i = 0; i < N; i++) {
        float *row = w + i * m->M;
        softmax_row(row, m->M);
        memset(taken, 0, m->M);
        /* Selection by repeated scans: k and M are small in a REPL peek. NaN
         * ranks first, as in torch.topk. */
        for (size_t r = 0; r < k; r++) {
            size_t best = m->M;
            for (size_t j = 0; j < m->M; j++) {
                if (taken[j]) continue;
                if (best == m->M) {
                    best = j;
                    continue;
                }
                float a = row[j], b = row[best];
                if ((isnan(a) && !isnan(b)) || a > b) best = j;
            }
            taken[best] = 1;
            top_w[i * k + r] = row[best];
            top_idx[i * k + r] = (int64_t)best;
        }
    }
    dm_free(w);
    dm_free(taken);
    return 0;
}

void dm_memory_reset_usage(dm_memory *m)
{
    for (size_t j = 0; j < m->M; j++) m->usage[j] = 1.0f;
}

void dm_memory_zero_grad(dm_memory *m) { dm_arena_zero(&m->grads); }

size_t dm_memory_slots(const dm_memory *m) { return m->M; }
size_t dm_memory_width(const dm_memory *m) { return m->D; }
float *dm_memory_keys(const dm_memory *m) { return m->keys; }
float *dm_memory_values(const dm_memory *m) { return m->values; }
float *dm_memory_key_grad(const dm_memory *m) { return m->dkeys; }
float *dm_memory_value_grad(const dm_memory *m) { return m->dvalues; }
const float *dm_memory_usage(const dm_memory *m) { return m->usage; }
int dm_memory_has_read(const dm_memory *m) { return m->has_last; }

const float *dm_memory_last_weights(const dm_memory *m, size_t *n)
{
    if (n) *n = m->has_last ? m->last_n : 0;
    return m->has_last ? m->last_weights : NULL;
}
