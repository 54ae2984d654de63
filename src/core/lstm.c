/* lstm.c: the multi-layer LSTM forward and backward through time (lstm.h)
 * and its part. Buffers are batch-first (B,T,.), so the rows of one
 * timestep are T rows apart and each per-step sgemm reads and writes them
 * in place with a leading dimension of T*width, as gru.c does. The gate
 * math runs in double-free float, in PyTorch's order of operations. */
#include "core/lstm.h"

#include "core/gemm.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn.h"
#include "core/part.h"

int dm_lstm_dims_check(const dm_lstm_dims *d, dm_error *err)
{
    if (dm_gru_dims_check(d, err) != 0) return -1;
    /* gru's check bounds 7H per row; the LSTM's leading dimensions reach T*4H
     * and its cache 6H per row, both within that bound. */
    return 0;
}

size_t dm_lstm_cache_numel(const dm_lstm_dims *d) { return d->L * d->B * d->T * 6 * d->H; }

size_t dm_lstm_scratch_numel(const dm_lstm_dims *d)
{
    const size_t bt = d->B * d->T;
    return bt * 4 * d->H + bt * d->H + 2 * d->B * d->H;
}

static float *cache_gates(const float *cache, const dm_lstm_dims *d, size_t l)
{
    return (float *)cache + l * d->B * d->T * 6 * d->H;
}
static float *cache_c(const float *cache, const dm_lstm_dims *d, size_t l)
{
    return cache_gates(cache, d, l) + d->B * d->T * 4 * d->H;
}
static float *cache_h(const float *cache, const dm_lstm_dims *d, size_t l)
{
    return cache_gates(cache, d, l) + d->B * d->T * 5 * d->H;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void dm_lstm_forward(float *out, float *cache, const float *in, const dm_lstm_params *p,
                     const dm_lstm_dims *d)
{
    dm_lstm_forward_opts(out, cache, in, p, d, NULL);
}

void dm_lstm_backward(float *din, const dm_lstm_grads *g, const float *dout, const float *cache,
                      const float *in, const dm_lstm_params *p, const dm_lstm_dims *d, float *scratch)
{
    dm_lstm_backward_opts(din, g, dout, cache, in, p, d, scratch, NULL);
}

void dm_lstm_forward_opts(float *out, float *cache, const float *in, const dm_lstm_params *p,
                          const dm_lstm_dims *d, const dm_rnn_opts *o)
{
    const size_t B = d->B, T = d->T, H = d->H, BT = B * T, G = 4 * H;
    for (size_t l = 0; l < d->L; l++) {
        const size_t In_l = l == 0 ? d->In : H;
        const float *below = l > 0 ? cache_h(cache, d, l - 1) : NULL;
        if (l > 0 && o && o->layer_mask) {
            float *xin = o->layer_in + (l - 1) * BT * H;
            const float *m = o->layer_mask + (l - 1) * BT * H;
            for (size_t i = 0; i < BT * H; i++) xin[i] = below[i] * m[i];
        }
        const float *x = dm_rnn_layer_input(in, below, d, l, o);
        const float *h0 = o && o->h0 ? o->h0 + l * B * H : NULL; /* (B,H) */
        const float *c0 = o && o->c0 ? o->c0 + l * B * H : NULL; /* (B,H) */
        float *gates = cache_gates(cache, d, l), *c = cache_c(cache, d, l), *h = cache_h(cache, d, l);
        /* Pre-activations of every step: b_ih + b_hh + W_ih x, then per step
         * + W_hh h_{t-1}; activated in place. */
        for (size_t r = 0; r < BT; r++)
            for (size_t k = 0; k < G; k++) gates[r * G + k] = p->b_ih[l][k] + p->b_hh[l][k];
        dm_sgemm('N', 'T', BT, G, In_l, 1.0f, x, In_l, p->w_ih[l], In_l, 1.0f, gates, G);
        for (size_t t = 0; t < T; t++) {
            const float *hp = t > 0 ? h + (t - 1) * H : h0;
            if (hp)
                dm_sgemm('N', 'T', B, G, H, 1.0f, hp, (t > 0 ? T * H : H), p->w_hh[l], H, 1.0f,
                         gates + t * G, (T * G));
            for (size_t b = 0; b < B; b++) {
                const size_t row = b * T + t;
                float *gi = gates + row * G, *gf = gi + H, *gg = gf + H, *go = gg + H;
                const float *cp = t > 0 ? c + (row - 1) * H : (c0 ? c0 + b * H : NULL);
                for (size_t k = 0; k < H; k++) {
                    gi[k] = sigmoidf(gi[k]);
                    gf[k] = sigmoidf(gf[k]);
                    gg[k] = tanhf(gg[k]);
                    go[k] = sigmoidf(go[k]);
                    const float cn = (cp ? gf[k] * cp[k] : 0.0f) + gi[k] * gg[k];
                    c[row * H + k] = cn;
                    h[row * H + k] = go[k] * tanhf(cn);
                }
            }
        }
    }
    memcpy(out, cache_h(cache, d, d->L - 1), BT * H * sizeof *out);
}

void dm_lstm_backward_opts(float *din, const dm_lstm_grads *g, const float *dout, const float *cache,
                           const float *in, const dm_lstm_params *p, const dm_lstm_dims *d,
                           float *scratch, const dm_rnn_opts *o)
{
    const size_t B = d->B, T = d->T, H = d->H, BT = B * T, G = 4 * H;
    float *dg = scratch, *dy_below = dg + BT * G, *dh = dy_below + BT * H, *dc = dh + B * H;
    for (size_t l = d->L; l-- > 0;) {
        const size_t In_l = l == 0 ? d->In : H;
        const float *x = dm_rnn_layer_input(in, l > 0 ? cache_h(cache, d, l - 1) : NULL, d, l, o);
        const float *h0 = o && o->h0 ? o->h0 + l * B * H : NULL; /* (B,H) */
        const float *c0 = o && o->c0 ? o->c0 + l * B * H : NULL; /* (B,H) */
        const float *gates = cache_gates(cache, d, l), *c = cache_c(cache, d, l),
                    *h = cache_h(cache, d, l);
        const float *dy = l == d->L - 1 ? dout : dy_below;
        memset(dh, 0, B * H * sizeof *dh);
        memset(dc, 0, B * H * sizeof *dc);
        for (size_t t = T; t-- > 0;) {
            for (size_t b = 0; b < B; b++) {
                const size_t row = b * T + t;
                const float *gi = gates + row * G, *gf = gi + H, *gg = gf + H, *go = gg + H;
                const float *cp = t > 0 ? c + (row - 1) * H : (c0 ? c0 + b * H : NULL);
                float *di = dg + row * G, *df = di + H, *dgg = df + H, *dor = dgg + H;
                for (size_t k = 0; k < H; k++) {
                    const float dht = dy[row * H + k] + dh[b * H + k];
                    const float tc = tanhf(c[row * H + k]);
                    const float dct = dht * go[k] * (1.0f - tc * tc) + dc[b * H + k];
                    dor[k] = dht * tc * go[k] * (1.0f - go[k]);
                    di[k] = dct * gg[k] * gi[k] * (1.0f - gi[k]);
                    dgg[k] = dct * gi[k] * (1.0f - gg[k] * gg[k]);
                    df[k] = cp ? dct * cp[k] * gf[k] * (1.0f - gf[k]) : 0.0f;
                    dc[b * H + k] = dct * gf[k];
                }
            }
            /* dh for step t-1: the step's gate gradients through W_hh. */
            if (t > 0)
                dm_sgemm('N', 'N', B, H, G, 1.0f, dg + t * G, (T * G), p->w_hh[l], H, 0.0f, dh, H);
        }
        for (size_t r = 0; r < BT; r++)
            for (size_t k = 0; k < G; k++) {
                g->b_ih[l][k] += dg[r * G + k];
                g->b_hh[l][k] += dg[r * G + k];
            }
        dm_sgemm('T', 'N', G, In_l, BT, 1.0f, dg, G, x, In_l, 1.0f, g->w_ih[l], In_l);
        if (l > 0) {
            dm_sgemm('N', 'N', BT, H, G, 1.0f, dg, G, p->w_ih[l], H, 0.0f, dy_below, H);
            if (o && o->layer_mask) {
                const float *m = o->layer_mask + (l - 1) * BT * H;
                for (size_t i = 0; i < BT * H; i++) dy_below[i] *= m[i];
            }
        } else if (din)
            dm_sgemm('N', 'N', BT, In_l, G, 1.0f, dg, G, p->w_ih[l], In_l, 1.0f, din, In_l);
        /* dW_hh pairs row i of dg with row i-1 of h; with the t = 0 rows of
         * dg zeroed (h0 is constant) the pairs that straddle two sequences
         * add nothing, so one sgemm over BT-1 rows covers every step. This
         * runs last: the zeroed rows were needed above. A given h0 pairs
         * with those rows first (it gets no gradient: a carried state is a
         * constant). */
        if (h0)
            dm_sgemm('T', 'N', G, H, B, 1.0f, dg, (T * G), h0, H, 1.0f, g->w_hh[l], H);
        for (size_t b = 0; b < B; b++) memset(dg + b * T * G, 0, G * sizeof *dg);
        if (BT > 1)
            dm_sgemm('T', 'N', G, H, (BT - 1), 1.0f, dg + G, G, h, H, 1.0f, g->w_hh[l], H);
    }
}

/* ---- the LSTM as a part: cfg.in = In, cfg.out = H, cfg.layers = L; with
 * dropout between layers (cfg.p, cfg.variational) and the run's h0 and c0
 * as gru.c's part has them (dm_rnn_part_opts) ------------------------------ */

enum { LSTM_TENSORS = 4 }; /* per layer: w_ih, w_hh, b_ih, b_hh */

static dm_lstm_dims part_dims(const dm_part *p, size_t B, size_t T)
{
    dm_lstm_dims d = {B, T, p->cfg.in, p->cfg.out, p->cfg.layers};
    return d;
}

static int lstm_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                      dm_error *err)
{
    dm_lstm_dims d = part_dims(p, acts ? B : 1, acts ? T : 1);
    if (dm_lstm_dims_check(&d, err) != 0) return -1;
    const int64_t G = 4 * (int64_t)d.H, H = (int64_t)d.H;
    static const char *const fmt[LSTM_TENSORS] = {"weight_ih_l%zu", "weight_hh_l%zu",
                     "bias_ih_l%zu", "bias_hh_l%zu"};
    for (size_t l = 0; params && l < d.L; l++) {
        const int64_t cols[LSTM_TENSORS] = {l == 0 ? (int64_t)d.In : H, H, 0, 0};
        for (int k = 0; k < LSTM_TENSORS; k++) {
            char what[32];
            snprintf(what, sizeof what, fmt[k], l);
            if (dm_part_add(p, params, 1, what, cols[k] ? 2 : 1, G, cols[k], 0, err) < 0) return -1;
        }
    }
    if (acts && (dm_part_add(p, acts, 0, "cache", 1, (int64_t)dm_lstm_cache_numel(&d), 0, 0, err) < 0 ||
                 dm_part_add(p, acts, 0, "scratch", 1, (int64_t)dm_lstm_scratch_numel(&d), 0, 0, err) < 0))
        return -1;
    if (!(p->cfg.p >= 0.0 && p->cfg.p < 1.0))
        return dm_fail(err, "%s: layer dropout must be in [0, 1), got %g", p->name, p->cfg.p);
    if (acts && dm_rnn_part_has_layer_dropout(p)) {
        /* layer_mask and layer_in, (L-1,B,T,H) each (gru.h's dm_rnn_part_opts) */
        const int64_t n = (int64_t)((d.L - 1) * B * T), H1 = (int64_t)d.H;
        if (dm_part_add(p, acts, 0, "layer_mask", 2, n, H1, 0, err) < 0 ||
            dm_part_add(p, acts, 0, "layer_in", 2, n, H1, 0, err) < 0)
            return -1;
    }
    return 0;
}

