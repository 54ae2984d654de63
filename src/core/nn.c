/* nn.c: the stateless layers (Linear, GELU, Embedding, Dropout,
 * log-softmax, cross-entropy) and the initialisers; contracts in nn.h.
 * Matrix products go through dm_sgemm (gemm.h) with the transposes handed to it;
 * every backward adds into its gradients. */
#include "core/nn.h"

#include "core/gemm.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/vmath.h"

/* ---- Linear ---- */

void dm_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       size_t N, size_t C, size_t OC)
{
    if (N == 0 || OC == 0) return;
    /* Seeding out with the bias lets one sgemm (beta = 1) add the product. */
    if (bias) {
        for (size_t n = 0; n < N; n++) memcpy(out + n * OC, bias, OC * sizeof *out);
    } else {
        memset(out, 0, N * OC * sizeof *out);
    }
    if (C == 0) return;
    dm_sgemm('N', 'T', N, OC, C, 1.0f, in, C, weight, C, 1.0f, out, OC);
}

void dm_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, size_t N, size_t C, size_t OC)
{
    if (N == 0 || OC == 0) return;
    if (din && C > 0)
        dm_sgemm('N', 'N', N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, din, C);
    if (dweight && C > 0)
        dm_sgemm('T', 'N', OC, C, N, 1.0f, dout, OC, in, C, 1.0f, dweight, C);
    if (dbias) {
        for (size_t n = 0; n < N; n++) {
            const float *row = dout + n * OC;
            for (size_t o = 0; o < OC; o++) dbias[o] += row[o];
        }
    }
}

/* ---- GELU ---- */

/* The loops live in vmath.c, where erf and exp vectorise. */
typedef struct gelu_job {
    float *out;
    const float *in;
    size_t n;
} gelu_job;

/* Blocks of GELU_BLOCK floats; the last one may be short. */
#define GELU_BLOCK 4096
static void gelu_blocks(void *p, size_t b0, size_t b1)
{
    const gelu_job *j = p;
    size_t i0 = b0 * GELU_BLOCK, i1 = b1 * GELU_BLOCK < j->n ? b1 * GELU_BLOCK : j->n;
    dm_vgelu_forward(j->out + i0, j->in + i0, i1 - i0);
}

/* Elementwise, so the threads of a large call (the logits' GELU) change
 * no bit; a small one runs on the caller. */
void dm_gelu_forward(float *out, const float *in, size_t n)
{
    gelu_job j = {out, in, n};
    dm_parallel_rows((n + GELU_BLOCK - 1) / GELU_BLOCK, 64, gelu_blocks, &j);
}

void dm_gelu_backward(float *din, const float *dout, const float *in, size_t n)
{
    dm_vgelu_backward(din, dout, in, n, 1);
}

/* ---- Embedding ---- */

int dm_embedding_forward(float *out, const int32_t *ids, const float *weight, size_t N, size_t V,
                         size_t E, dm_error *err)
{
    for (size_t i = 0; i < N; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= V)
            return dm_fail(err,
                           "embedding: token id %d at position %zu is out of range for "
                           "vocabulary size %zu (valid ids are 0..%zu)",
                           (int)id, i, V, V ? V - 1 : 0);
        memcpy(out + i * E, weight + (size_t)id * E, E * sizeof *out);
    }
    return 0;
}

void dm_embedding_backward(float *dweight, const float *dout, const int32_t *ids, size_t N,
                           size_t E)
{
    for (size_t i = 0; i < N; i++) {
        float *row = dweight + (size_t)ids[i] * E;
        const float *g = dout + i * E;
        for (size_t e = 0; e < E; e++) row[e] += g[e];
    }
}

/* ---- Dropout ---- */

void dm_dropout_forward(float *out, float *mask, const float *in, size_t n, float p, int training,
                        dm_rng *rng)
{
    if (!training || p <= 0.0f) {
        for (size_t i = 0; i < n; i++) {
            mask[i] = 1.0f;
            out[i] = in[i];
        }
        return;
    }
    /* 1/(1-p) in double, as PyTorch; p >= 1 would scale by infinity, and
     * PyTorch returns zeros there too. */
    float keep = p >= 1.0f ? 0.0f : (float)(1.0 / (1.0 - (double)p));
    for (size_t i = 0; i < n; i++) {
        float u = dm_rng_uniform(rng);
        mask[i] = u < p ? 0.0f : keep;
        out[i] = in[i] * mask[i];
    }
}

