/* episodic.c: the per-sequence episodic memory (episodic.h).
 *
 * The three projections (query, key, value) of all B*T states are one sgemm
 * each, done before the sequential part; the time loop then only moves slot
 * bookkeeping (which step fills which slot) and does K small dot products
 * per read, so nothing is allocated or copied per step. The backward
 * replays the recorded slot sources row by row, gathering gradients for the
 * projections of all steps into (N,.) scratch buffers, and ends with one
 * dm_linear_backward per projection. Scores are recomputed in backward with
 * the same expression as in forward, so the replay is exact.
 *
 * The options change only the ends of that pipeline: key_prev shifts the
 * key rows one step down each sequence after the sgemm (and the key
 * gradient one step up before its backward), and cosine normalises the
 * query and key rows in place after it (and projects their gradients
 * through the normalisation before theirs), so the time loop is the same
 * code for every variant. */
#include "core/episodic.h"

#include <math.h>
#include <string.h>

#include "core/nn.h"

/* Cache layout, in floats from the start. */
typedef struct layout {
    size_t q, k, v, e, g, w, mx, z, lu, qn, kn, ws, total;
} layout;

static layout cache_layout(const dm_episodic_dims *d)
{
    const size_t N = d->B * d->T;
    layout L;
    L.q = 0;
    L.k = L.q + N * d->Dk;
    L.v = L.k + N * d->Dk;
    L.e = L.v + N * d->H;
    L.g = L.e + N * d->H;
    L.w = L.g + N;
    L.mx = L.w + N * d->K;
    L.z = L.mx + N;
    L.lu = L.z + N;     /* (K) last-use step of each slot, forward workspace */
    L.qn = L.lu + d->K; /* (N) query norms, cosine only */
    L.kn = L.qn + (d->cosine ? N : 0); /* (N) key norms, cosine only */
    L.ws = L.kn + (d->cosine ? N : 0); /* (N) int32 cells: the slot step i wrote, -1 none */
    L.total = L.ws + N;
    return L;
}

int dm_episodic_dims_check(const dm_episodic_dims *d, dm_error *err)
{
    struct { const char *name; size_t v; } f[] = {
        {"B", d->B}, {"T", d->T}, {"H", d->H}, {"Dk", d->Dk}, {"K", d->K}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v == 0) return dm_fail(err, "episodic: %s must be >= 1, got 0", f[i].name);
    if ((d->cosine != 0 && d->cosine != 1) || (d->key_prev != 0 && d->key_prev != 1) ||
        (d->address_token != 0 && d->address_token != 1))
        return dm_fail(err, "episodic: cosine, key_prev and address_token must be 0 or 1, got %d, %d and %d",
                       d->cosine, d->key_prev, d->address_token);
    if (d->address_token && (d->V == 0 || d->V > (size_t)INT32_MAX))
        return dm_fail(err, "episodic: address_token needs V in 1..%d, got %zu", INT32_MAX, d->V);
    /* Steps are stored in int32 src and exactly in float last-use times. */
    if (d->T > ((size_t)1 << 24))
        return dm_fail(err, "episodic: T must be <= %zu, got %zu", (size_t)1 << 24, d->T);
    if (d->K > (size_t)INT32_MAX)
        return dm_fail(err, "episodic: K must be <= %d, got %zu", INT32_MAX, d->K);
    int64_t dims[4] = {(int64_t)d->B, (int64_t)d->T, (int64_t)(d->H > d->Dk ? d->H : d->Dk),
                       (int64_t)(d->K + 4)};
    size_t n;
    if (d->B > (size_t)INT64_MAX || d->T > (size_t)INT64_MAX || d->H > (size_t)INT64_MAX ||
        d->Dk > (size_t)INT64_MAX || dm_size_mul(&n, dims, 4) != 0 || n > SIZE_MAX / 8)
        return dm_fail(err, "episodic: sizes B=%zu T=%zu H=%zu Dk=%zu K=%zu are too large", d->B,
                       d->T, d->H, d->Dk, d->K);
    if (d->B * d->T > (size_t)INT32_MAX)
        return dm_fail(err, "episodic: B*T = %zu rows exceed what BLAS takes", d->B * d->T);
    return 0;
}