static void lstm_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    const float bound = dm_init_default_bound(p->cfg.out);
    for (int k = 0; k < p->np; k++)
        dm_init_uniform(dm_part_param(p, params, k), params->entries[p->p0 + k].numel, bound, rng);
}

static void lstm_tensors(const dm_part *p, const dm_arena *a, int grads, dm_lstm_params *lp,
                         dm_lstm_grads *lg)
{
    for (size_t l = 0; l < p->cfg.layers; l++)
        for (int k = 0; k < LSTM_TENSORS; k++) {
            const int i = (int)l * LSTM_TENSORS + k;
            float *t = grads ? dm_part_grad(p, a, i) : dm_part_param(p, a, i);
            float **slot = grads ? (k == 0 ? &lg->w_ih[l] : k == 1 ? &lg->w_hh[l] : k == 2 ? &lg->b_ih[l] : &lg->b_hh[l])
                                 : (float **)(k == 0 ? &lp->w_ih[l] : k == 1 ? &lp->w_hh[l] : k == 2 ? &lp->b_ih[l] : &lp->b_hh[l]);
            *slot = t;
        }
}

static int lstm_part_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                             dm_error *err)
{
    dm_lstm_dims d = part_dims(p, r->B, r->T);
    dm_lstm_params lp;
    memset(&lp, 0, sizeof lp);
    lstm_tensors(p, r->params, 0, &lp, NULL);
    dm_rnn_opts o;
    dm_lstm_forward_opts(out, dm_part_act(p, r->acts, 0), in, &lp, &d, dm_rnn_part_opts(p, r, 2, 1, &o));
    return 0;
}

