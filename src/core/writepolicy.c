/* writepolicy.c: the `reinforce` write policy unit (writepolicy.h).
 *
 * A thin composition of episodic.c and policy.c: it sizes the buffers,
 * picks the write weights from the mode, and routes the gradients of the
 * detached policy and baseline straight into their parameter gradients.
 * Its working memory is the caller's (dm_writepolicy_work_numel floats),
 * so that a controller keeps it in its activation arena. */
#include "core/writepolicy.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core/nn.h"
#include "core/part.h"

const char *const dm_wp_names[DM_WP_NPARAMS] = {
    "episodic.query.weight", "episodic.key.weight", "episodic.value.weight",
    "episodic.gate.weight",  "episodic.gate.bias",  "policy.weight",
    "policy.bias",           "baseline.weight",     "baseline.bias",        "episodic.scale"};

int dm_wp_shape(size_t H, size_t Dk, int i, int64_t shape[2])
{
    switch (i) {
    case DM_WP_WQ:
    case DM_WP_WK: shape[0] = (int64_t)Dk; shape[1] = (int64_t)H; return 2;
    case DM_WP_WV: shape[0] = (int64_t)H; shape[1] = (int64_t)H; return 2;
    case DM_WP_WG:
    case DM_WP_WP:
    case DM_WP_WB: shape[0] = 1; shape[1] = (int64_t)H; return 2;
    default: shape[0] = 1; shape[1] = 0; return 1;
    }
}

void dm_wp_init_params(const dm_wp_tensors *p, size_t H, size_t Dk, float policy_bias, dm_rng *rng)
{
    dm_wp_init_params_sized(p, H, Dk * H, dm_init_default_bound(H), policy_bias, rng);
}

void dm_wp_init_params_sized(const dm_wp_tensors *p, size_t H, size_t qk_numel, float qk_bound,
                             float policy_bias, dm_rng *rng)
{
    float bound = dm_init_default_bound(H);
    dm_init_uniform(p->t[DM_WP_WQ], qk_numel, qk_bound, rng);
    dm_init_uniform(p->t[DM_WP_WK], qk_numel, qk_bound, rng);
    dm_init_uniform(p->t[DM_WP_WV], H * H, bound, rng);
    dm_init_fill(p->t[DM_WP_WG], H, 0.0f);
    dm_init_fill(p->t[DM_WP_BG], 1, 0.0f);
    dm_init_uniform(p->t[DM_WP_WP], H, bound, rng);
    dm_init_fill(p->t[DM_WP_BP], 1, policy_bias);
    dm_init_fill(p->t[DM_WP_WB], H, 0.0f);
    dm_init_fill(p->t[DM_WP_BB], 1, 0.0f);
}

void dm_wp_init_scale(const dm_wp_tensors *p, float scale_init)
{
    if (p->t[DM_WP_SCALE]) dm_init_fill(p->t[DM_WP_SCALE], 1, scale_init);
}

/* The episodic memory's dims for a (B,T) batch, with this unit's options. */
static dm_episodic_dims epi_dims(const dm_writepolicy *w, size_t B, size_t T)
{
    dm_episodic_dims d = {B, T, w->H, w->Dk, w->K, w->cosine, w->key_prev, w->address_token, w->V};
    return d;
}

int dm_writepolicy_init(dm_writepolicy *w, size_t H, size_t Dk, size_t K,
                        const dm_reinforce_config *rl, dm_error *err)
{
    memset(w, 0, sizeof *w);
    dm_episodic_dims d = {1, 1, H, Dk, K, 0, 0, 0, 0};
    if (dm_episodic_dims_check(&d, err) != 0) return -1;
    if (dm_reinforce_config_check(rl, err) != 0) return -1;
    w->H = H;
    w->Dk = Dk;
    w->K = K;
    w->rl = *rl;
    w->mode = DM_WRITE_HARD;
    w->gumbel_tau = 1.0f;
    return 0;
}

