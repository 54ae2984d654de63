/* policy.h: the write policy of the episodic memory and its REINFORCE
 * training signal (README "RL write policy").
 *
 * The policy is a Bernoulli per step: z_t = w . s_t + b, p_t = sigmoid(z_t),
 * a_t ~ Bernoulli(p_t) in training, a_t = [p_t > 0.5] in evaluation (or
 * sampled, for the sampled evaluation). s_t is the top GRU state h_t,
 * DETACHED: neither the policy nor the baseline sends gradient into the
 * network that computes s_t. The baseline is another linear map of the same
 * detached state, v_t = w_b . s_t + b_b.
 *
 * Rewards: r_t = log p(x_{t+1}) at every valid position t (the negative
 * per-token loss; dm_policy_token_rewards computes it from logits and
 * targets). The write a_t happens after the read of step t, so the first
 * reward it can change is r_{t+1}; the reward credited to action a_t is
 *   R_t = valid_{t+1} r_{t+1} - c a_t      (c = write_cost; r_T = 0)
 * and the return is the discounted reward-to-go within the sequence,
 *   G_t = R_t + gamma G_{t+1},  G_{T-1} = R_{T-1}  (over valid positions).
 * Raw advantage A_t = G_t - v_t (v_t treated as a constant). The advantage
 * used for the gradient is A_t / sigma, where sigma^2 is a running EMA of
 * the second moment of A over valid positions: after each batch
 *   m <- rho m + (1 - rho) mean(A^2),  n <- n + 1,  sigma^2 = m / (1 - rho^n)
 * (Adam-style bias correction, so the first batch uses its own mean(A^2)),
 * and sigma = sqrt(sigma^2 + 1e-8). The current batch is included before
 * use; with normalize = 0 sigma = 1 (what the exact gradient test uses).
 *
 * Losses, means over the Nv valid positions of the batch:
 *   policy    L_pg = -(1/Nv) sum_t (A_t / sigma) log pi(a_t | s_t)
 *   baseline  L_b  =  (1/Nv) sum_t (v_t - G_t)^2
 *   entropy   H    =  (1/Nv) sum_t Hb(p_t),  Hb(p) = -p log p - (1-p) log(1-p)
 * and the training loss is CE + alpha L_pg + beta L_b - eta H, with eta
 * decayed by the caller (eta_epoch = eta * entropy_decay^epoch). Gradients
 * w.r.t. the logits: d log pi / dz = a - p, dHb / dz = -z p (1-p). */
#ifndef DM_POLICY_H
#define DM_POLICY_H

#include "core/common.h"
#include "core/rng.h"

/* z = s . w + b for N rows of width S (the policy's logits, or the
 * baseline's values); p = sigmoid(z) when p is not NULL. */
void dm_policy_forward(float *z /* (N) */, float *p /* (N) or NULL */, const float *s /* (N,S) */,
                       const float *w /* (S) */, const float *b /* (1) */, size_t N, size_t S);
/* dw += sum_i dz_i s_i; db += sum_i dz_i. No gradient into s (detached). */
void dm_policy_linear_backward(float *dw /* (S) acc */, float *db /* (1) acc */,
                               const float *dz /* (N) */, const float *s /* (N,S) */, size_t N,
                               size_t S);

/* Actions: rows with valid[i] == 0 get a = 0 and no draw (valid NULL: all
 * valid). sample != 0: a_i = 1 when dm_rng_uniform(rng) < p_i, one draw per
 * valid row in order. sample == 0: a_i = (p_i > 0.5), no draw (rng may be
 * NULL). */
void dm_policy_act(float *a /* (N) */, const float *p /* (N) */, const float *valid /* (N) or NULL */,
                   size_t N, int sample, dm_rng *rng);

/* The straight-through Gumbel-sigmoid write gate (write_actions gumbel):
 * a differentiable control for the REINFORCE policy, trained by the task
 * loss through the memory instead of by rewards. With logistic noise
 * l_i = log u_i - log(1 - u_i), u_i ~ U(0,1):
 *   g_i = sigmoid((z_i + l_i) / tau),  a_i = [g_i > 0.5]   (forward: hard)
 *   dz_i += dwr_i * g_i (1 - g_i) / tau                    (backward: d g/d z)
 * so the forward writes exactly what a hard decision writes while the
 * gradient is that of the soft gate at the same noise. noise NULL: l = 0
 * (the eval decision [z > 0]). */
float dm_gumbel_noise(float u);
void dm_gumbel_gate(float *g /* (N) */, float *a /* (N) */, const float *z /* (N) */,
                    const float *noise /* (N) or NULL */, size_t N, float tau);
void dm_gumbel_gate_backward(float *dz /* (N) acc */, const float *dwr /* (N) */,
                             const float *g /* (N) */, size_t N, float tau);

/* log pi(a | z) = a log sigmoid(z) + (1-a) log(1 - sigmoid(z)), computed
 * stably as -softplus(-z) / -softplus(z), for one step. */
