/* writepolicy.h: the `reinforce` write policy as one unit the controller
 * calls: episodic memory (episodic.h) + Bernoulli policy and baseline
 * (policy.h), with the per-batch buffers they need.
 *
 * The controller owns the parameters (in its arena, under the names of
 * DM_WP_NAMES, so optimizers and checkpoints see them) and hands pointers
 * in, and it hands in the working memory of each forward (the
 * activations backward and reinforce read, dm_writepolicy_work_numel
 * floats), which must stay untouched until the next forward. This object
 * keeps the running statistics and options. Per training step:
 *   forward(h)      p_t = sigmoid(w_p . h_t + b_p) from the DETACHED top GRU
 *                   state; actions a_t ~ Bernoulli(p_t) (training: one
 *                   dm_rng_uniform per position, row-major) or a_t =
 *                   [p_t > 0.5] (eval, unless sample_eval); write weights
 *                   wr = a (hard) or wr = p (soft, the curriculum's first
 *                   phase); out = episodic(h, wr).
 *   reinforce(...)  rewards r_t = log p(target_t) from the logits, then
 *                   dm_reinforce_backward, whose logit / baseline gradients
 *                   go straight into the policy's and baseline's parameter
 *                   gradients (the state is detached, so nothing else).
 *                   In soft mode the policy term is off (alpha = 0): the
 *                   policy learns through the differentiable write weights.
 *   backward(dout)  episodic backward into dh and the episodic parameters;
 *                   in soft mode also dL/dwr -> p -> (w_p, b_p).
 * With actions 4 (the Gumbel gate, below) forward writes the gate's hard
 * decisions, reinforce trains only the baseline, and backward sends
 * dL/dwr through the gate's d g / d z into (w_p, b_p).
 * Positions whose target is ignored (pads) give no reward and no policy
 * gradient, but the policy may still write there (after the sequence's
 * last valid read, so it changes nothing that is scored). */
#ifndef DM_WRITEPOLICY_H
#define DM_WRITEPOLICY_H

#include "core/common.h"
#include "core/episodic.h"
#include "core/policy.h"
#include "core/rng.h"

typedef enum dm_write_mode { DM_WRITE_HARD = 0, DM_WRITE_SOFT = 1 } dm_write_mode;

/* Parameter order and names (shapes: Dk x H, Dk x H, H x H, 1 x H, 1, 1 x H,
 * 1, 1 x H, 1, 1). The last, the cosine read's sharpness, exists only with
 * the cosine read (a model without it keeps the nine-tensor layout); a
 * dm_wp_tensors without it holds NULL there. */
#define DM_WP_NPARAMS 10
extern const char *const dm_wp_names[DM_WP_NPARAMS];
enum { DM_WP_WQ, DM_WP_WK, DM_WP_WV, DM_WP_WG, DM_WP_BG, DM_WP_WP, DM_WP_BP, DM_WP_WB, DM_WP_BB,
       DM_WP_SCALE };

/* Pointers to the parameters (or their gradients), indexed by the enum
 * above. */
typedef struct dm_wp_tensors {
    float *t[DM_WP_NPARAMS];
} dm_wp_tensors;

/* Shape of parameter i: ndim (1 or 2) and dims. */
int dm_wp_shape(size_t H, size_t Dk, int i, int64_t shape[2]);
/* Initial values, drawn from rng in parameter order: query/key/value
 * weights U(+-1/sqrt(H)) (torch's Linear default), gate weights and bias 0
 * (g = 0.5), policy weights U(+-1/sqrt(H)) and bias policy_bias (e.g. -2:
 * p ~ 0.12, writes start rare), baseline weights and bias 0; the cosine
 * sharpness (when p->t[DM_WP_SCALE] is set) the episodic options'
 * scale_init, drawing nothing. */
void dm_wp_init_params(const dm_wp_tensors *p, size_t H, size_t Dk, float policy_bias, dm_rng *rng);
/* The same with the query and key tensors of qk_numel floats each drawn
 * U(+-qk_bound) (the token tables of address_token: V x Dk, bound 1). */
void dm_wp_init_params_sized(const dm_wp_tensors *p, size_t H, size_t qk_numel, float qk_bound,
                             float policy_bias, dm_rng *rng);
void dm_wp_init_scale(const dm_wp_tensors *p, float scale_init);

