/* writepolicy.c: the `reinforce` write policy unit (writepolicy.h).
 *
 * A thin composition of episodic.c and policy.c: it sizes the buffers,
 * picks the write weights from the mode, and routes the gradients of the
 * detached policy and baseline straight into their parameter gradients.
 * Buffers grow to the largest B*T seen and are reused. */
#include "core/writepolicy.h"

#include <math.h>
#include <string.h>

#include "core/nn.h"

const char *const dm_wp_names[DM_WP_NPARAMS] = {
    "episodic.query.weight", "episodic.key.weight", "episodic.value.weight",
    "episodic.gate.weight",  "episodic.gate.bias",  "policy.weight",
    "policy.bias",           "baseline.weight",     "baseline.bias"};

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
    float bound = dm_init_default_bound(H);
    dm_init_uniform(p->t[DM_WP_WQ], Dk * H, bound, rng);
    dm_init_uniform(p->t[DM_WP_WK], Dk * H, bound, rng);
    dm_init_uniform(p->t[DM_WP_WV], H * H, bound, rng);
    dm_init_fill(p->t[DM_WP_WG], H, 0.0f);
    dm_init_fill(p->t[DM_WP_BG], 1, 0.0f);
    dm_init_uniform(p->t[DM_WP_WP], H, bound, rng);
    dm_init_fill(p->t[DM_WP_BP], 1, policy_bias);
    dm_init_fill(p->t[DM_WP_WB], H, 0.0f);
    dm_init_fill(p->t[DM_WP_BB], 1, 0.0f);
}

static void free_buffers(dm_writepolicy *w)
{
    dm_free(w->cache);
    dm_free(w->scratch);
    dm_free(w->src);
    dm_free(w->z);
    w->cache = w->scratch = w->z = NULL;
    w->src = NULL;
    w->p = w->a = w->wr = w->v = w->dwr = w->dz = w->rew = w->valid = w->rscr = NULL;
    w->cap_n = 0;
    w->has_forward = 0;
}

int dm_writepolicy_init(dm_writepolicy *w, size_t H, size_t Dk, size_t K,
                        const dm_reinforce_config *rl, dm_error *err)
{
    memset(w, 0, sizeof *w);
    dm_episodic_dims d = {1, 1, H, Dk, K};
    if (dm_episodic_dims_check(&d, err) != 0) return -1;
    if (dm_reinforce_config_check(rl, err) != 0) return -1;
    w->H = H;
    w->Dk = Dk;
    w->K = K;
    w->rl = *rl;
    w->mode = DM_WRITE_HARD;
    return 0;
}

void dm_writepolicy_free(dm_writepolicy *w) { free_buffers(w); }

static int ensure(dm_writepolicy *w, size_t B, size_t T, dm_error *err)
{
    dm_episodic_dims d = {B, T, w->H, w->Dk, w->K};
    if (dm_episodic_dims_check(&d, err) != 0) return -1;
    const size_t n = B * T;
    /* Every buffer's size depends on (B,T) only through N = B*T. */
    if (w->cache && n <= w->cap_n) return 0;
    free_buffers(w);
    w->cache = dm_alloc(dm_episodic_cache_numel(&d) * sizeof(float));
    w->scratch = dm_alloc(dm_episodic_scratch_numel(&d) * sizeof(float));
    w->src = dm_alloc(dm_episodic_src_numel(&d) * sizeof(int32_t));
    w->z = dm_alloc(11 * n * sizeof(float));
    if (!w->cache || !w->scratch || !w->src || !w->z) {
        free_buffers(w);
        return dm_fail(err, "writepolicy: out of memory for a %zu x %zu batch", B, T);
    }
    w->p = w->z + n;
    w->a = w->p + n;
    w->wr = w->a + n;
    w->v = w->wr + n;
    w->dwr = w->v + n;
    w->dz = w->dwr + n;
    w->rew = w->dz + n;
    w->valid = w->rew + n;
    w->rscr = w->valid + n; /* 2n */
    w->cap_n = n;
    return 0;
}

