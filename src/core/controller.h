/* controller.h: DRLMemNet, the whole model, composed of the layers.
 *
 *   tokens (B,T) -> embedding (V,E) -> fc_query + GELU = query (B,T,D)
 *     -> memory read (softmax(query keys^T) values; usage += 1 per distinct
 *        argmax slot, in training and eval alike) -> GRU (H, L layers)
 *     -> fc1 + GELU -> dropout (training only) -> fc_output [+ GELU] = logits
 *   after the optimizer step, write_memory(s): qm = GELU(fc_query_memory(query)),
 *   vm = GELU(fc_value_memory(logits)), both (B,T,D), time-means (B,D), then
 *   dm_memory_write (../shared/reference/README.md, "Training step").
 *
 * Parameters live in one arena whose entries carry PyTorch's state_dict
 * names in PyTorch's state_dict order (memory.keys, memory.values,
 * memory.usage_counts, embedding.weight, fc_query.*, rnn.*_l0.., fc1.*,
 * fc_output.*, fc_query_memory.*, fc_value_memory.*), so a checkpoint can be
 * written from it and loaded into torch as is. The gradient arena has the
 * same layout; its entries for the frozen tensors (memory.usage_counts,
 * fc_query_memory.*, fc_value_memory.*) stay zero and are handed to the
 * optimizer as NULL, like torch's None grads, so clipping and AdamW skip
 * them: fc_query_memory and fc_value_memory keep their initial values
 * forever (the upstream quirk), and usage_counts is only counted. The
 * activations of the last forward (what backward and the write need) live
 * in a third arena sized for the largest B and T seen, reused across steps
 * and regrown only when a batch is larger. */
#ifndef DM_CONTROLLER_H
#define DM_CONTROLLER_H

#include "core/arena.h"
#include "core/common.h"
#include "core/gru.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/writepolicy.h"

typedef enum dm_output_act { DM_OUTPUT_GELU = 0, DM_OUTPUT_NONE = 1 } dm_output_act;

/* write_policy: `seed` is the upstream model (no episodic memory, nothing
 * below changes); `reinforce` adds the episodic memory and its learned
 * write policy between the GRU and fc1 (writepolicy.h, issue 6):
 *   ... -> GRU -> h_t -> h_t + g_t * episodic_read(h_t) -> fc1 -> ...
 * with the episodic and policy parameters appended to the parameter arena
 * after every seed entry (names in dm_wp_names) and drawn from the rng
 * after every seed parameter, so the seed's parameters are the same either
 * way. write_actions chooses who decides the writes: the learned policy,
 * every step (`always`), or Bernoulli(random_write_rate) draws (`random`);
 * the last two are the ablation's controls and train no policy. */
typedef enum dm_write_policy { DM_WRITE_POLICY_SEED = 0, DM_WRITE_POLICY_REINFORCE = 1 } dm_write_policy;
typedef enum dm_write_actions {
    DM_WRITE_ACTIONS_POLICY = 0,
    DM_WRITE_ACTIONS_ALWAYS = 1,
    DM_WRITE_ACTIONS_RANDOM = 2
} dm_write_actions;

typedef struct dm_controller_config {
    int64_t vocab_size;           /* V >= 1 */
    int64_t embedding_dim;        /* E >= 1 */
    int64_t memory_embedding_dim; /* D >= 1; 0 in a config means "= E" */
    int64_t memory_size;          /* M >= 1 */
    int64_t hidden_size;          /* H >= 1 */
    int64_t num_layers;           /* L in 1..DM_GRU_MAX_LAYERS */
    double dropout;               /* p in [0,1) */
    dm_output_act output_activation;
    /* issue 6; all ignored when write_policy is seed (the zero value) */
    dm_write_policy write_policy;
    int64_t episodic_slots;       /* K >= 1; 0 in a config means 16 */
    double policy_bias_init;      /* initial b of p = sigmoid(w.s + b), e.g. -2 */
    dm_reinforce_config rl;       /* gamma, write cost, alpha, beta, eta, ... */
    dm_write_actions write_actions;
    double random_write_rate;     /* [0,1], for write_actions = random */
    /* The ablation's "GRU without memory": 1 bypasses the learned memory
     * (the GRU reads the query itself, mem_out = query; no read, no usage
     * counts, write_memory does nothing, memory.keys/values get no
     * gradient). The memory tensors stay in the arena, so checkpoints keep
     * one layout. 0 (the zero value) is the seed's model, bit for bit. */
    int no_memory;
} dm_controller_config;

