/* controller.h: DRLMemNet, the whole model, as a composition of parts
 * (part.h):
 *
 *   tokens (B,T) -> embedding (V,E) -> fc_query + GELU = query (B,T,D)
 *     -> memory read (softmax(query keys^T) values; usage += 1 per distinct
 *        argmax slot, in training and eval alike) -> cell (GRU or LSTM, H,
 *        L layers) [-> write policy] -> fc1 + GELU -> dropout (training
 *        only) -> fc_output [+ GELU] = logits
 *   after the optimizer step, write_memory(s): qm = GELU(fc_query_memory(query)),
 *   vm = GELU(fc_value_memory(logits)), both (B,T,D), time-means (B,D), then
 *   dm_memory_write (the reference README's "Training step").
 *
 * The language-model options add parts only when set (so the default
 * model is the upstream one, entry for entry): input_dropout after the
 * embedding, output_dropout after the cell (and the write policy),
 * dropout between the cell's layers inside it, embedding dropout of whole
 * rows inside the embedding, and with tie_weights fc_output reads
 * embedding.weight (no fc_output.weight of its own) after tie_proj (H -> E)
 * when H != E. An initial state set with dm_controller_set_state starts
 * the cell of every following forward from it (truncated BPTT).
 *
 * Which parts, with which sizes, in which order is decided in one place
 * (controller.c's compose); everything else walks the part list. The
 * parameters live in one arena laid out from the parts' size tables in
 * PyTorch's state_dict order (memory.keys, memory.values,
 * memory.usage_counts, embedding.weight, fc_query.*, rnn.*_l0.., fc1.*,
 * fc_output.*, fc_query_memory.*, fc_value_memory.*, then the write
 * policy's), so a checkpoint can be written from it and loaded into torch
 * as is. The gradient arena has the same layout; entries flagged frozen or
 * buffer (memory.usage_counts, fc_query_memory.*, fc_value_memory.*) stay
 * zero and are handed to the optimizer as NULL, like torch's None grads,
 * so clipping and AdamW skip them: fc_query_memory and fc_value_memory
 * keep their initial values forever (the upstream quirk), and usage_counts
 * is only counted. The activations of the last forward (every part's
 * output, what backward and the write need, the loss gradient) live in a
 * third arena sized for the largest B and T seen, reused across steps and
 * regrown only when a batch is larger. */
#ifndef DM_CONTROLLER_H
#define DM_CONTROLLER_H

#include "core/arena.h"
#include "core/common.h"
#include "core/gru.h"
#include "core/optim.h"
#include "core/part.h"
#include "core/rng.h"
#include "core/writepolicy.h"

typedef enum dm_output_act { DM_OUTPUT_GELU = 0, DM_OUTPUT_NONE = 1 } dm_output_act;

/* write_policy: `blend` (the upstream model's post-step blend write, and
 * nothing else; "seed" is accepted as its old name) or `reinforce`, which
 * adds the episodic memory and its learned write policy between the cell
 * and fc1 (writepolicy.h):
 *   ... -> cell -> h_t -> h_t + g_t * episodic_read(h_t) -> fc1 -> ...
 * with the episodic and policy parameters appended to the parameter arena
 * after every other entry (names in dm_wp_names) and drawn from the rng
 * after every other parameter, so the blend model's parameters are the
 * same either way. write_actions chooses who decides the writes: the
 * learned policy, every step (`always`), or Bernoulli(random_write_rate)
 * draws (`random`); the last two are the ablation's controls and train no
 * policy. `gumbel` feeds the policy's logits through a straight-through
 * Gumbel-sigmoid gate (temperature gumbel_tau) trained by the loss through
 * the memory, the differentiable reference for REINFORCE. */
