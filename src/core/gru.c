/* gru.c: multi-layer GRU forward and backward through time (contract in
 * gru.h). Buffers are batch-first (B,T,.), so the rows of one timestep are
 * T rows apart: each per-step sgemm reads and writes them in place with a
 * leading dimension of T*width instead of gathering them into a copy. The
 * elementwise gate math of a row is vmath.c's, where sigmoid and tanh
 * vectorise. (A (T,B,H) layout with contiguous per-step rows, and the
 * transposed product W_hh h^T, measured no faster with OpenBLAS here.)
 * The per-step products with W_hh are not sgemm calls: OpenBLAS repacks the
 * whole W_hh on each of them and its kernel for this CPU is slow at M = B,
 * so each layer packs W_hh once for vmath.c's small-M kernel: backward into
 * its scratch; forward (the cache's size is a contract callers rely on)
 * into space not yet written, the next layer's cache region or, for the
 * last layer, `out` (free until the final copy). Where the packed W_hh does
 * not fit (B*T below about 3H/7, or 3H for the last layer), forward keeps
 * the per-step sgemm. The _opts variants add a given initial state (its
 * product with W_hh at step 0, and that pair in dW_hh) and a dropout mask
 * on the input of every layer above the first, shared with the LSTM. */
#include "core/gru.h"

#include "core/gemm.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn.h"
#include "core/part.h"
#include "core/vmath.h"

int dm_gru_dims_check(const dm_gru_dims *d, dm_error *err)
{
    if (d->B == 0 || d->T == 0 || d->In == 0 || d->H == 0)
        return dm_fail(err, "gru: sizes must be positive (B=%zu T=%zu In=%zu H=%zu)", d->B, d->T,
                       d->In, d->H);
    if (d->L < 1 || d->L > DM_GRU_MAX_LAYERS)
        return dm_fail(err, "gru: num_layers must be in 1..%d, got %zu", DM_GRU_MAX_LAYERS, d->L);
    /* BLAS takes int dimensions and leading dimensions (up to T*3H), and
     * the cache is L*B*T*7H floats: refuse anything that overflows either. */
    const size_t lim = INT32_MAX;
    if (d->B > lim / d->T || d->In > lim / d->T || d->H > lim / (7 * d->T) ||
        d->B * d->T > lim / (7 * d->H) || d->L * d->B * d->T * 7 * d->H > ((size_t)1 << 40) ||
        3 * d->H * d->H > ((size_t)1 << 40))
        return dm_fail(err, "gru: sizes too large (B=%zu T=%zu In=%zu H=%zu L=%zu)", d->B, d->T,
                       d->In, d->H, d->L);
    return 0;
}

size_t dm_gru_w_ih_numel(const dm_gru_dims *d, size_t l) { return 3 * d->H * (l == 0 ? d->In : d->H); }

size_t dm_gru_cache_numel(const dm_gru_dims *d) { return d->L * d->B * d->T * 7 * d->H; }

size_t dm_gru_scratch_numel(const dm_gru_dims *d)
{
    size_t bt = d->B * d->T;
    return 2 * bt * 3 * d->H + bt * d->H + d->B * d->H + dm_vgemm_packed_numel(3 * d->H, d->H);
}

/* Layer l's three cache regions. */
static float *cache_gates(const float *cache, const dm_gru_dims *d, size_t l)
{
    return (float *)cache + l * d->B * d->T * 7 * d->H;
}
static float *cache_hg(const float *cache, const dm_gru_dims *d, size_t l)
{
    return cache_gates(cache, d, l) + d->B * d->T * 3 * d->H;
}
static float *cache_h(const float *cache, const dm_gru_dims *d, size_t l)
{
    return cache_gates(cache, d, l) + d->B * d->T * 6 * d->H;
}

const float *dm_gru_layer_output(const float *cache, const dm_gru_dims *d, size_t l)
{
    return cache_h(cache, d, l);
}

void dm_gru_final_hidden(float *h_n, const float *cache, const dm_gru_dims *d)
{
    for (size_t l = 0; l < d->L; l++) {
        const float *h = cache_h(cache, d, l);
        for (size_t b = 0; b < d->B; b++)
            memcpy(h_n + (l * d->B + b) * d->H, h + (b * d->T + d->T - 1) * d->H,
                   d->H * sizeof *h_n);
    }
}

const float *dm_rnn_layer_input(const float *in, const float *below, const dm_gru_dims *d, size_t l,
                                const dm_rnn_opts *o)
{
    if (l == 0) return in;
    if (o && o->layer_mask) return o->layer_in + (l - 1) * d->B * d->T * d->H;
    return below;
}

/* Layer l's input for the forward: the masked copy of the layer below's
 * outputs when there is a mask (written here), else those outputs. */