/* The seed's sizes (E = D = 128, M = 512, H = 256, L = 2, p = 0.3, gelu)
 * for a given vocabulary size. */
dm_controller_config dm_controller_config_default(int64_t vocab_size);
/* 0, or -1 naming the bad field and its value. Fills D = E when D is 0. */
int dm_controller_config_check(dm_controller_config *cfg, dm_error *err);
/* "gelu" / "none"; parse returns 0 or -1 naming the value. */
const char *dm_output_act_name(dm_output_act a);
int dm_output_act_parse(const char *s, dm_output_act *out, dm_error *err);

/* Entry indices into the parameter (and gradient) arena. */
typedef struct dm_controller_index {
    int keys, values, usage;
    int emb;
    int fcq_w, fcq_b;
    int w_ih[DM_GRU_MAX_LAYERS], w_hh[DM_GRU_MAX_LAYERS];
    int b_ih[DM_GRU_MAX_LAYERS], b_hh[DM_GRU_MAX_LAYERS];
    int fc1_w, fc1_b;
    int fco_w, fco_b;
    int fcqm_w, fcqm_b;
    int fcvm_w, fcvm_b;
    int wp[DM_WP_NPARAMS];     /* reinforce only; -1 otherwise */
} dm_controller_index;

typedef struct dm_controller {
    dm_controller_config cfg;
    size_t V, E, D, M, H, L;
    dm_arena params;           /* state_dict, in torch's order */
    dm_arena grads;            /* same layout; frozen entries stay zero */
    dm_controller_index ix;
    int training;              /* 1 after create and dm_controller_train */
    dm_rng *rng;               /* dropout draws; &dm_rng_global unless set */

    /* Activations of the last forward, (B,T) = (last_B,last_T) valid rows
     * inside buffers laid out for cap_B x cap_T. */
    dm_arena acts;
    size_t cap_B, cap_T;
    size_t last_B, last_T;
    int has_forward;           /* a forward's activations are in acts */
    int32_t *tokens;           /* (cap_B*cap_T) the last forward's ids */
    int32_t *argmax;           /* (cap_B*cap_T) */
    int32_t *usage_scratch;    /* (M) */
    /* An injected dropout mask for the next training forward (parity
     * tests): {0,1} keep flags (B,T,H), scaled by 1/(1-p) when used. */
    float *pending_mask;       /* (pending_n) or NULL */
    size_t pending_B, pending_T;
    /* write_policy = reinforce: the episodic memory and policy unit. */
    int reinforce;
    dm_writepolicy wp;
} dm_controller;

/* Validates cfg, lays out and allocates the arenas, and initialises the
 * parameters from rng (NULL: dm_rng_global) as the reference README's table
 * says, drawing in state_dict order: keys then values U(+-sqrt(6/D))
 * (dm_memory_init_params), embedding N(0, 0.1^2), fc_query.weight
 * U(+-sqrt(6/E)) and bias 0, every GRU tensor U(+-1/sqrt(H)) layer by
 * layer in (w_ih, w_hh, b_ih, b_hh) order, fc1.weight and fc_output.weight
 * U(+-sqrt(6/H)) with zero biases, fc_query_memory weight then bias
 * U(+-1/sqrt(D)), fc_value_memory weight then bias U(+-1/sqrt(V)), usage
 * counts 1. Training mode. On failure *c is left freed. */
int dm_controller_create(dm_controller *c, const dm_controller_config *cfg, dm_rng *rng,
                         dm_error *err);
/* Frees everything; safe on a zeroed or already freed controller. */
void dm_controller_free(dm_controller *c);