typedef struct dm_writepolicy {
    size_t H, Dk, K;
    dm_write_mode mode;
    int sample_eval;            /* eval draws actions instead of thresholding */
    /* Who decides (ablation controls): 0 the policy; 1 every step writes;
     * 2 Bernoulli(random_rate) draws in training and eval; 3 the steps
     * t = k, 2k, ... of each sequence (k = write_every; no draw). With 1-3
     * the policy's logits are still computed (and logged) but REINFORCE
     * adds no gradient. 4: the straight-through Gumbel-sigmoid gate of
     * policy.h on the policy's logits (training: one dm_rng_uniform per
     * position, row-major, for its noise; eval: [z > 0], no draw, unless
     * sample_eval), trained by the loss through the memory (backward),
     * never by REINFORCE. Its gradient reaches only the steps that wrote:
     * a step that did not write holds no slot, so dL/dwr is 0 there and
     * the noise alone makes new writes. */
    int actions;
    float random_rate;
    size_t write_every;
    float gumbel_tau;           /* actions 4: the gate's temperature, > 0 */
    /* The episodic read's options (episodic.h's dims.cosine and
     * dims.key_prev); set before the first forward. */
    int cosine, key_prev;
    /* episodic.h's dims.address_token: query and key tables of V rows;
     * tokens (B,T) are the ids of the batch, set by the caller before
     * forward and backward. */
    int address_token;
    size_t V;
    const int32_t *tokens;
    /* (B,T) or NULL, set by the caller around reinforce(): where it holds
     * the ignore_index the reward is 0 while the action there still counts
     * (its reward-to-go carries later rewards); elsewhere it must equal the
     * targets. Rewards only at the positions the reads serve (a task's
     * answers) leave out the per-token rewards no write can change. */
    const int32_t *reward_targets;
    float scale_init;           /* the cosine sharpness the part's init draws */
    dm_reinforce_config rl;
    dm_reinforce_state rs;      /* running advantage scale */
    /* Pointers into the last forward's working memory; its (B,T). */
    size_t B, T;
    int has_forward;
    int training_forward;       /* the last forward sampled */
    float *cache, *scratch;     /* episodic */
    int32_t *src;               /* (cap_n,K) */
    float *z, *p, *a, *wr, *v;  /* (cap_n) each: logits, probs, actions, write weights, baseline */
    float *dwr, *dz, *rew, *valid, *rscr; /* (cap_n) each, rscr (2 cap_n) */
    float *g, *noise;           /* (cap_n) each: the Gumbel gate and its logistic noise */
    dm_reinforce_stats last;    /* of the last reinforce() */
    double slot_usage;          /* of the last forward */
    double write_rate_all;      /* mean wr over all positions of the last forward */
    dm_reduce reduce;           /* sums over processes (dm_reinforce_backward_reduced) */
} dm_writepolicy;

/* Zeroes *w and checks sizes; the reinforce config must pass
 * dm_reinforce_config_check. */
int dm_writepolicy_init(dm_writepolicy *w, size_t H, size_t Dk, size_t K,
                        const dm_reinforce_config *rl, dm_error *err);
void dm_writepolicy_free(dm_writepolicy *w);

/* Floats of working memory one forward of a (B,T) batch needs. */
size_t dm_writepolicy_work_numel(const dm_writepolicy *w, size_t B, size_t T);

/* out = h + gate * episodic read, with actions as the header says.
 * training: sample from rng (NULL: dm_rng_global). work: the working
 * memory above. Errors: bad sizes, work NULL. */
int dm_writepolicy_forward(dm_writepolicy *w, float *out /* (B,T,H) */, const float *h /* (B,T,H) */,
                           const dm_wp_tensors *params, size_t B, size_t T, int training,
                           dm_rng *rng, float *work /* (work_numel) */, dm_error *err);

/* Rewards from logits/targets of the last forward, then REINFORCE: ADDS
 * into grads' policy and baseline entries. stats may be NULL. Errors: no
 * forward, a bad target, bad config. */
int dm_writepolicy_reinforce(dm_writepolicy *w, dm_reinforce_stats *stats,
                             const float *logits /* (B,T,V) */, const int32_t *targets /* (B,T) */,
                             size_t V, int32_t ignore_index, const float *h /* (B,T,H) */,
                             const dm_wp_tensors *grads, dm_error *err);

/* The reinforce step of a process whose shard of the global batch is
 * empty: nothing of its own, its part of w->reduce's sums (which must be
 * set), the global statistics and running scale. */
int dm_writepolicy_reinforce_empty(dm_writepolicy *w, dm_reinforce_stats *stats, dm_error *err);

/* Backward of the last forward: ADDS into dh (may be NULL) and grads
 * (episodic entries; the policy's too in soft mode). */
int dm_writepolicy_backward(dm_writepolicy *w, float *dh /* (B,T,H) acc, or NULL */,
                            const float *dout /* (B,T,H) */, const float *h /* (B,T,H) */,
                            const dm_wp_tensors *params, const dm_wp_tensors *grads, dm_error *err);

/* The reinforce policy as a part (part.h's dm_reinforce_part): cfg.in = H,
 * cfg.slots = K, cfg.extra points to this while dm_part_init runs. Its
 * parameters are the nine above (named without a prefix), its activation
 * "write_policy.work" the working memory; part->state is the
 * dm_writepolicy. */
typedef struct dm_wp_part_cfg {
    size_t Dk;
    dm_reinforce_config rl;
    float policy_bias;
    int actions;        /* dm_writepolicy.actions */
    float random_rate;
    int cosine, key_prev; /* dm_writepolicy.cosine, key_prev */
    float scale_init;     /* the cosine read's initial sharpness */
    size_t write_every;   /* dm_writepolicy.write_every */
    int address_token;    /* dm_writepolicy.address_token */
    size_t V;             /* the vocabulary (address_token's table rows) */
    float gumbel_tau;     /* dm_writepolicy.gumbel_tau */
} dm_wp_part_cfg;

#endif