static const float *layer_input_fwd(const float *in, const float *below, const dm_gru_dims *d,
                                    size_t l, const dm_rnn_opts *o)
{
    if (l > 0 && o && o->layer_mask) {
        const size_t n = d->B * d->T * d->H, off = (l - 1) * n;
        for (size_t i = 0; i < n; i++) o->layer_in[off + i] = below[i] * o->layer_mask[off + i];
    }
    return dm_rnn_layer_input(in, below, d, l, o);
}

void dm_gru_forward(float *out, float *cache, const float *in, const dm_gru_params *p,
                    const dm_gru_dims *d)
{
    dm_gru_forward_opts(out, cache, in, p, d, NULL);
}

void dm_gru_backward(float *din, const dm_gru_grads *g, const float *dout, const float *cache,
                     const float *in, const dm_gru_params *p, const dm_gru_dims *d, float *scratch)
{
    dm_gru_backward_opts(din, g, dout, cache, in, p, d, scratch, NULL);
}

void dm_gru_forward_opts(float *out, float *cache, const float *in, const dm_gru_params *p,
                         const dm_gru_dims *d, const dm_rnn_opts *o)
{
    const size_t B = d->B, T = d->T, H = d->H, BT = B * T, G = 3 * H;
    const float *h0all = o ? o->h0 : NULL;
    for (size_t l = 0; l < d->L; l++) {
        const size_t In_l = l == 0 ? d->In : H;
        const float *x = layer_input_fwd(in, l > 0 ? cache_h(cache, d, l - 1) : NULL, d, l, o);
        const float *h0 = h0all ? h0all + l * B * H : NULL; /* (B,H) */
        float *gates = cache_gates(cache, d, l), *hg = cache_hg(cache, d, l),
              *h = cache_h(cache, d, l);
        /* Input projections of every timestep at once; gates holds them until
         * each step overwrites its rows with the activated r, z, n. */
        for (size_t r = 0; r < BT; r++) memcpy(gates + r * G, p->b_ih[l], G * sizeof *gates);
        dm_sgemm('N', 'T', BT, G, In_l, 1.0f, x, In_l, p->w_ih[l], In_l, 1.0f, gates, G);
        /* packed W_hh^T (H,3H), or NULL to use sgemm */
        const size_t pk = dm_vgemm_packed_numel(H, G);
        float *wpk = l + 1 < d->L ? (pk <= BT * 7 * H ? cache_gates(cache, d, l + 1) : NULL)
                                  : (pk <= BT * H ? out : NULL);
        if (wpk) dm_vgemm_pack(wpk, p->w_hh[l], H, 1, H, G);
        for (size_t t = 0; t < T; t++) {
            for (size_t b = 0; b < B; b++)
                memcpy(hg + (b * T + t) * G, p->b_hh[l], G * sizeof *hg);
            /* With h0 = 0, step 0's hidden projection is the bias alone. */
            const float *hp = t > 0 ? h + (t - 1) * H : h0;
            const size_t ldp = t > 0 ? T * H : H;
            if (hp && wpk)
                dm_vgemm_packed(hg + t * G, T * G, hp, ldp, wpk, B, G, H);
            else if (hp)
                dm_sgemm('N', 'T', B, G, H, 1.0f, hp, ldp, p->w_hh[l], H, 1.0f, hg + t * G, (T * G));
            for (size_t b = 0; b < B; b++) {
                size_t row = b * T + t;
                dm_vgru_gates(gates + row * G, hg + row * G,
                              t > 0 ? h + (row - 1) * H : (h0 ? h0 + b * H : NULL), h + row * H, H);
            }
        }
    }
    memcpy(out, cache_h(cache, d, d->L - 1), BT * H * sizeof *out);
}