void dm_writepolicy_free(dm_writepolicy *w) { memset(w, 0, sizeof *w); }

/* The per-row buffers after the episodic ones: z, p, a, wr, v, dwr, dz,
 * rew, valid (n each), rscr (2n), g and noise (n each). */
enum { WP_ROW_BUFFERS = 13 };

size_t dm_writepolicy_work_numel(const dm_writepolicy *w, size_t B, size_t T)
{
    dm_episodic_dims d = epi_dims(w, B, T);
    return dm_episodic_cache_numel(&d) + dm_episodic_scratch_numel(&d) +
           dm_episodic_src_numel(&d) + WP_ROW_BUFFERS * B * T;
}

/* Points the buffers into work; src is int32, one float-sized cell each. */
static int bind_work(dm_writepolicy *w, float *work, size_t B, size_t T, dm_error *err)
{
    dm_episodic_dims d = epi_dims(w, B, T);
    if (dm_episodic_dims_check(&d, err) != 0) return -1;
    if (!work) return dm_fail(err, "writepolicy: no working memory");
    const size_t n = B * T;
    w->cache = work;
    w->scratch = w->cache + dm_episodic_cache_numel(&d);
    w->src = (int32_t *)(w->scratch + dm_episodic_scratch_numel(&d));
    w->z = (float *)w->src + dm_episodic_src_numel(&d);
    w->p = w->z + n;
    w->a = w->p + n;
    w->wr = w->a + n;
    w->v = w->wr + n;
    w->dwr = w->v + n;
    w->dz = w->dwr + n;
    w->rew = w->dz + n;
    w->valid = w->rew + n;
    w->rscr = w->valid + n; /* 2n */
    w->g = w->rscr + 2 * n;
    w->noise = w->g + n;
    return 0;
}

static dm_episodic_params epi_params(const dm_writepolicy *w, const dm_wp_tensors *p)
{
    dm_episodic_params e = {p->t[DM_WP_WQ], p->t[DM_WP_WK], p->t[DM_WP_WV], p->t[DM_WP_WG],
                            p->t[DM_WP_BG], p->t[DM_WP_SCALE], w->tokens};
    return e;
}

int dm_writepolicy_forward(dm_writepolicy *w, float *out, const float *h, const dm_wp_tensors *params,
                           size_t B, size_t T, int training, dm_rng *rng, float *work,
                           dm_error *err)
{
    w->has_forward = 0;
    if (bind_work(w, work, B, T, err) != 0) return -1;
    const size_t n = B * T, H = w->H;
    dm_policy_forward(w->z, w->p, h, params->t[DM_WP_WP], params->t[DM_WP_BP], n, H);
    dm_policy_forward(w->v, NULL, h, params->t[DM_WP_WB], params->t[DM_WP_BB], n, H);
    dm_rng *r = rng ? rng : &dm_rng_global;
    if (w->actions == 1) {
        for (size_t i = 0; i < n; i++) w->a[i] = 1.0f;
    } else if (w->actions == 2) {
        for (size_t i = 0; i < n; i++) w->a[i] = dm_rng_uniform(r) < w->random_rate ? 1.0f : 0.0f;
    } else if (w->actions == 3) {
        const size_t k = w->write_every ? w->write_every : 1;
        for (size_t i = 0; i < n; i++) {
            const size_t t = i % T;
            w->a[i] = t > 0 && t % k == 0 ? 1.0f : 0.0f;
        }
    } else if (w->actions == 4) {
        /* The noise is drawn (and kept for the backward) only when the
         * decision samples; eval thresholds the noiseless gate. */
        const int draw = training || w->sample_eval;
        for (size_t i = 0; draw && i < n; i++) w->noise[i] = dm_gumbel_noise(dm_rng_uniform(r));
        dm_gumbel_gate(w->g, w->a, w->z, draw ? w->noise : NULL, n, w->gumbel_tau);
    } else {
        dm_policy_act(w->a, w->p, NULL, n, training || w->sample_eval, r);
    }
    int soft = w->mode == DM_WRITE_SOFT && training && w->actions == 0;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        w->wr[i] = soft ? w->p[i] : w->a[i];
        s += w->wr[i];
    }
    dm_episodic_dims d = epi_dims(w, B, T);
    if (w->cosine && !params->t[DM_WP_SCALE])
        return dm_fail(err, "writepolicy: the cosine read has no sharpness parameter");
    if (w->address_token && !w->tokens)
        return dm_fail(err, "writepolicy: token addressing needs the batch's token ids");
    dm_episodic_params ep = epi_params(w, params);
    dm_episodic_forward(out, w->cache, w->src, h, w->wr, &ep, &d);
    w->slot_usage = dm_episodic_slot_usage(w->src, w->wr, &d);
    w->write_rate_all = s / (double)n;
    w->B = B;
    w->T = T;
    w->training_forward = training;
    w->has_forward = 1;
    return 0;
}