static int lstm_part_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                              const float *in, const float *out, dm_error *err)
{
    dm_lstm_dims d = part_dims(p, r->B, r->T);
    dm_lstm_params lp;
    dm_lstm_grads lg;
    memset(&lp, 0, sizeof lp);
    memset(&lg, 0, sizeof lg);
    lstm_tensors(p, r->params, 0, &lp, NULL);
    lstm_tensors(p, r->grads, 1, NULL, &lg);
    if (!lg.w_ih[0]) return dm_fail(err, "%s: a frozen LSTM cannot be differentiated", p->name);
    dm_rnn_opts o;
    dm_lstm_backward_opts(din, &lg, dout, dm_part_act(p, r->acts, 0), in, &lp, &d,
                          dm_part_act(p, r->acts, 1), dm_rnn_part_opts(p, r, 2, 0, &o));
    return 0;
}

static void lstm_part_final(const dm_part *p, const dm_part_run *r, float *h_n, float *c_n)
{
    dm_lstm_dims d = part_dims(p, r->B, r->T);
    const float *cache = dm_part_act(p, r->acts, 0);
    for (size_t l = 0; l < d.L; l++) {
        const float *h = cache_h(cache, &d, l), *c = cache_c(cache, &d, l);
        for (size_t b = 0; b < d.B; b++) {
            const size_t last = (b * d.T + d.T - 1) * d.H;
            memcpy(h_n + (l * d.B + b) * d.H, h + last, d.H * sizeof *h_n);
            if (c_n) memcpy(c_n + (l * d.B + b) * d.H, c + last, d.H * sizeof *c_n);
        }
    }
}

const dm_part_ops dm_lstm_part = {
    .kind = "lstm", .role = DM_ROLE_CELL, .sizes = lstm_sizes, .init = lstm_init,
    .forward = lstm_part_forward, .backward = lstm_part_backward, .final_state = lstm_part_final};