typedef enum dm_write_actions {
    DM_WRITE_ACTIONS_POLICY = 0,
    DM_WRITE_ACTIONS_ALWAYS = 1,
    DM_WRITE_ACTIONS_RANDOM = 2,
    /* every write_every-th step after the first (steps k, 2k, ...): the
     * non-learned uniform writing of Le et al. 2019 */
    DM_WRITE_ACTIONS_UNIFORM = 3,
    /* the straight-through Gumbel-sigmoid gate on the policy's logits
     * (policy.h), trained by the loss through the memory: the
     * differentiable control for REINFORCE */
    DM_WRITE_ACTIONS_GUMBEL = 4
} dm_write_actions;

typedef enum dm_episodic_similarity {
    DM_EPISODIC_DOT = 0,
    DM_EPISODIC_COSINE = 1
} dm_episodic_similarity;

typedef enum dm_episodic_key { DM_EPISODIC_KEY_STATE = 0, DM_EPISODIC_KEY_PREVIOUS = 1 } dm_episodic_key;

typedef enum dm_episodic_address {
    DM_EPISODIC_ADDRESS_STATE = 0,
    DM_EPISODIC_ADDRESS_TOKEN = 1
} dm_episodic_address;

#define DM_KIND_NAME_MAX 16

typedef struct dm_controller_config {
    int64_t vocab_size;           /* V >= 1 */
    int64_t embedding_dim;        /* E >= 1 */
    int64_t memory_embedding_dim; /* D >= 1; 0 in a config means "= E" */
    int64_t memory_size;          /* M >= 1 */
    int64_t hidden_size;          /* H >= 1 */
    int64_t num_layers;           /* L in 1..DM_GRU_MAX_LAYERS */
    double dropout;               /* p in [0,1) */
    dm_output_act output_activation;
    /* The recurrent cell's kind, a registered DM_ROLE_CELL part ("gru",
     * "lstm"); "" (the zero value) means "gru". */
    char cell[DM_KIND_NAME_MAX];
    /* All ignored when write_policy is blend (the zero value). */
    /* The write policy's kind, a registered DM_ROLE_POLICY part ("blend",
     * "reinforce"; the alias "seed" reads as blend); "" means "blend". */
    char write_policy[DM_KIND_NAME_MAX];
    int64_t episodic_slots;       /* K >= 1; 0 in a config means 16 */
    double policy_bias_init;      /* initial b of p = sigmoid(w.s + b), e.g. -2 */
    dm_reinforce_config rl;       /* gamma, write cost, alpha, beta, eta, ... */
    dm_write_actions write_actions;
    double random_write_rate;     /* [0,1], for write_actions = random */
    /* The episodic read (episodic.h's options): the score (dot, or cosine
     * with a learned sharpness starting at episodic_scale_init) and what
     * the key is made from (the state of this step, or of the previous). */
    dm_episodic_similarity episodic_similarity;
    dm_episodic_key episodic_key;
    double episodic_scale_init;   /* > 0 */
    int64_t write_every;          /* k >= 1, for write_actions = uniform */
    double gumbel_tau;            /* > 0, the gate's temperature, for write_actions = gumbel */
    dm_episodic_address episodic_address;
    /* The ablation's "GRU without memory": 0 bypasses the learned memory
     * (the cell reads the query itself; no read, no usage counts,
     * write_memory does nothing, memory.keys/values get no gradient). The
     * memory tensors stay in the arena, so checkpoints keep one layout. 1
     * (the default) is the upstream model, bit for bit. */
    int use_memory;
    /* Regularisation of the recurrent language model (Zaremba et al. 2014,
     * AWD-LSTM), each 0 by default, when the model is the upstream one bit
     * for bit: dropout on the embedding output (input_dropout), on the
     * input of every cell layer above the first (layer_dropout), on the
     * cell's output (output_dropout); variational_dropout draws those three
     * once per sequence and reuses them at every time step;
     * embedding_dropout drops whole rows (word types) of the embedding.
     * Training forwards only; the draws come from the controller's rng. */
    double input_dropout, layer_dropout, output_dropout, embedding_dropout;
    int variational_dropout;
    /* 1: fc_output's weight is embedding.weight (Press & Wolf 2017), with a
     * learned tie_proj (H -> E, no bias) before it when H != E. */
    int tie_weights;
} dm_controller_config;