static dm_episodic_params epi_params(const dm_wp_tensors *p)
{
    dm_episodic_params e = {p->t[DM_WP_WQ], p->t[DM_WP_WK], p->t[DM_WP_WV], p->t[DM_WP_WG],
                            p->t[DM_WP_BG]};
    return e;
}

int dm_writepolicy_forward(dm_writepolicy *w, float *out, const float *h, const dm_wp_tensors *params,
                           size_t B, size_t T, int training, dm_rng *rng, dm_error *err)
{
    w->has_forward = 0;
    if (ensure(w, B, T, err) != 0) return -1;
    const size_t n = B * T, H = w->H;
    dm_policy_forward(w->z, w->p, h, params->t[DM_WP_WP], params->t[DM_WP_BP], n, H);
    dm_policy_forward(w->v, NULL, h, params->t[DM_WP_WB], params->t[DM_WP_BB], n, H);
    dm_rng *r = rng ? rng : &dm_rng_global;
    if (w->actions == 1) {
        for (size_t i = 0; i < n; i++) w->a[i] = 1.0f;
    } else if (w->actions == 2) {
        for (size_t i = 0; i < n; i++) w->a[i] = dm_rng_uniform(r) < w->random_rate ? 1.0f : 0.0f;
    } else {
        dm_policy_act(w->a, w->p, NULL, n, training || w->sample_eval, r);
    }
    int soft = w->mode == DM_WRITE_SOFT && training && w->actions == 0;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        w->wr[i] = soft ? w->p[i] : w->a[i];
        s += w->wr[i];
    }
    dm_episodic_dims d = {B, T, H, w->Dk, w->K};
    dm_episodic_params ep = epi_params(params);
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
    dm_reinforce_config rl = w->rl;
    /* Soft writes are trained through the read; the policy term would
     * score actions that were never taken. */
    if ((w->mode == DM_WRITE_SOFT && w->training_forward) || w->actions != 0) rl.alpha = 0.0f;
    if (w->actions != 0) rl.eta = 0.0f;
    memset(w->dz, 0, n * sizeof(float));
    memset(w->dwr, 0, n * sizeof(float)); /* baseline gradient buffer here */
    if (dm_reinforce_backward(&w->last, &w->rs, w->dz, w->dwr, w->z, w->a, w->rew, w->valid, w->v,
                              B, T, &rl, w->rscr, err) != 0)
        return -1;
    if (grads) {
        dm_policy_linear_backward(grads->t[DM_WP_WP], grads->t[DM_WP_BP], w->dz, h, n, H);
        dm_policy_linear_backward(grads->t[DM_WP_WB], grads->t[DM_WP_BB], w->dwr, h, n, H);
    }
    if (stats) *stats = w->last;
    return 0;
}

int dm_writepolicy_backward(dm_writepolicy *w, float *dh, const float *dout, const float *h,
                            const dm_wp_tensors *params, const dm_wp_tensors *grads, dm_error *err)
{
    if (!w->has_forward)
        return dm_fail(err, "writepolicy.backward: no forward (call forward first)");
    const size_t B = w->B, T = w->T, n = B * T;
    dm_episodic_dims d = {B, T, w->H, w->Dk, w->K};
    dm_episodic_params ep = epi_params(params);
    dm_episodic_grads eg = {grads->t[DM_WP_WQ], grads->t[DM_WP_WK], grads->t[DM_WP_WV],
                            grads->t[DM_WP_WG], grads->t[DM_WP_BG]};
    int soft = w->mode == DM_WRITE_SOFT && w->training_forward && w->actions == 0;
    if (soft) memset(w->dwr, 0, n * sizeof(float));
    dm_episodic_backward(dh, soft ? w->dwr : NULL, &eg, dout, w->cache, w->src, h, w->wr, &ep, &d,
                         w->scratch);
    if (soft) {
        /* wr = p = sigmoid(z): dz = dwr p (1-p); the state stays detached. */
        for (size_t i = 0; i < n; i++) w->dz[i] = w->dwr[i] * w->p[i] * (1.0f - w->p[i]);
        dm_policy_linear_backward(grads->t[DM_WP_WP], grads->t[DM_WP_BP], w->dz, h, n, w->H);
    }
    return 0;
}