/* Dropout draws come from rng from now on (NULL: dm_rng_global). */
void dm_controller_set_rng(dm_controller *c, dm_rng *rng);
void dm_controller_train(dm_controller *c);
void dm_controller_eval(dm_controller *c);

/* Runs the forward on tokens (B,T) and keeps its activations for backward
 * and write_memory. Adds to memory.usage_counts (training and eval). A
 * token outside [0,V) fails naming its (batch, time) position, the id and
 * V, before anything changes (usage included). B or T of 0, or a pending
 * dropout mask of another shape, fail too. After a failure no forward is
 * kept (backward and write_memory then refuse). */
int dm_controller_forward(dm_controller *c, const int32_t *tokens /* (B,T) */, size_t B,
                          size_t T, dm_error *err);
/* The last forward's outputs (valid until the next forward): logits
 * (B,T,V), query (B,T,D), attention weights (B,T,M), argmax slots (B,T). */
const float *dm_controller_logits(const dm_controller *c);
const float *dm_controller_query(const dm_controller *c);
const float *dm_controller_attention(const dm_controller *c);
const int32_t *dm_controller_argmax(const dm_controller *c);

/* Backward of the last forward: ADDS into the gradient arena (call
 * dm_controller_zero_grad first for a fresh gradient). dlogits is the loss
 * gradient w.r.t. the logits. Errors: no forward yet, B or T different
 * from the last forward's. It can run more than once per forward (each run
 * adds again), and uses the parameters as they are now. */
int dm_controller_backward(dm_controller *c, const float *dlogits /* (B,T,V) */, size_t B,
                           size_t T, dm_error *err);
void dm_controller_zero_grad(dm_controller *c);

/* The upstream post-step write from the last forward's query and logits
 * (dropout forward's logits in training). No gradient anywhere. Errors:
 * no forward yet, s outside [0,1]. */
int dm_controller_write_memory(dm_controller *c, float s, dm_error *err);

/* write_policy = reinforce: REINFORCE for the last forward's write
 * decisions, with rewards log p(target) from its logits; ADDS into the
 * policy's and baseline's gradients (call after forward, before the
 * optimizer step; order against backward does not matter). Positions
 * whose target is ignore_index (< 0: none) are left out. stats may be NULL.
 * Errors: seed policy, no forward, a target out of range. */
int dm_controller_reinforce(dm_controller *c, const int32_t *targets /* (B,T) */,
                            int32_t ignore_index, dm_reinforce_stats *stats, dm_error *err);
/* Curriculum and schedule knobs of the write policy (reinforce only):
 * soft != 0 makes training forwards write with weight p_t (no sampling
 * into the memory); eta replaces the entropy weight (decayed per epoch by
 * the caller); sample_eval != 0 samples actions in eval too. */
int dm_controller_set_write_options(dm_controller *c, int soft, double eta, int sample_eval,
                                    dm_error *err);

/* Injects the next training forward's dropout mask: keep flags {0,1} of
 * shape (B,T,H) (values are multiplied by 1/(1-p) as PyTorch's replay does:
 * hidden * (mask * (1/(1-p)))). Used once, by the next forward in training
 * mode, which must have the same B and T. mask NULL clears it. */
int dm_controller_set_dropout_mask(dm_controller *c, const float *mask /* (B,T,H) */, size_t B,
                                   size_t T, dm_error *err);

/* The parameter list for an optimizer or clipping, in state_dict order
 * WITHOUT memory.usage_counts (a buffer, as in torch's parameters()):
 * frozen fc_query_memory.* and fc_value_memory.* come with grad = NULL.
 * refs must hold dm_controller_num_params(c) entries; names point into the
 * arena (valid while c lives). */
size_t dm_controller_num_params(const dm_controller *c);
void dm_controller_param_refs(const dm_controller *c, dm_param_ref *refs);
/* Whether arena entry i gets a gradient (0 for usage_counts and the
 * frozen write projections). */
int dm_controller_entry_trained(const dm_controller *c, int i);
/* Number of parameter floats (usage_counts excluded), for display. */
size_t dm_controller_param_count(const dm_controller *c);

#endif