double dm_policy_log_prob(float z, float a);
/* Bernoulli entropy of sigmoid(z), stable for large |z|. */
double dm_policy_entropy(float z);

/* r_i = log softmax(logits_i)[target_i] and valid_i = 1 for rows whose
 * target != ignore_index; r_i = 0, valid_i = 0 otherwise (ignore_index < 0:
 * none ignored). Fails naming the row and target when a target is outside
 * [0,V) and not ignored. Computed in double with a max shift. */
int dm_policy_token_rewards(float *r /* (N) */, float *valid /* (N) */, const float *logits /* (N,V) */,
                            const int32_t *targets /* (N) */, size_t N, size_t V,
                            int32_t ignore_index, dm_error *err);

/* Discounted reward-to-go as in the header comment: G (B,T) from rewards r,
 * actions a and valid (all (B,T); valid NULL = all valid). Invalid
 * positions get G = 0 and neither give nor receive reward. */
void dm_policy_returns(float *G /* (B,T) */, const float *r /* (B,T) */, const float *a /* (B,T) */,
                       const float *valid /* (B,T) or NULL */, size_t B, size_t T, float gamma,
                       float write_cost);

typedef struct dm_reinforce_config {
    float gamma;       /* discount within the sequence, [0,1] */
    float write_cost;  /* subtracted from the reward of each write, >= 0 */
    float alpha;       /* weight of the policy loss */
    float beta;        /* weight of the baseline loss */
    float eta;         /* weight of the entropy bonus (already decayed) */
    float std_decay;   /* rho of the running advantage scale, [0,1) */
    int normalize;     /* 0: sigma = 1 */
} dm_reinforce_config;

/* The running advantage scale (kept across batches; checkpointable). */
typedef struct dm_reinforce_state {
    double second_moment; /* m */
    int64_t updates;      /* n */
} dm_reinforce_state;

typedef struct dm_reinforce_stats {
    size_t count;          /* Nv */
    double write_rate;     /* mean a over valid positions */
    double entropy;        /* H */
    double mean_reward;    /* mean r over valid positions */
    double mean_return;    /* mean G */
    double mean_advantage; /* mean raw A = G - v */
    double adv_scale;      /* sigma used */
    double policy_loss;    /* L_pg */
    double baseline_loss;  /* L_b */
} dm_reinforce_stats;

/* Reasonable defaults: gamma 0.95, cost 0.01, alpha 1, beta 0.5, eta 0.01,
 * rho 0.99, normalize on. */
dm_reinforce_config dm_reinforce_config_default(void);
/* 0, or -1 naming the field out of range. */
int dm_reinforce_config_check(const dm_reinforce_config *cfg, dm_error *err);

/* One REINFORCE step over a (B,T) batch. Inputs: policy logits z, actions
 * a, rewards r, valid mask (NULL = all valid), baseline values v. ADDS the
 * gradient of alpha L_pg - eta H w.r.t. z into dz, and of beta L_b w.r.t. v
 * into dv (either may be NULL to skip). Updates *state (when normalize) and
 * fills *stats (may be NULL). scratch holds 2*B*T floats (returns and
 * advantages). No valid position: nothing is added, stats count 0, state
 * unchanged. Errors: bad config. */
int dm_reinforce_backward(dm_reinforce_stats *stats, dm_reinforce_state *state,
                          float *dz /* (B,T) acc, or NULL */, float *dv /* (B,T) acc, or NULL */,
                          const float *z /* (B,T) */, const float *a /* (B,T) */,
                          const float *r /* (B,T) */, const float *valid /* (B,T) or NULL */,
                          const float *v /* (B,T) */, size_t B, size_t T,
                          const dm_reinforce_config *cfg, float *scratch /* (2*B*T) */,
                          dm_error *err);
/* The same step over a batch split over processes, each calling it on its
 * rows (B*T may be 0: then every array may be NULL): the counts and sums
 * behind the statistics, the running scale's second moment and the means
 * (count, A^2, A, G, r, a, entropy, baseline error, A log pi, and 1 to
 * count the processes) are summed by red, so that the scale, the state
 * and the stats are those of the whole batch on every process, and the
 * gradients use the global count times the number of processes, as a
 * share of a gradient averaged over them. red NULL (or red->fn NULL):
 * dm_reinforce_backward, bit for bit. */
int dm_reinforce_backward_reduced(dm_reinforce_stats *stats, dm_reinforce_state *state,
                                  float *dz /* (B,T) acc, or NULL */, float *dv /* (B,T) acc, or NULL */,
                                  const float *z /* (B,T) */, const float *a /* (B,T) */,
                                  const float *r /* (B,T) */, const float *valid /* (B,T) or NULL */,
                                  const float *v /* (B,T) */, size_t B, size_t T,
                                  const dm_reinforce_config *cfg, float *scratch /* (2*B*T) */,
                                  const dm_reduce *red, dm_error *err);

#endif
