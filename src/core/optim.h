/* optim.h: optimizers, gradient clipping and learning-rate schedulers.
 *
 * The optimizers (SGD, Adam, AdamW) follow PyTorch 1.13's single-tensor
 * code paths formula for formula, so that a parity test against torch holds
 * to float32 rounding: per-element math in float32, the per-step scalars
 * (bias corrections, step size) computed in double and then used as float.
 * They work over a list of parameters given as (param, grad, numel)
 * pointers, so any arena can be optimised: the controller's, one layer's,
 * the standalone memory's. A NULL grad marks a frozen parameter (no update,
 * no decay, its step count does not advance), like a tensor whose .grad is
 * None. The moments live in one dm_arena named "<param>.exp_avg",
 * "<param>.exp_avg_sq" (Adam/AdamW) or "<param>.momentum_buffer" (SGD), so
 * a checkpoint can write it as it writes parameters; step counts are kept
 * per parameter. Gradient accumulation is the caller's business: just do not
 * zero gradients between backward calls.
 *
 * The schedulers are small state structs with pure step functions; the Lua
 * binding copies their lr into the optimizer. */
#ifndef DM_OPTIM_H
#define DM_OPTIM_H

#include "core/arena.h"
#include "core/common.h"

/* One parameter tensor, flattened. name may be NULL ("p<i>" is used). The
 * optimizer copies the name; param/grad must stay valid while it is used. */
typedef struct dm_param_ref {
    const char *name;
    float *param; /* (numel) */
    float *grad;  /* (numel) or NULL: frozen */
    size_t numel;
} dm_param_ref;

typedef enum dm_optim_kind { DM_OPTIM_SGD = 0, DM_OPTIM_ADAM = 1, DM_OPTIM_ADAMW = 2 } dm_optim_kind;

typedef struct dm_optim_config {
    dm_optim_kind kind;
    double lr;
    double weight_decay; /* SGD/Adam: L2 added to grad; AdamW: p *= 1 - lr*wd */
    /* SGD */
    double momentum, dampening;
    int nesterov;        /* needs momentum > 0 and dampening = 0 */
    /* Adam / AdamW */
    double beta1, beta2, eps;
} dm_optim_config;

/* PyTorch's defaults for a kind: SGD lr 1e-3 (torch requires lr; we pick
 * 1e-3), momentum 0, dampening 0, nesterov 0, wd 0; Adam lr 1e-3, betas
 * (0.9, 0.999), eps 1e-8, wd 0; AdamW the same with wd 1e-2. */
dm_optim_config dm_optim_defaults(dm_optim_kind kind);

typedef struct dm_optim {
    dm_optim_config cfg;
    size_t n;               /* number of parameters */
    dm_param_ref *params;   /* (n) with names owned by the optimizer */
    char **names;           /* (n) */
    int64_t *steps;         /* (n) steps taken by each parameter */
    dm_arena state;         /* moments: n entries (SGD) or 2n (Adam: exp_avg
                               of param i at entry 2i, exp_avg_sq at 2i+1) */
} dm_optim;

/* Copies the list, lays out and zeroes the moments. Errors: lr < 0 or NaN,
 * momentum/dampening/weight_decay < 0, betas outside [0,1), eps < 0,
 * nesterov without momentum or with dampening, a NULL param, duplicate
 * names, out of memory. On failure *o is left freed. */
int dm_optim_init(dm_optim *o, const dm_optim_config *cfg, const dm_param_ref *params,
                  size_t n, dm_error *err);
void dm_optim_free(dm_optim *o);

/* One step over every parameter whose grad is not NULL. */
void dm_optim_step(dm_optim *o);
/* grads <- 0 for every parameter with a grad. */
void dm_optim_zero_grad(dm_optim *o);

void dm_optim_set_lr(dm_optim *o, double lr);
double dm_optim_get_lr(const dm_optim *o);

/* Moments for checkpoints: number of moment buffers per parameter (1 for
 * SGD, 2 for Adam/AdamW), their names ("momentum_buffer" or "exp_avg",
 * "exp_avg_sq") and a pointer to buffer k of parameter i ((numel) floats,
 * read/write). A momentum buffer only takes part once steps[i] > 0, as
 * PyTorch creates it on the first step. */
int dm_optim_num_moments(const dm_optim *o);
const char *dm_optim_moment_name(const dm_optim *o, int k);
float *dm_optim_moment(const dm_optim *o, size_t i, int k);
/* Index of the parameter with this name, or -1. */
int64_t dm_optim_find(const dm_optim *o, const char *name);

/* What a binding reads: the number of parameters, the config the optimizer
 * was made from (lr as last set), parameter i as given to init (its name
 * the optimizer's copy, "p<i>" when none was given; NULL when i >= count)
 * and the steps parameter i has taken (0 when i >= count). The pointers
 * stay valid while o lives. */
size_t dm_optim_count(const dm_optim *o);
const dm_optim_config *dm_optim_get_config(const dm_optim *o);
const dm_param_ref *dm_optim_param(const dm_optim *o, size_t i);
int64_t dm_optim_step_count(const dm_optim *o, size_t i);
/* Sets parameter i's step count, as a checkpoint restores it. Errors: i out
 * of range, steps < 0; nothing changes then. */
int dm_optim_set_step_count(dm_optim *o, size_t i, int64_t steps, dm_error *err);

/* PyTorch's clip_grad_norm_: total = 2-norm of all gradients together
 * (computed in double; NULL grads skipped), coef = min(1, max_norm /
 * (total + 1e-6)), every gradient multiplied by (float)coef even when coef
 * is 1. A non-finite total gives a non-finite coef, as torch's default
 * (error_if_nonfinite=False) does. Returns total. */
