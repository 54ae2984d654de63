/* part.h: one interface for every piece of a model (a layer, a recurrent
 * cell, the memory read, a write policy), so that the controller is a
 * composition of parts described by data instead of layers wired by hand.
 *
 * A part knows its sizes and its math, never where its memory comes from:
 * `sizes` lays out its parameters and, for a (B,T) batch, its activations
 * as named entries of arenas the caller owns (nothing is allocated there,
 * so the same call answers "how much memory would this model take"); the
 * other hooks find their buffers by entry index in the arenas a dm_part_run
 * hands them. forward overwrites its output; backward ADDS into the input
 * gradient (NULL: none wanted) and into the parameter gradients of entries
 * that are trained. Parameter entries are named "<part name>.<tensor>" (the
 * PyTorch state_dict names, "rnn.weight_ih_l0"), activations the same way
 * ("fc1.pre"), so size tables, checkpoints and error messages all speak
 * the same names.
 *
 * A write policy is a part with one more hook: `update` runs after the loss
 * (REINFORCE reads the rewards from the logits). A policy without forward
 * takes no per-step decision and adds nothing to the chain (blend: only
 * the upstream post-step write). New kinds are made known by
 * one line in parts.def; dm_part_find looks them up by the name a config
 * uses ("gru", "lstm"). */
#ifndef DM_PART_H
#define DM_PART_H

#include "core/arena.h"
#include "core/common.h"
#include "core/rng.h"

#define DM_PART_NAME_MAX 32

/* Activation applied after a linear map. */
typedef enum dm_act_kind { DM_PART_ACT_NONE = 0, DM_PART_ACT_GELU = 1 } dm_act_kind;
/* Initialisation of a linear map: kaiming U(+-sqrt(6/in)) weight and zero
 * bias (the seed's fc layers), or PyTorch's default U(+-1/sqrt(in)) for
 * both (the write projections). */
typedef enum dm_init_kind { DM_PART_INIT_KAIMING = 0, DM_PART_INIT_DEFAULT = 1 } dm_init_kind;

/* Entry flags of a parameter arena (dm_arena_entry.flags). */
enum {
    DM_ENTRY_FROZEN = 1, /* gets no gradient (handed to optimizers as NULL) */
    DM_ENTRY_BUFFER = 2, /* state, not a parameter (memory.usage_counts) */
    DM_ENTRY_OWN_CLIP = 4 /* clipped as a group of its own (a policy's and baseline's,
                             whose gradients dwarf the language model's) */
};

/* What a part is configured with; each kind reads the fields it needs. */
typedef struct dm_part_cfg {
    size_t in, out;     /* row widths: linear in/out, embedding V/E, cell In/H */
    size_t slots;       /* memory M, episodic K */
    size_t layers;      /* recurrent cell L */
    dm_act_kind act;    /* linear */
    dm_init_kind init;  /* linear */
    double p;           /* dropout probability (a cell's: on the input of each layer above the
                           first; an embedding's: of whole rows); policy: initial policy bias */
    int variational;    /* dropout, cell: one mask per sequence, reused at every time step */
    const char *tied;   /* linear: the weight is this parameter entry ("embedding.weight"),
                           (out,in) shaped, not one of its own; NULL: its own */
    int frozen;         /* no parameter of the part is trained */
    int no_bias;        /* linear: weight only */
    int loss_grad;      /* linear with GELU (the output layer): no d_pre buffer; the fused
                           loss forms the pre-activation gradient over pre
                           (dm_linear_part_pre), and backward from a given dout takes
                           a transient one */
    const void *extra;  /* kind-specific (a write policy's dm_reinforce_config) */
} dm_part_cfg;

/* One run of the model over a (B,T) batch: where the part's memory is and
 * what the whole model knows of the run. */
typedef struct dm_part_run {
    dm_arena *params, *grads, *acts;
    size_t B, T;
    int training;
    dm_rng *rng;                  /* dropout and sampling draws */
    const int32_t *tokens;        /* (B,T) the batch's ids (the embedding's input) */
    const float *dropout_keep;    /* (B,T,width) injected {0,1} keep flags, or NULL */
    const float *h0, *c0;         /* (L,B,H) a recurrent cell's initial state, or NULL (zeros) */
} dm_part_run;

typedef struct dm_part dm_part;

/* What a kind is for: configs choose a cell (`cell: lstm`) or a write
 * policy (`write_policy: reinforce`) among the kinds of that role. */
typedef enum dm_part_role { DM_ROLE_LAYER = 0, DM_ROLE_CELL = 1, DM_ROLE_POLICY = 2 } dm_part_role;