/* The seed's sizes (E = D = 128, M = 512, H = 256, L = 2, p = 0.3, gelu,
 * GRU, memory on, blend writes) for a given vocabulary size. */
dm_controller_config dm_controller_config_default(int64_t vocab_size);

/* ---- the config's keys, declared once ----------------------------------------
 * Every key of a model config is one row of the table dm_controller_fields
 * returns: its name (the name configs, checkpoints and Lua use), its type,
 * where it lives in dm_controller_config, its range or choices, its help
 * line and when net:config() writes it. Defaults are
 * dm_controller_config_default's. The Lua schema (drlmem.config) declares
 * its model keys from this table, the binding fills the struct and writes
 * net:config() from it, and checkpoints accept exactly these keys, so
 * adding a key is one row here. */
typedef enum dm_field_type {
    DM_FIELD_INT,    /* int64_t, >= 1 */
    DM_FIELD_DOUBLE, /* double */
    DM_FIELD_FLOAT,  /* float */
    DM_FIELD_BOOL,   /* int 0/1 */
    DM_FIELD_ENUM,   /* int, the index of the value in choices */
    DM_FIELD_PART    /* char[DM_KIND_NAME_MAX], a registered part of role `role` */
} dm_field_type;

enum {
    DM_FIELD_REQUIRED = 1,   /* dm.Controller{} must be given it (the schema has a default) */
    DM_FIELD_DERIVED = 2,    /* not a setting of a run's config (vocab_size: the data's) */
    DM_FIELD_IF_CHANGED = 4, /* net:config() writes it only when not the default */
    DM_FIELD_POLICY = 8,     /* ignored, and not written, unless write_policy = reinforce */
    DM_FIELD_ZERO_IS_NULL = 16 /* 0 means "unset" (memory_embedding_dim: = embedding_dim) */
};

typedef struct dm_config_field {
    const char *name;
    dm_field_type type;
    size_t offset;           /* into dm_controller_config */
    const char *check;       /* "[1,inf)" for numbers, "a|b" choices for enums, NULL */
    const char *alias;       /* enum: an old name of choice 0 that is still accepted, or NULL */
    int role;                /* DM_FIELD_PART: the dm_part_role */
    unsigned flags;
    const char *doc;
} dm_config_field;

/* The table, and its length in *n. */
const dm_config_field *dm_controller_fields(size_t *n);
/* 0, or -1 naming the bad field and its value. Fills D = E when D is 0. */
int dm_controller_config_check(dm_controller_config *cfg, dm_error *err);
/* "gelu" / "none"; parse returns 0 or -1 naming the value. */
const char *dm_output_act_name(dm_output_act a);
int dm_output_act_parse(const char *s, dm_output_act *out, dm_error *err);

#define DM_CONTROLLER_MAX_PARTS 16