void dm_dropout_mask(float *mask, size_t B, size_t T, size_t W, float p, int variational,
                     dm_rng *rng)
{
    const float keep = p >= 1.0f ? 0.0f : (float)(1.0 / (1.0 - (double)p));
    if (!variational) {
        for (size_t i = 0; i < B * T * W; i++) mask[i] = dm_rng_uniform(rng) < p ? 0.0f : keep;
        return;
    }
    for (size_t b = 0; b < B; b++) {
        float *m0 = mask + b * T * W;
        for (size_t k = 0; k < W; k++) m0[k] = dm_rng_uniform(rng) < p ? 0.0f : keep;
        for (size_t t = 1; t < T; t++) memcpy(m0 + t * W, m0, W * sizeof *m0);
    }
}

void dm_dropout_backward(float *din, const float *dout, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * mask[i];
}

/* ---- log-softmax, cross-entropy ---- */

/* max + log(sum exp(x - max)), the sum in double: exact enough for any
 * logit size and immune to overflow, since every exponent is <= 0. The
 * exps are vmath's float ones (x - max rounded to float first, as
 * PyTorch's log_softmax does). */
static double row_logsumexp(const float *x, size_t V)
{
    float mx = dm_vmax(x, V);
    return (double)mx + log(dm_vexp_sum(NULL, x, mx, V));
}

void dm_log_softmax_forward(float *out, const float *in, size_t N, size_t V)
{
    if (V == 0) return;
    for (size_t n = 0; n < N; n++) {
        double lse = row_logsumexp(in + n * V, V);
        for (size_t v = 0; v < V; v++) out[n * V + v] = (float)((double)in[n * V + v] - lse);
    }
}

/* Counts the targets that take part, or fails naming the first bad one.
 * Everything is validated before anything is written. */
static int count_targets(size_t *count, const int32_t *targets, size_t N, size_t V,
                         int32_t ignore_index, dm_error *err)
{
    size_t cnt = 0;
    for (size_t n = 0; n < N; n++) {
        int32_t t = targets[n];
        if (ignore_index >= 0 && t == ignore_index) continue;
        if (t < 0 || (size_t)t >= V)
            return dm_fail(err,
                           "cross_entropy: target %d at position %zu is out of range for "
                           "vocabulary size %zu (valid targets are 0..%zu)",
                           (int)t, n, V, V ? V - 1 : 0);
        cnt++;
    }
    *count = cnt;
    return 0;
}

/* One counted row: its NLL, and when g is not NULL its gradient added into
 * g: softmax * scale everywhere, then the target's -1 in double on the
 * target's own (unrounded) term. */
static double row_nll(float *g, const float *x, int32_t t, size_t V, double scale)
{
    double lse = row_logsumexp(x, V);
    if (g) {
        float gt = g[t];
        dm_vsoftmax_grad_row(g, x, lse, scale, V, 1);
        float dt = (float)((double)x[t] - lse), pt;
        dm_vexp(&pt, &dt, 1);
        g[t] = gt + (float)(scale * ((double)pt - 1.0));
    }
    return lse - (double)x[t];
}

/* The rows of one cross-entropy call, shared by the threads of
 * dm_parallel_rows: each range of rows writes its own NLLs and gradient
 * rows; the NLLs are summed afterwards in row order, so the loss is the
 * same for any thread count. */
typedef struct ce_job {
    double *nll;            /* (N) each counted row's NLL, 0 elsewhere */
    float *grad;            /* dm_cross_entropy: dlogits added into; fused: dpre, or NULL */
    const float *logits;    /* (N,V) */
    const float *pre;       /* fused with the GELU: (N,V), else NULL */
    const int32_t *targets; /* (N) */
    size_t V;
    int32_t ignore_index;
    double scale;
    int fused;              /* overwrite grad (dm_cross_entropy_pre) rather than add */
    atomic_int oom;
} ce_job;