int dm_writepolicy_reinforce(dm_writepolicy *w, dm_reinforce_stats *stats, const float *logits,
                             const int32_t *targets, size_t V, int32_t ignore_index, const float *h,
                             const dm_wp_tensors *grads, dm_error *err)
{
    if (!w->has_forward)
        return dm_fail(err, "writepolicy.reinforce: no forward (call forward first)");
    const size_t B = w->B, T = w->T, n = B * T, H = w->H;
    if (dm_policy_token_rewards(w->rew, w->valid, logits, targets, n, V, ignore_index, err) != 0)
        return -1;
    if (w->reward_targets) {
        for (size_t i = 0; i < n; i++) {
            if (w->reward_targets[i] == ignore_index) {
                w->rew[i] = 0.0f;
            } else if (w->reward_targets[i] != targets[i]) {
                return dm_fail(err,
                               "writepolicy.reinforce: reward target %" PRId32 " at row %zu is "
                               "neither the target (%" PRId32 ") nor ignore_index",
                               w->reward_targets[i], i, targets[i]);
            }
        }
    }
    dm_reinforce_config rl = w->rl;
    /* Soft writes are trained through the read; the policy term would
     * score actions that were never taken. */
    if ((w->mode == DM_WRITE_SOFT && w->training_forward) || w->actions != 0) rl.alpha = 0.0f;
    if (w->actions != 0) rl.eta = 0.0f;
    memset(w->dz, 0, n * sizeof(float));
    memset(w->dwr, 0, n * sizeof(float)); /* baseline gradient buffer here */
    if (dm_reinforce_backward_reduced(&w->last, &w->rs, w->dz, w->dwr, w->z, w->a, w->rew,
                                      w->valid, w->v, B, T, &rl, w->rscr, &w->reduce, err) != 0)
        return -1;
    if (grads) {
        dm_policy_linear_backward(grads->t[DM_WP_WP], grads->t[DM_WP_BP], w->dz, h, n, H);
        dm_policy_linear_backward(grads->t[DM_WP_WB], grads->t[DM_WP_BB], w->dwr, h, n, H);
    }
    if (stats) *stats = w->last;
    return 0;
}

int dm_writepolicy_reinforce_empty(dm_writepolicy *w, dm_reinforce_stats *stats, dm_error *err)
{
    if (!w->reduce.fn)
        return dm_fail(err, "writepolicy.reinforce: an empty shard needs a reduce across processes");
    /* The same alpha and eta as the processes with rows use: the mode and
     * options are the same everywhere (soft or hard, actions). */
    dm_reinforce_config rl = w->rl;
    if (w->mode == DM_WRITE_SOFT || w->actions != 0) rl.alpha = 0.0f;
    if (w->actions != 0) rl.eta = 0.0f;
    if (dm_reinforce_backward_reduced(&w->last, &w->rs, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                      0, &rl, NULL, &w->reduce, err) != 0)
        return -1;
    if (stats) *stats = w->last;
    return 0;
}