typedef struct dm_controller {
    dm_controller_config cfg;
    size_t V, E, D, M, H, L;
    dm_arena params;           /* state_dict, in torch's order */
    dm_arena grads;            /* same layout; frozen entries stay zero */
    /* The model: parts in state_dict order, and the forward's order as
     * indices into parts (chain); chain_out[s] / chain_dout[s] are the
     * activation entries of step s's output and of its gradient. */
    dm_part parts[DM_CONTROLLER_MAX_PARTS];
    int nparts;
    int chain[DM_CONTROLLER_MAX_PARTS], nchain;
    int chain_out[DM_CONTROLLER_MAX_PARTS], chain_dout[DM_CONTROLLER_MAX_PARTS];
    int memory;                /* the memory read part */
    int query_step;            /* chain step whose output is the query */
    int policy, policy_step;   /* the write policy part and its step, or -1 */
    int cell, dropout;         /* the recurrent cell part; the dropout after fc1 */
    int write_q, write_v;      /* fc_query_memory, fc_value_memory parts */
    int training;              /* 1 after create and dm_controller_train */
    dm_rng *rng;               /* dropout draws; &dm_rng_global unless set */

    /* Activations of the last forward, (B,T) = (last_B,last_T) valid rows
     * inside buffers laid out for cap_B x cap_T. */
    dm_arena acts;
    int act_tokens, act_qt, act_vt, act_dlogits;
    size_t cap_B, cap_T;
    size_t last_B, last_T;
    int has_forward;           /* a forward's activations are in acts */
    int has_loss;              /* dm_controller_loss filled the loss gradient */
    int pre_spent;             /* ... over the output layer's pre-activations (GELU) */
    /* Activation blocks replaced by a regrowth while Lua views of them may
     * live (dm_controller_pin_acts); freed with the controller. */
    float **retired;
    int nretired, acts_pinned;
    /* An injected dropout mask for the next training forward (parity
     * tests): {0,1} keep flags (B,T,H), scaled by 1/(1-p) when used. */
    float *pending_mask;       /* (pending_n) or NULL */
    size_t pending_B, pending_T;
    /* The cell's initial state for the following forwards (truncated BPTT
     * over a stream carries the last window's final state): h and, for
     * the LSTM, c, (L,state_B,H) each; state_B = 0: none (zeros). */
    float *state_h, *state_c;
    size_t state_B;
    /* The state the last forward started from (a copy, so that setting
     * the next one before backward changes nothing backward sees). */
    float *fwd_h, *fwd_c;
    size_t fwd_cap;            /* floats of each */
    int fwd_state;             /* the last forward had a state */
    int fwd_training;          /* the last forward ran in training mode (its masks) */
    /* Sums over the processes of a data-parallel run (the write's means,
     * the policy's statistics); fn NULL in one process. */
    dm_reduce reduce;
} dm_controller;

/* Lays out the parameter and activation size tables of cfg for a (B,T)
 * batch into params and acts (either may be NULL), allocating nothing
 * but the tables: what a model would take before it is made. The
 * gradient arena is the size of params. Free the tables with
 * dm_arena_free. */
int dm_controller_sizes(const dm_controller_config *cfg, size_t B, size_t T, dm_arena *params,
                        dm_arena *acts, dm_error *err);

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
/* 1 in training mode (after create and dm_controller_train), 0 in eval. */
int dm_controller_is_training(const dm_controller *c);

/* The model's sizes, what a binding needs to shape and check tensors. */
typedef struct dm_model_dims {
    size_t V, E, D, M, H, L; /* vocab, embedding, memory width, slots, hidden, layers */
} dm_model_dims;
dm_model_dims dm_controller_dims(const dm_controller *c);
/* The validated config the model was made from (D filled in when it was 0). */
const dm_controller_config *dm_controller_get_config(const dm_controller *c);

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
 * adds again), and uses the parameters as they are now. With the GELU on
 * the logits it needs the output layer's pre-activations, which a
 * dm_controller_loss with its gradient replaces: it then fails, naming
 * that (run the forward again). */
int dm_controller_backward(dm_controller *c, const float *dlogits /* (B,T,V) */, size_t B,
                           size_t T, dm_error *err);
void dm_controller_zero_grad(dm_controller *c);
/* The last forward's (B,T): 0, or -1 when there is none. */
int dm_controller_last_batch(const dm_controller *c, size_t *B, size_t *T);
/* Drops the last forward (its activations were computed with parameters
 * that have since been replaced): backward, loss and write refuse. */
void dm_controller_forget_forward(dm_controller *c);

/* The upstream post-step write from the last forward's query and logits
 * (dropout forward's logits in training). No gradient anywhere. Errors:
 * no forward yet, s outside [0,1]. */
int dm_controller_write_memory(dm_controller *c, float s, dm_error *err);