size_t dm_episodic_cache_numel(const dm_episodic_dims *d) { return cache_layout(d).total; }
size_t dm_episodic_src_numel(const dm_episodic_dims *d) { return d->B * d->T * d->K; }
size_t dm_episodic_scratch_numel(const dm_episodic_dims *d)
{
    return d->B * d->T * (2 * d->Dk + d->H);
}

const float *dm_episodic_reads(const float *cache, const dm_episodic_dims *d)
{
    return cache + cache_layout(d).e;
}
const float *dm_episodic_gates(const float *cache, const dm_episodic_dims *d)
{
    return cache + cache_layout(d).g;
}
const float *dm_episodic_attention(const float *cache, const dm_episodic_dims *d)
{
    return cache + cache_layout(d).w;
}
const int32_t *dm_episodic_written_slots(const float *cache, const dm_episodic_dims *d)
{
    return (const int32_t *)(cache + cache_layout(d).ws);
}

static float dotf(const float *a, const float *b, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Keeps a zero row (the key before a sequence's first step) finite: its
 * unit vector is 0 and so is every score against it. */
#define NORM_EPS 1e-6f

/* Divides each of the n rows of x (n,w) by its norm sqrt(|x|^2 + eps^2),
 * recording the norm in nrm (n). */
static void rows_normalise(float *x, float *nrm, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++) {
        float *xi = x + i * w;
        float s = sqrtf(dotf(xi, xi, w) + NORM_EPS * NORM_EPS);
        nrm[i] = s;
        for (size_t c = 0; c < w; c++) xi[c] /= s;
    }
}

/* Backward of rows_normalise in place: with u = x / n (u given, n the
 * recorded norm), dx = (du - (du . u) u) / n. */
static void rows_normalise_backward(float *du, const float *u, const float *nrm, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++) {
        float *di = du + i * w;
        const float *ui = u + i * w;
        float a = dotf(di, ui, w);
        for (size_t c = 0; c < w; c++) di[c] = (di[c] - a * ui[c]) / nrm[i];
    }
}

/* key_prev: row t of each sequence takes row t-1's key, row 0 a zero key. */
static void rows_shift_down(float *x, size_t B, size_t T, size_t w)
{
    for (size_t b = 0; b < B; b++) {
        float *xb = x + b * T * w;
        if (T > 1) memmove(xb + w, xb, (T - 1) * w * sizeof *xb);
        memset(xb, 0, w * sizeof *xb);
    }
}

/* Its adjoint: the gradient of row t goes to row t-1; the last row's
 * projection fed no key, so it gets none. */
static void rows_shift_up(float *x, size_t B, size_t T, size_t w)
{
    for (size_t b = 0; b < B; b++) {
        float *xb = x + b * T * w;
        if (T > 1) memmove(xb, xb + w, (T - 1) * w * sizeof *xb);
        memset(xb + (T - 1) * w, 0, w * sizeof *xb);
    }
}

/* The score's multiplier: the learned sharpness of the cosine read, or
 * 1/sqrt(Dk) of the dot product. */
static float read_scale(const dm_episodic_params *p, const dm_episodic_dims *d)
{
    return d->cosine ? p->scale[0] : 1.0f / sqrtf((float)d->Dk);
}

/* The score of slot source row j for query row i; forward and backward
 * share it so that the backward's replay is bit-identical. */
static float score(const float *q, const float *keys, size_t i, size_t j, size_t Dk, float scale)
{
    return dotf(q + i * Dk, keys + j * Dk, Dk) * scale;
}