int dm_writepolicy_backward(dm_writepolicy *w, float *dh, const float *dout, const float *h,
                            const dm_wp_tensors *params, const dm_wp_tensors *grads, dm_error *err)
{
    if (!w->has_forward)
        return dm_fail(err, "writepolicy.backward: no forward (call forward first)");
    const size_t B = w->B, T = w->T, n = B * T;
    dm_episodic_dims d = epi_dims(w, B, T);
    if (w->address_token && !w->tokens)
        return dm_fail(err, "writepolicy: token addressing needs the batch's token ids");
    dm_episodic_params ep = epi_params(w, params);
    dm_episodic_grads eg = {grads->t[DM_WP_WQ], grads->t[DM_WP_WK], grads->t[DM_WP_WV],
                            grads->t[DM_WP_WG], grads->t[DM_WP_BG], grads->t[DM_WP_SCALE]};
    if (w->cosine && !(ep.scale && eg.scale))
        return dm_fail(err, "writepolicy: the cosine read has no sharpness parameter");
    int soft = w->mode == DM_WRITE_SOFT && w->training_forward && w->actions == 0;
    /* The Gumbel gate's training forward wrote hard decisions; its
     * straight-through gradient needs dL/dwr at them. */
    int gumbel = w->actions == 4 && w->training_forward;
    if (soft || gumbel) memset(w->dwr, 0, n * sizeof(float));
    dm_episodic_backward(dh, soft || gumbel ? w->dwr : NULL, &eg, dout, w->cache, w->src, h, w->wr, &ep, &d,
                         w->scratch);
    if (soft) {
        /* wr = p = sigmoid(z): dz = dwr p (1-p); the state stays detached. */
        for (size_t i = 0; i < n; i++) w->dz[i] = w->dwr[i] * w->p[i] * (1.0f - w->p[i]);
        dm_policy_linear_backward(grads->t[DM_WP_WP], grads->t[DM_WP_BP], w->dz, h, n, w->H);
    } else if (gumbel) {
        memset(w->dz, 0, n * sizeof(float));
        dm_gumbel_gate_backward(w->dz, w->dwr, w->g, n, w->gumbel_tau);
        dm_policy_linear_backward(grads->t[DM_WP_WP], grads->t[DM_WP_BP], w->dz, h, n, w->H);
    }
    return 0;
}

/* ---- the reinforce policy as a part (part.h) ---------------------------- */

static dm_wp_tensors part_tensors(const dm_part *p, const dm_arena *a, int grads)
{
    dm_wp_tensors t;
    for (int i = 0; i < DM_WP_NPARAMS; i++)
        t.t[i] = i >= p->np ? NULL : grads ? dm_part_grad(p, a, i) : dm_part_param(p, a, i);
    return t;
}

static int wp_part_create(dm_part *p, dm_error *err)
{
    const dm_wp_part_cfg *pc = p->cfg.extra;
    if (!pc) return dm_fail(err, "write policy: no configuration");
    dm_writepolicy *w = dm_alloc(sizeof *w);
    if (!w) return dm_fail(err, "write policy: out of memory");
    if (dm_writepolicy_init(w, p->cfg.in, pc->Dk, p->cfg.slots, &pc->rl, err) != 0) {
        dm_free(w);
        return -1;
    }
    w->actions = pc->actions;
    w->random_rate = pc->random_rate;
    w->write_every = pc->write_every;
    w->gumbel_tau = pc->gumbel_tau;
    w->address_token = pc->address_token;
    w->V = pc->V;
    w->cosine = pc->cosine;
    w->key_prev = pc->key_prev;
    p->state = w;
    p->cfg.p = pc->policy_bias; /* the config need not outlive create */
    w->scale_init = pc->scale_init;
    p->cfg.extra = NULL;
    return 0;
}