static void ce_rows(void *p, size_t r0, size_t r1)
{
    ce_job *j = p;
    const size_t V = j->V;
    /* fused with the GELU: g, the row's dlogits; d, its pre-activation
     * gradient before it replaces the row of grad (which may be pre) */
    float *g = NULL, *d = NULL;
    if (j->fused && j->pre) {
        g = dm_alloc(2 * V * sizeof *g);
        if (!g) {
            atomic_store(&j->oom, 1);
            return;
        }
        d = g + V;
    }
    for (size_t n = r0; n < r1; n++) {
        int32_t t = j->targets[n];
        int counted = !(j->ignore_index >= 0 && t == j->ignore_index) && j->scale == j->scale;
        float *row = j->grad ? j->grad + n * V : NULL;
        if (j->fused) {
            row = g ? g : row;
            memset(row, 0, V * sizeof *row);
        }
        j->nll[n] = counted ? row_nll(row, j->logits + n * V, t, V, j->scale) : 0.0;
        if (g) {
            dm_vgelu_backward(d, g, j->pre + n * V, V, 0);
            memcpy(j->grad + n * V, d, V * sizeof *d);
        }
    }
    dm_free(g);
}

/* Floats per thread below which a second thread costs more than it
 * saves (a parallel region's start and end; on a loaded machine, a wait
 * for a thread that has no core): V = 10000 splits from 32 rows a thread,
 * V = 64 (100K floats a batch) stays on the caller. */
#define CE_MIN_FLOATS 262144

static int ce_run(float *loss, size_t cnt, float *grad, const float *logits, const float *pre,
                  const int32_t *targets, size_t N, size_t V, int32_t ignore_index, float dloss,
                  int fused, dm_error *err)
{
    ce_job j = {.nll = malloc((N ? N : 1) * sizeof(double)), .grad = grad, .logits = logits,
                .pre = pre, .targets = targets, .V = V, .ignore_index = ignore_index,
                /* NaN marks "count nothing" (every target ignored) */
                .scale = cnt ? (double)dloss / (double)cnt : NAN, .fused = fused};
    atomic_init(&j.oom, 0);
    if (!j.nll) return dm_fail(err, "cross_entropy: out of memory (%zu rows)", N);
    dm_parallel_rows(N, V >= CE_MIN_FLOATS ? 1 : CE_MIN_FLOATS / V, ce_rows, &j);
    double total = 0.0;
    for (size_t n = 0; n < N; n++) total += j.nll[n];
    free(j.nll);
    if (atomic_load(&j.oom))
        return dm_fail(err, "cross_entropy: out of memory (%zu floats a row)", 2 * V);
    *loss = cnt ? (float)(total / (double)cnt) : NAN;
    return 0;
}

int dm_cross_entropy(float *loss, size_t *count, float *dlogits, const float *logits,
                     const int32_t *targets, size_t N, size_t V, int32_t ignore_index, float dloss,
                     dm_error *err)
{
    size_t cnt;
    if (count_targets(&cnt, targets, N, V, ignore_index, err) != 0) return -1;
    *count = cnt;
    if (cnt == 0) {
        *loss = NAN;
        return 0;
    }
    return ce_run(loss, cnt, dlogits, logits, NULL, targets, N, V, ignore_index, dloss, 0, err);
}

int dm_cross_entropy_pre(float *loss, size_t *count, float *dpre, const float *logits,
                         const float *pre, const int32_t *targets, size_t N, size_t V,
                         int32_t ignore_index, float dloss, dm_error *err)
{
    size_t cnt;
    if (count_targets(&cnt, targets, N, V, ignore_index, err) != 0) return -1;
    *count = cnt;
    /* All ignored: every row of dlogits is 0 (dm_cross_entropy leaves a
     * zeroed buffer as it is), dpre 0 * GELU'(pre). */
    return ce_run(loss, cnt, dpre, logits, pre, targets, N, V, ignore_index, dloss, 1, err);
}

/* ---- initialisers ---- */

void dm_init_uniform(float *x, size_t n, float bound, dm_rng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * dm_rng_uniform(rng) - 1.0f) * bound;
}

void dm_init_normal(float *x, size_t n, float std, dm_rng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = std * dm_rng_normal(rng);
}

void dm_init_fill(float *x, size_t n, float value)
{
    for (size_t i = 0; i < n; i++) x[i] = value;
}

float dm_init_kaiming_bound(size_t fan_in) { return fan_in ? sqrtf(6.0f / (float)fan_in) : 0.0f; }

float dm_init_default_bound(size_t fan_in) { return fan_in ? 1.0f / sqrtf((float)fan_in) : 0.0f; }