double dm_clip_grad_norm(const dm_param_ref *params, size_t n, double max_norm);

/* ---- schedulers --------------------------------------------------------
 * Each keeps last_epoch (the number of step() calls so far, starting at 0
 * for the lr of the first epoch) and the current lr; the struct is its
 * whole state, so saving and restoring it is a copy. */

/* CosineAnnealingLR, closed form:
 *   lr(e) = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2
 * (periodic past T_max, like torch's recursive form, to ~1e-15). */
typedef struct dm_cosine_lr {
    double base_lr, eta_min;
    int64_t T_max;
    int64_t last_epoch;
    double lr;
} dm_cosine_lr;
/* Errors: T_max < 1. */
int dm_cosine_lr_init(dm_cosine_lr *s, double base_lr, int64_t T_max, double eta_min,
                      dm_error *err);
double dm_cosine_lr_at(const dm_cosine_lr *s, int64_t epoch);
/* last_epoch += 1; returns the new lr. */
double dm_cosine_lr_step(dm_cosine_lr *s);

/* StepLR: lr(e) = base_lr * gamma^floor(e / step_size). */
typedef struct dm_step_lr {
    double base_lr, gamma;
    int64_t step_size;
    int64_t last_epoch;
    double lr;
} dm_step_lr;
/* Errors: step_size < 1. */
int dm_step_lr_init(dm_step_lr *s, double base_lr, int64_t step_size, double gamma,
                    dm_error *err);
double dm_step_lr_step(dm_step_lr *s);

/* ReduceLROnPlateau with PyTorch's defaults and rules:
 *   better(a) = mode min, rel: a < best*(1-threshold); abs: a < best - threshold
 *               mode max, rel: a > best*(1+threshold); abs: a > best + threshold
 *   on each step(metric): better -> best = metric, bad = 0; else bad += 1;
 *   in cooldown -> cooldown_counter -= 1, bad = 0;
 *   bad > patience -> lr = max(lr*factor, min_lr) if the change > eps,
 *                     cooldown_counter = cooldown, bad = 0. */
typedef struct dm_plateau_lr {
    int mode_max;          /* 0: min (default), 1: max */
    int threshold_abs;     /* 0: rel (default), 1: abs */
    double factor;         /* 0.1; must be < 1 */
    int64_t patience;      /* 10 */
    double threshold;      /* 1e-4 */
    int64_t cooldown;      /* 0 */
    double min_lr;         /* 0 */
    double eps;            /* 1e-8 */
    /* state */
    double best;           /* +inf (min) or -inf (max) at start */
    int64_t num_bad_epochs;
    int64_t cooldown_counter;
    int64_t last_epoch;
    double lr;
} dm_plateau_lr;
/* Fills the defaults above and lr = base_lr. */
void dm_plateau_lr_defaults(dm_plateau_lr *s, double base_lr);
/* Checks the options after the caller changed them (factor >= 1, negative
 * patience/cooldown/threshold/min_lr/eps are errors) and resets the state. */
int dm_plateau_lr_init(dm_plateau_lr *s, dm_error *err);
/* Feeds one metric; returns the lr to use from now on. A NaN metric is
 * never better (counts as a bad epoch), as in torch. */
double dm_plateau_lr_step(dm_plateau_lr *s, double metric);

/* ---- one scheduler of any kind ------------------------------------------
 * What a caller that saves, restores and steps schedulers holds: the kind
 * and its struct. Its resumable state is a short list of named numbers
 * (the names PyTorch's state_dict uses), so a binding or a checkpoint never
 * reads the structs' fields: dm_lr_sched_state lists them, and
 * dm_lr_sched_restore puts them back after checking each one. */
typedef enum dm_lr_sched_kind { DM_SCHED_COSINE, DM_SCHED_STEP, DM_SCHED_PLATEAU } dm_lr_sched_kind;

typedef struct dm_lr_sched {
    dm_lr_sched_kind kind;
    union {
        dm_cosine_lr cosine;
        dm_step_lr step;
        dm_plateau_lr plateau;
    } u;
} dm_lr_sched;

/* One named number of a scheduler's state; `integer` marks a count. */
typedef struct dm_sched_value {
    const char *name;
    double value;
    int integer;
} dm_sched_value;

#define DM_SCHED_STATE_MAX 8

/* "CosineAnnealingLR", "StepLR", "ReduceLROnPlateau". */
const char *dm_lr_sched_name(dm_lr_sched_kind kind);
/* The lr the scheduler holds now. */
double dm_lr_sched_lr(const dm_lr_sched *s);
/* One epoch: cosine and step ignore metric; plateau reduces current_lr
 * (the optimizer's, as torch does) on the metric. Returns the new lr. */
double dm_lr_sched_step(dm_lr_sched *s, double metric, double current_lr);
/* Fills out[] with the resumable state; returns how many (<= DM_SCHED_STATE_MAX). */
size_t dm_lr_sched_state(const dm_lr_sched *s, dm_sched_value out[DM_SCHED_STATE_MAX]);
/* Restores the named values (any subset of what dm_lr_sched_state lists).
 * Errors, with nothing changed: a name this kind does not have, a count
 * that is not a whole number >= 0, a non-finite lr or rate, T_max or
 * step_size < 1. */
int dm_lr_sched_restore(dm_lr_sched *s, const dm_sched_value *vals, size_t n, dm_error *err);

#endif