void dm_episodic_forward(float *out, float *cache, int32_t *src, const float *h, const float *wr,
                         const dm_episodic_params *p, const dm_episodic_dims *d)
{
    const size_t B = d->B, T = d->T, H = d->H, Dk = d->Dk, K = d->K, N = B * T;
    const layout L = cache_layout(d);
    float *q = cache + L.q, *keys = cache + L.k, *vals = cache + L.v, *e = cache + L.e,
          *g = cache + L.g, *w = cache + L.w, *mx = cache + L.mx, *z = cache + L.z,
          *lu = cache + L.lu;
    int32_t *ws = (int32_t *)(cache + L.ws);
    const float scale = read_scale(p, d);

    if (d->address_token) {
        for (size_t i = 0; i < N; i++) {
            const size_t v = (size_t)p->tokens[i];
            memcpy(q + i * Dk, p->w_q + v * Dk, Dk * sizeof *q);
            memcpy(keys + i * Dk, p->w_k + v * Dk, Dk * sizeof *keys);
        }
    } else {
        dm_linear_forward(q, h, p->w_q, NULL, N, H, Dk);
        dm_linear_forward(keys, h, p->w_k, NULL, N, H, Dk);
    }
    dm_linear_forward(vals, h, p->w_v, NULL, N, H, H);
    if (d->key_prev) rows_shift_down(keys, B, T, Dk);
    if (d->cosine) {
        rows_normalise(q, cache + L.qn, N, Dk);
        rows_normalise(keys, cache + L.kn, N, Dk);
    }
    for (size_t i = 0; i < N; i++) g[i] = sigmoidf(dotf(h + i * H, p->w_g, H) + p->b_g[0]);

    for (size_t b = 0; b < B; b++) {
        long pending = -1; /* slot written by the previous step */
        for (size_t t = 0; t < T; t++) {
            const size_t i = b * T + t;
            int32_t *cur = src + i * K;
            float *wi = w + i * K, *ei = e + i * H;
            if (t == 0) {
                for (size_t k = 0; k < K; k++) {
                    cur[k] = -1;
                    lu[k] = -1.0f;
                }
            } else {
                memcpy(cur, cur - K, K * sizeof *cur);
                if (pending >= 0) cur[pending] = (int32_t)(t - 1);
            }
            pending = -1;

            /* Read: masked softmax of m_k exp(score) over filled slots. */
            float m = -INFINITY;
            int any = 0;
            for (size_t k = 0; k < K; k++) {
                wi[k] = 0.0f;
                if (cur[k] < 0) continue;
                float s = score(q, keys, i, b * T + (size_t)cur[k], Dk, scale);
                if (!any || s > m || isnan(s)) m = isnan(m) ? m : s;
                any = 1;
            }
            float Z = 0.0f;
            if (any) {
                for (size_t k = 0; k < K; k++) {
                    if (cur[k] < 0) continue;
                    size_t j = b * T + (size_t)cur[k];
                    float u = wr[j] * expf(score(q, keys, i, j, Dk, scale) - m);
                    wi[k] = u;
                    Z += u;
                }
            }
            memset(ei, 0, H * sizeof *ei);
            if (any && Z > 0.0f) {
                long best = -1;
                for (size_t k = 0; k < K; k++) {
                    if (cur[k] < 0) continue;
                    wi[k] /= Z;
                    const float *vj = vals + (b * T + (size_t)cur[k]) * H;
                    for (size_t c = 0; c < H; c++) ei[c] += wi[k] * vj[c];
                    if (best < 0 || wi[k] > wi[best]) best = (long)k;
                }
                if (best >= 0) lu[best] = (float)t;
            } else {
                /* Nothing readable: e = 0 and no attention, Z = 0 marks it. */
                for (size_t k = 0; k < K; k++) wi[k] = 0.0f;
                Z = 0.0f;
            }
            mx[i] = m;
            z[i] = Z;
            for (size_t c = 0; c < H; c++) out[i * H + c] = h[i * H + c] + g[i] * ei[c];

            /* Write after the read: an empty slot first, else the LRU one.
             * The choice is recorded only for the write trace: the next
             * step's src says it too, except after a sequence's last step. */
            ws[i] = -1;
            if (wr[i] > 0.0f) {
                long slot = -1;
                for (size_t k = 0; k < K && slot < 0; k++)
                    if (cur[k] < 0) slot = (long)k;
                if (slot < 0) {
                    slot = 0;
                    for (size_t k = 1; k < K; k++)
                        if (lu[k] < lu[slot]) slot = (long)k;
                }
                lu[slot] = (float)t;
                pending = slot;
                ws[i] = (int32_t)slot;
            }
        }
    }
}