/* Training across processes, each on its shard of a global batch: from now
 * on the post-step write blends the means over every process's rows (the
 * sums of dm_memory_write_sums and their count go through fn), and the
 * reinforce policy's statistics (valid positions, advantage moments, the
 * logged means) are summed the same way, so that both equal one process on
 * the whole batch; the policy's gradient is then scaled for an average
 * over the processes (each process's share times their number), as the
 * other gradients are. fn NULL: one process again. Every process must then
 * call write_memory (or write_memory_empty) and reinforce (or
 * reinforce_empty) at the same points. write_policy content writes where
 * each token read and has no sums to add: its write fails while fn is set. */
void dm_controller_set_reduce(dm_controller *c, dm_reduce_fn fn, void *ctx);
/* The write of a process whose shard of this global batch is empty: it
 * adds nothing to the sums but takes part in their reduction. Errors: no
 * reduce set, s outside [0,1]. */
int dm_controller_write_memory_empty(dm_controller *c, float s, dm_error *err);

/* write_policy = reinforce: REINFORCE for the last forward's write
 * decisions, with rewards log p(target) from its logits; ADDS into the
 * policy's and baseline's gradients (call after forward, before the
 * optimizer step; order against backward does not matter). Positions
 * whose target is ignore_index (< 0: none) are left out. stats may be NULL.
 * Errors: seed policy, no forward, a target out of range. */
int dm_controller_reinforce(dm_controller *c, const int32_t *targets /* (B,T) */,
                            int32_t ignore_index, dm_reinforce_stats *stats, dm_error *err);
/* reinforce for a process whose shard of this global batch is empty (see
 * dm_controller_set_reduce): no gradient, its part of the reduction, the
 * global statistics. Errors: no reduce set, seed policy. */
int dm_controller_reinforce_empty(dm_controller *c, dm_reinforce_stats *stats, dm_error *err);
/* The same with rewards only where reward_targets (B,T) is not
 * ignore_index (writepolicy.h's reward_targets; NULL: every target). */