typedef struct dm_part_ops {
    const char *kind;
    dm_part_role role;
    const char *alias;  /* an old name configs and checkpoints may still use, or NULL */
    /* Lays out the parameter entries (params may be NULL) and the
     * activation entries for a (B,T) batch (acts may be NULL), and records
     * their index ranges in p. Checks the sizes; allocates nothing. */
    int (*sizes)(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts, dm_error *err);
    /* Draws the initial parameters, in entry order. NULL: nothing to draw. */
    void (*init)(dm_part *p, dm_arena *params, dm_rng *rng);
    int (*forward)(dm_part *p, const dm_part_run *r, const float *in /* (B,T,in) */,
                   float *out /* (B,T,out) */, dm_error *err);
    /* in and out are the forward's; din (B,T,in) is added into, or NULL. */
    int (*backward)(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                    const float *in, const float *out, dm_error *err);
    /* Write policies only (NULL otherwise): after the loss, learn from the
     * last forward's decisions given its logits (B,T,V) and targets (B,T);
     * adds into the policy's gradients. in is the forward's input. */
    int (*update)(dm_part *p, const dm_part_run *r, const float *in, const float *logits,
                  size_t V, const int32_t *targets, int32_t ignore_index, void *stats,
                  dm_error *err);
    /* Write policies only (NULL: the upstream blend of dm_memory_write):
     * the learned memory's post-step write, in place on its keys and
     * values (M,D), from the last forward's R = B*T per-token write rows
     * new_keys, new_values (R,D) and its read attention weights (R,M),
     * with strength s in [0,1]. */
    int (*memory_write)(const dm_part *p, float *keys, float *values, size_t M, size_t D,
                        const float *new_keys, const float *new_values, const float *weights,
                        size_t R, float s, dm_error *err);
    /* Recurrent cells only (NULL otherwise): PyTorch's h_n, the last
     * step's hidden state of every layer, from the last forward, and the
     * LSTM's c_n (c_n NULL: not wanted; a GRU leaves it). */
    void (*final_state)(const dm_part *p, const dm_part_run *r, float *h_n /* (L,B,H) */,
                        float *c_n /* (L,B,H) or NULL */);
    /* Optional private state (a write policy's running statistics). */
    int (*create)(dm_part *p, dm_error *err);
    void (*destroy)(dm_part *p);
} dm_part_ops;

struct dm_part {
    const dm_part_ops *ops;
    char name[DM_PART_NAME_MAX]; /* entry-name prefix; "" for none */
    dm_part_cfg cfg;
    int p0, np;                  /* parameter entries [p0, p0+np) */
    int a0, na;                  /* activation entries [a0, a0+na) */
    void *state;                 /* ops->create's, freed by ops->destroy */
};

/* Sets up p (ops, name, cfg) and runs ops->create. dm_part_free undoes it. */
int dm_part_init(dm_part *p, const dm_part_ops *ops, const char *name, const dm_part_cfg *cfg,
                 dm_error *err);
void dm_part_free(dm_part *p);

/* The registered kind called `kind` (or aliased so) with that role, or
 * NULL. dm_part_kinds writes the names of a role's kinds, then their
 * aliases, separated by ", ", into buf (for error messages) and returns
 * buf. */
const dm_part_ops *dm_part_find(const char *kind, dm_part_role role);
const char *dm_part_kinds(dm_part_role role, char *buf, size_t n);

/* ---- for the parts' own code ---------------------------------------------- */

/* Adds "<p->name>.<what>" to a (NULL a: nothing, returns 0); the first call
 * of a part per arena sets the start of its range. flags: DM_ENTRY_*.
 * Returns the entry's index relative to the part, or -1. */
int dm_part_add(dm_part *p, dm_arena *a, int is_param, const char *what, int ndim,
                int64_t d0, int64_t d1, unsigned flags, dm_error *err);
/* The part's k-th parameter, its gradient (NULL when the entry is frozen),
 * its k-th activation. */
float *dm_part_param(const dm_part *p, const dm_arena *params, int k);
float *dm_part_grad(const dm_part *p, const dm_arena *grads, int k);
float *dm_part_act(const dm_part *p, const dm_arena *acts, int k);

/* The memory read part's post-step write (dm_memory_write of the R rows
 * qt, vt into its keys and values); nothing for a bypassed (frozen)
 * memory. */
int dm_memory_part_write(const dm_part *p, dm_arena *params, const float *qt /* (R,D) */,
                         const float *vt /* (R,D) */, size_t R, float s, dm_error *err);

/* The linear part's pre-activations (its GELU's input, (B,T,out)), or NULL
 * when it has no activation. */
float *dm_linear_part_pre(const dm_part *p, const dm_arena *acts);
/* The linear part's backward from the gradient of its pre-activations
 * (dpre (B,T,out), as dm_cross_entropy_pre forms it): adds into the weight
 * and bias gradients and into din (B,T,in) unless NULL. */
void dm_linear_part_backward_pre(dm_part *p, const dm_part_run *r, const float *dpre,
                                 float *din, const float *in);

/* The registered kinds (parts.def): one line each. */
#define DM_PART(name, ops) extern const dm_part_ops ops;
#include "core/parts.def"
#undef DM_PART

#endif