static void wp_part_destroy(dm_part *p)
{
    if (p->state) dm_writepolicy_free(p->state);
    dm_free(p->state);
}

static int wp_part_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                         dm_error *err)
{
    const dm_writepolicy *w = p->state;
    /* The sharpness is last, and only with the cosine read. */
    const int np = w->cosine ? DM_WP_NPARAMS : DM_WP_SCALE;
    for (int i = 0; params && i < np; i++) {
        int64_t shape[2];
        int nd = dm_wp_shape(w->H, w->Dk, i, shape);
        if (w->address_token && (i == DM_WP_WQ || i == DM_WP_WK)) {
            shape[0] = (int64_t)w->V; /* a table row per token */
            shape[1] = (int64_t)w->Dk;
        }
        /* The detached policy and baseline learn from REINFORCE, not from
         * the loss: their gradients are clipped on their own. */
        unsigned own = i >= DM_WP_WP ? DM_ENTRY_OWN_CLIP : 0;
        if (dm_part_add(p, params, 1, dm_wp_names[i], nd, shape[0], shape[1], own, err) < 0) return -1;
    }
    if (acts) {
        dm_episodic_dims d = epi_dims(w, B, T);
        if (dm_episodic_dims_check(&d, err) != 0) return -1;
        if (dm_part_add(p, acts, 0, "write_policy.work", 1,
                        (int64_t)dm_writepolicy_work_numel(w, B, T), 0, 0, err) < 0)
            return -1;
    }
    return 0;
}

static void wp_part_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    const dm_writepolicy *w = p->state;
    dm_wp_tensors t = part_tensors(p, params, 0);
    if (w->address_token)
        dm_wp_init_params_sized(&t, w->H, w->V * w->Dk, 1.0f, (float)p->cfg.p, rng);
    else
        dm_wp_init_params(&t, w->H, w->Dk, (float)p->cfg.p, rng);
    dm_wp_init_scale(&t, w->scale_init);
}

static int wp_part_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                           dm_error *err)
{
    dm_wp_tensors t = part_tensors(p, r->params, 0);
    ((dm_writepolicy *)p->state)->tokens = r->tokens;
    return dm_writepolicy_forward(p->state, out, in, &t, r->B, r->T, r->training, r->rng,
                                  dm_part_act(p, r->acts, 0), err);
}

static int wp_part_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                            const float *in, const float *out, dm_error *err)
{
    dm_wp_tensors t = part_tensors(p, r->params, 0), g = part_tensors(p, r->grads, 1);
    ((dm_writepolicy *)p->state)->tokens = r->tokens;
    return dm_writepolicy_backward(p->state, din, dout, in, &t, &g, err);
}

static int wp_part_update(dm_part *p, const dm_part_run *r, const float *in, const float *logits,
                          size_t V, const int32_t *targets, int32_t ignore_index, void *stats,
                          dm_error *err)
{
    dm_wp_tensors g = part_tensors(p, r->grads, 1);
    return dm_writepolicy_reinforce(p->state, stats, logits, targets, V, ignore_index, in, &g, err);
}

const dm_part_ops dm_reinforce_part = {
    .kind = "reinforce", .role = DM_ROLE_POLICY, .sizes = wp_part_sizes, .init = wp_part_init,
    .forward = wp_part_forward, .backward = wp_part_backward, .update = wp_part_update,
    .create = wp_part_create, .destroy = wp_part_destroy};

/* ---- blend: the upstream model's policy, as a sibling of reinforce ------ */

/* No parameters, no activations, no per-step decision: the memory is only
 * written after each optimizer step (dm_controller_write_memory's blend),
 * which every policy keeps. */
static int blend_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                       dm_error *err)
{
    return 0;
}

const dm_part_ops dm_blend_part = {
    .kind = "blend", .role = DM_ROLE_POLICY, .alias = "seed", .sizes = blend_sizes};