void dm_gru_backward_opts(float *din, const dm_gru_grads *g, const float *dout, const float *cache,
                          const float *in, const dm_gru_params *p, const dm_gru_dims *d,
                          float *scratch, const dm_rnn_opts *o)
{
    const size_t B = d->B, T = d->T, H = d->H, BT = B * T, G = 3 * H;
    const float *h0all = o ? o->h0 : NULL;
    /* dxg: gradient of the input projection pre-activations; dhg: of the
     * hidden projections (they differ only in the n rows, scaled by r). */
    float *dxg = scratch, *dhg = dxg + BT * G, *dy_below = dhg + BT * G, *dh = dy_below + BT * H;
    float *wpk = dh + B * H; /* W_hh (3H,H) packed for dh += dhg W_hh */
    for (size_t l = d->L; l-- > 0;) {
        const size_t In_l = l == 0 ? d->In : H;
        const float *x = dm_rnn_layer_input(in, l > 0 ? cache_h(cache, d, l - 1) : NULL, d, l, o);
        const float *h0 = h0all ? h0all + l * B * H : NULL; /* (B,H) */
        const float *gates = cache_gates(cache, d, l), *hg = cache_hg(cache, d, l),
                    *h = cache_h(cache, d, l);
        /* The layer above left this layer's output gradient in dy_below. */
        const float *dy = l == d->L - 1 ? dout : dy_below;
        memset(dh, 0, B * H * sizeof *dh);
        dm_vgemm_pack(wpk, p->w_hh[l], H, 0, G, H);
        for (size_t t = T; t-- > 0;) {
            for (size_t b = 0; b < B; b++) {
                size_t row = b * T + t;
                dm_vgru_gates_backward(dxg + row * G, dhg + row * G, dh + b * H, gates + row * G,
                                       hg + row * G, dy + row * H,
                                       t > 0 ? h + (row - 1) * H : (h0 ? h0 + b * H : NULL), H);
            }
            if (t > 0)
                dm_vgemm_packed(dh, H, dhg + t * G, T * G, wpk, B, H, G);
        }
        for (size_t r = 0; r < BT; r++)
            for (size_t k = 0; k < G; k++) {
                g->b_ih[l][k] += dxg[r * G + k];
                g->b_hh[l][k] += dhg[r * G + k];
            }
        dm_sgemm('T', 'N', G, In_l, BT, 1.0f, dxg, G, x, In_l, 1.0f, g->w_ih[l], In_l);
        /* A given h0 pairs with the t = 0 rows of dhg (its own gradient is
         * not wanted: a carried state is a constant). */
        if (h0)
            dm_sgemm('T', 'N', G, H, B, 1.0f, dhg, (T * G), h0, H, 1.0f, g->w_hh[l], H);
        /* dW_hh pairs row i of dhg with row i-1 of h. With the t = 0 rows of
         * dhg zeroed (h0's pairs are added above), the pairs that straddle two sequences
         * add nothing, so one sgemm over BT-1 rows covers every step. */
        for (size_t b = 0; b < B; b++) memset(dhg + b * T * G, 0, G * sizeof *dhg);
        if (BT > 1)
            dm_sgemm('T', 'N', G, H, (BT - 1), 1.0f, dhg + G, G, h, H, 1.0f, g->w_hh[l], H);
        if (l > 0) {
            dm_sgemm('N', 'N', BT, H, G, 1.0f, dxg, G, p->w_ih[l], H, 0.0f, dy_below, H);
            if (o && o->layer_mask) {
                const float *m = o->layer_mask + (l - 1) * BT * H;
                for (size_t i = 0; i < BT * H; i++) dy_below[i] *= m[i];
            }
        } else if (din)
            dm_sgemm('N', 'N', BT, In_l, G, 1.0f, dxg, G, p->w_ih[l], In_l, 1.0f, din, In_l);
    }
}

/* ---- the GRU as a part (part.h): cfg.in = In, cfg.out = H, cfg.layers = L;
 * entries weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> per
 * layer (PyTorch's names and order), activations "cache" and "scratch",
 * and with dropout between layers (cfg.p > 0, cfg.variational for one mask
 * per sequence) "layer_mask" and "layer_in". The run's h0 is the initial
 * state. */

enum { GRU_TENSORS = 4 }; /* per layer: w_ih, w_hh, b_ih, b_hh */

static dm_gru_dims part_dims(const dm_part *p, size_t B, size_t T)
{
    dm_gru_dims d = {B, T, p->cfg.in, p->cfg.out, p->cfg.layers};
    return d;
}

int dm_rnn_part_has_layer_dropout(const dm_part *p) { return p->cfg.p > 0.0 && p->cfg.layers > 1; }

const dm_rnn_opts *dm_rnn_part_opts(const dm_part *p, const dm_part_run *r, int k, int draw,
                                    dm_rnn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->h0 = r->h0;
    o->c0 = r->c0;
    if (r->training && dm_rnn_part_has_layer_dropout(p)) {
        float *mask = dm_part_act(p, r->acts, k);
        if (draw)
            dm_dropout_mask(mask, (p->cfg.layers - 1) * r->B, r->T, p->cfg.out, (float)p->cfg.p,
                            p->cfg.variational, r->rng);
        o->layer_mask = mask;
        o->layer_in = dm_part_act(p, r->acts, k + 1);
    }
    return o->h0 || o->c0 || o->layer_mask ? o : NULL;
}

/* Activations "layer_mask" and "layer_in", (L-1,B,T,H) each, of a cell
 * with dropout between its layers. */