int dm_controller_reinforce_at(dm_controller *c, const int32_t *targets /* (B,T) */,
                               const int32_t *reward_targets /* (B,T) or NULL */,
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

/* ---- the recurrent state (truncated BPTT) ------------------------------------- */

/* Whether the cell keeps a cell state besides h (LSTM): what
 * dm_controller_set_state's c and dm_controller_final_state's c_n need. */
int dm_controller_has_cell_state(const dm_controller *c);
/* Sets the initial state of every following forward (training and eval):
 * h (L,B,H) and, for an LSTM, c (L,B,H) (NULL: zeros); copied. The state
 * is a constant: backward gives it no gradient, so carrying it from one
 * window to the next truncates backpropagation there. A forward of
 * another batch size B fails. h NULL clears it (zeros again). The last
 * forward keeps the state it started from: setting the next one right
 * after a forward (to its final state) leaves its backward unchanged. */
int dm_controller_set_state(dm_controller *c, const float *h, const float *cs, size_t B,
                            dm_error *err);
/* The batch size of the state set (0: none). */
size_t dm_controller_state_batch(const dm_controller *c);
/* The last forward's final state: h_n (L,B,H) and, for an LSTM, c_n
 * (L,B,H) (c_n may be NULL; a GRU leaves it). -1: no forward. */
int dm_controller_final_state(const dm_controller *c, float *h_n, float *c_n, dm_error *err);

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

/* The parameter arena's entries: how many, entry i's name and shape, its
 * values, its gradient (NULL when it gets none), whether it is a buffer
 * (state, not a parameter: memory.usage_counts), and the index of a name
 * (-1 when absent). */
int dm_controller_num_entries(const dm_controller *c);
const dm_arena_entry *dm_controller_entry_info(const dm_controller *c, int i);
float *dm_controller_entry_value(const dm_controller *c, int i);
float *dm_controller_entry_grad(const dm_controller *c, int i);
int dm_controller_entry_is_buffer(const dm_controller *c, int i);
/* Whether entry i is clipped as a group of its own (DM_ENTRY_OWN_CLIP). */
int dm_controller_entry_own_clip(const dm_controller *c, int i);
int dm_controller_entry_find(const dm_controller *c, const char *name);
/* memory.usage_counts (M). */
float *dm_controller_usage(const dm_controller *c);

/* ---- the loss where the logits live ------------------------------------------ */

/* Cross-entropy of the last forward's logits against targets (B,T)
 * (dm_cross_entropy: mean over positions whose target is not
 * ignore_index) and, when want_grad, its gradient, scaled by scale, kept
 * in the activation arena for dm_controller_backward_loss: no (B,T,V)
 * copy leaves the core. want_grad = 0 (evaluation) skips the gradient's
 * pass over B*T*V. *loss is NaN and *count 0 when every target is ignored
 * (the gradient is then zero). Errors: no forward, a target out of range.
 * The loss and its gradient are one pass over the rows
 * (dm_cross_entropy_pre): with the GELU on the logits the gradient of
 * the output layer's pre-activations replaces them (no (B,T,V) buffer of
 * its own), so a second loss with its gradient on the same forward fails
 * (one without, want_grad = 0, reads only the logits and works).
 * dm_controller_backward_loss uses it, as often as called. */
int dm_controller_loss(dm_controller *c, const int32_t *targets /* (B,T) */, int32_t ignore_index,
                       float scale, int want_grad, double *loss, size_t *count, dm_error *err);
/* dm_controller_backward with the gradient the last dm_controller_loss
 * kept. Errors: no loss since the last forward. */
int dm_controller_backward_loss(dm_controller *c, dm_error *err);
/* From now on a regrowth of the activation arena keeps the old block
 * allocated until the controller is freed, so pointers handed out into it
 * (Lua views of the logits) never dangle; they go stale (the next forward
 * overwrites them) but stay readable. */
void dm_controller_pin_acts(dm_controller *c);

/* ---- the write policy (write_policy = reinforce) ------------------------------ */

/* Whether the model has a write policy part. */
int dm_controller_has_policy(const dm_controller *c);
/* Of the last forward: mean slot usage and write rate over all positions.
 * -1 when there is no policy or no forward yet. */
int dm_controller_write_stats(const dm_controller *c, double *slot_usage, double *write_rate);
/* One sequence of the last forward as the episodic memory saw it: views
 * into that forward's working memory, valid until the next forward. */
typedef struct dm_write_trace {
    size_t T, K;              /* steps, slots */
    int training;             /* the forward sampled its writes (training mode) */
    const int32_t *tokens;    /* (T) the step's input token */
    const float *p_write;     /* (T) the policy's write probability */
    const float *write;       /* (T) the write weight: 0 or 1, or p in soft mode */
    const int32_t *slot;      /* (T) the slot the step wrote, -1 none */
    const float *attention;   /* (T,K) the step's read over the slots, before its own
                               * write; 0 for empty slots, all 0 before any write */
} dm_write_trace;
/* The trace of sequence b (0-based) of the last forward. Errors: no
 * episodic memory (write_policy other than reinforce), no forward yet, b
 * not below the last forward's batch size. */
int dm_controller_write_trace(const dm_controller *c, size_t b, dm_write_trace *tr, dm_error *err);
/* The running advantage scale (for resumable checkpoints), and putting it
 * back. -1 (with a message) when there is no policy or the values are bad. */
int dm_controller_write_state(const dm_controller *c, double *second_moment, int64_t *updates,
                              dm_error *err);
int dm_controller_set_write_state(dm_controller *c, double second_moment, int64_t updates,
                                  dm_error *err);
/* The current curriculum knobs (see dm_controller_set_write_options). */
int dm_controller_write_options(const dm_controller *c, int *soft, double *eta, int *sample_eval,
                                dm_error *err);

#endif