void dm_episodic_backward(float *dh, float *dwr, const dm_episodic_grads *gr, const float *dout,
                          const float *cache, const int32_t *src, const float *h, const float *wr,
                          const dm_episodic_params *p, const dm_episodic_dims *d, float *scratch)
{
    const size_t B = d->B, T = d->T, H = d->H, Dk = d->Dk, K = d->K, N = B * T;
    const layout L = cache_layout(d);
    const float *q = cache + L.q, *keys = cache + L.k, *vals = cache + L.v, *e = cache + L.e,
                *g = cache + L.g, *w = cache + L.w, *mx = cache + L.mx, *z = cache + L.z;
    const float scale = read_scale(p, d);
    float *dq = scratch, *dk = dq + N * Dk, *dv = dk + N * Dk;
    double dscale = 0.0; /* cosine: d loss / d scale = sum of ds * cos */
    memset(scratch, 0, dm_episodic_scratch_numel(d) * sizeof *scratch);

    for (size_t i = 0; i < N; i++) {
        const size_t b = i / T;
        const float *doi = dout + i * H, *hi = h + i * H, *ei = e + i * H, *wi = w + i * K;
        const int32_t *cur = src + i * K;
        if (dh)
            for (size_t c = 0; c < H; c++) dh[i * H + c] += doi[c];
        /* Gate. */
        float dg = dotf(doi, ei, H);
        float dzg = dg * g[i] * (1.0f - g[i]);
        for (size_t c = 0; c < H; c++) gr->w_g[c] += dzg * hi[c];
        gr->b_g[0] += dzg;
        if (dh)
            for (size_t c = 0; c < H; c++) dh[i * H + c] += dzg * p->w_g[c];
        if (!(z[i] > 0.0f)) continue;
        /* Read: de = g dout; dW_k = de . v_k; softmax with write weights. */
        const float gi = g[i];
        float sum = 0.0f;
        for (size_t k = 0; k < K; k++) {
            if (cur[k] < 0) continue;
            const size_t j = b * T + (size_t)cur[k];
            float dwk = gi * dotf(doi, vals + j * H, H);
            sum += wi[k] * dwk;
            float *dvj = dv + j * H;
            for (size_t c = 0; c < H; c++) dvj[c] += wi[k] * gi * doi[c];
        }
        for (size_t k = 0; k < K; k++) {
            if (cur[k] < 0) continue;
            const size_t j = b * T + (size_t)cur[k];
            float dwk = gi * dotf(doi, vals + j * H, H);
            float ds = wi[k] * (dwk - sum);
            if (dwr) {
                /* w_k = m_k u_k / Z: dL/dm_k = (dw_k - sum) u_k / Z. */
                float u = expf(score(q, keys, i, j, Dk, scale) - mx[i]);
                dwr[j] += (dwk - sum) * u / z[i];
            }
            const float *kj = keys + j * Dk, *qi = q + i * Dk;
            float *dqi = dq + i * Dk, *dkj = dk + j * Dk;
            if (d->cosine) dscale += (double)ds * dotf(qi, kj, Dk);
            for (size_t c = 0; c < Dk; c++) {
                dqi[c] += ds * scale * kj[c];
                dkj[c] += ds * scale * qi[c];
            }
        }
    }
    (void)wr;
    if (d->cosine) {
        gr->scale[0] += (float)dscale;
        rows_normalise_backward(dq, q, cache + L.qn, N, Dk);
        rows_normalise_backward(dk, keys, cache + L.kn, N, Dk);
    }
    if (d->key_prev) rows_shift_up(dk, B, T, Dk);
    if (d->address_token) {
        /* Each row's gradient goes to its token's table row. */
        for (size_t i = 0; i < N; i++) {
            const size_t v = (size_t)p->tokens[i];
            for (size_t c = 0; c < Dk; c++) {
                gr->w_q[v * Dk + c] += dq[i * Dk + c];
                gr->w_k[v * Dk + c] += dk[i * Dk + c];
            }
        }
    } else {
        dm_linear_backward(dh, gr->w_q, NULL, dq, h, p->w_q, N, H, Dk);
        dm_linear_backward(dh, gr->w_k, NULL, dk, h, p->w_k, N, H, Dk);
    }
    dm_linear_backward(dh, gr->w_v, NULL, dv, h, p->w_v, N, H, H);
}

double dm_episodic_slot_usage(const int32_t *src, const float *wr, const dm_episodic_dims *d)
{
    const size_t B = d->B, T = d->T, K = d->K;
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const size_t i = b * T + T - 1;
        const int32_t *cur = src + i * K;
        size_t filled = 0;
        for (size_t k = 0; k < K; k++) filled += cur[k] >= 0;
        if (wr[i] > 0.0f && filled < K) filled++;
        total += (double)filled / (double)K;
    }
    return total / (double)B;
}