static int layer_dropout_sizes(dm_part *p, size_t B, size_t T, dm_arena *acts, dm_error *err)
{
    if (!(p->cfg.p >= 0.0 && p->cfg.p < 1.0))
        return dm_fail(err, "%s: layer dropout must be in [0, 1), got %g", p->name, p->cfg.p);
    if (!acts || !dm_rnn_part_has_layer_dropout(p)) return 0;
    const int64_t n = (int64_t)((p->cfg.layers - 1) * B * T), H = (int64_t)p->cfg.out;
    return dm_part_add(p, acts, 0, "layer_mask", 2, n, H, 0, err) < 0 ||
                   dm_part_add(p, acts, 0, "layer_in", 2, n, H, 0, err) < 0
               ? -1
               : 0;
}

static int gru_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                     dm_error *err)
{
    dm_gru_dims d = part_dims(p, acts ? B : 1, acts ? T : 1);
    if (dm_gru_dims_check(&d, err) != 0) return -1;
    const int64_t G = 3 * (int64_t)d.H, H = (int64_t)d.H;
    static const char *const fmt[GRU_TENSORS] = {"weight_ih_l%zu", "weight_hh_l%zu",
                     "bias_ih_l%zu", "bias_hh_l%zu"};
    for (size_t l = 0; params && l < d.L; l++) {
        const int64_t in = l == 0 ? (int64_t)d.In : H;
        const int64_t cols[GRU_TENSORS] = {in, H, 0, 0};
        for (int k = 0; k < GRU_TENSORS; k++) {
            char what[32];
            snprintf(what, sizeof what, fmt[k], l);
            if (dm_part_add(p, params, 1, what, cols[k] ? 2 : 1, G, cols[k], 0, err) < 0) return -1;
        }
    }
    if (acts && (dm_part_add(p, acts, 0, "cache", 1, (int64_t)dm_gru_cache_numel(&d), 0, 0, err) < 0 ||
                 dm_part_add(p, acts, 0, "scratch", 1, (int64_t)dm_gru_scratch_numel(&d), 0, 0, err) < 0))
        return -1;
    return layer_dropout_sizes(p, B, T, acts, err);
}

static void gru_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    const float bound = dm_init_default_bound(p->cfg.out);
    for (int k = 0; k < p->np; k++) {
        const dm_arena_entry *e = &params->entries[p->p0 + k];
        dm_init_uniform(dm_part_param(p, params, k), e->numel, bound, rng);
    }
}

static void gru_tensors(const dm_part *p, const dm_arena *params, dm_gru_params *gp)
{
    memset(gp, 0, sizeof *gp);
    for (size_t l = 0; l < p->cfg.layers; l++) {
        int k = (int)l * GRU_TENSORS;
        gp->w_ih[l] = dm_part_param(p, params, k);
        gp->w_hh[l] = dm_part_param(p, params, k + 1);
        gp->b_ih[l] = dm_part_param(p, params, k + 2);
        gp->b_hh[l] = dm_part_param(p, params, k + 3);
    }
}

static int gru_part_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                            dm_error *err)
{
    dm_gru_dims d = part_dims(p, r->B, r->T);
    dm_gru_params gp;
    gru_tensors(p, r->params, &gp);
    dm_rnn_opts o;
    dm_gru_forward_opts(out, dm_part_act(p, r->acts, 0), in, &gp, &d, dm_rnn_part_opts(p, r, 2, 1, &o));
    return 0;
}

static int gru_part_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                             const float *in, const float *out, dm_error *err)
{
    dm_gru_dims d = part_dims(p, r->B, r->T);
    dm_gru_params gp;
    gru_tensors(p, r->params, &gp);
    dm_gru_grads gg;
    memset(&gg, 0, sizeof gg);
    for (size_t l = 0; l < d.L; l++) {
        int k = (int)l * GRU_TENSORS;
        gg.w_ih[l] = dm_part_grad(p, r->grads, k);
        gg.w_hh[l] = dm_part_grad(p, r->grads, k + 1);
        gg.b_ih[l] = dm_part_grad(p, r->grads, k + 2);
        gg.b_hh[l] = dm_part_grad(p, r->grads, k + 3);
        if (!gg.w_ih[l]) return dm_fail(err, "%s: a frozen GRU cannot be differentiated", p->name);
    }
    dm_rnn_opts o;
    dm_gru_backward_opts(din, &gg, dout, dm_part_act(p, r->acts, 0), in, &gp, &d,
                         dm_part_act(p, r->acts, 1), dm_rnn_part_opts(p, r, 2, 0, &o));
    return 0;
}

static void gru_part_final(const dm_part *p, const dm_part_run *r, float *h_n, float *c_n)
{
    (void)c_n;
    dm_gru_dims d = part_dims(p, r->B, r->T);
    dm_gru_final_hidden(h_n, dm_part_act(p, r->acts, 0), &d);
}

const dm_part_ops dm_gru_part = {
    .kind = "gru", .role = DM_ROLE_CELL, .sizes = gru_sizes, .init = gru_init,
    .forward = gru_part_forward, .backward = gru_part_backward, .final_state = gru_part_final};
