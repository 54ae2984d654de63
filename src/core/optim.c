/* optim.c: SGD, Adam, AdamW, clip_grad_norm and the lr schedulers
 * (optim.h). Per-element updates are written in the same order of float32
 * operations as PyTorch 1.13's _single_tensor_* functions, with every Python
 * float scalar rounded to float once, as torch does when it multiplies a
 * float32 tensor by a Python number. */
#include "core/optim.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dm_optim_config dm_optim_defaults(dm_optim_kind kind)
{
    dm_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = kind == DM_OPTIM_ADAMW ? 1e-2 : 0.0;
    return c;
}

static const char *kind_name(dm_optim_kind k)
{
    return k == DM_OPTIM_SGD ? "SGD" : k == DM_OPTIM_ADAM ? "Adam" : "AdamW";
}

static int check_config(const dm_optim_config *c, dm_error *err)
{
    const char *who = kind_name(c->kind);
    if (c->kind != DM_OPTIM_SGD && c->kind != DM_OPTIM_ADAM && c->kind != DM_OPTIM_ADAMW)
        return dm_fail(err, "optim: unknown optimizer kind %d", (int)c->kind);
    if (!(c->lr >= 0.0)) return dm_fail(err, "%s: lr must be >= 0, got %g", who, c->lr);
    if (!(c->weight_decay >= 0.0))
        return dm_fail(err, "%s: weight_decay must be >= 0, got %g", who, c->weight_decay);
    if (c->kind == DM_OPTIM_SGD) {
        if (!(c->momentum >= 0.0))
            return dm_fail(err, "SGD: momentum must be >= 0, got %g", c->momentum);
        if (!(c->dampening >= 0.0))
            return dm_fail(err, "SGD: dampening must be >= 0, got %g", c->dampening);
        if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0))
            return dm_fail(err, "SGD: nesterov needs momentum > 0 and dampening = 0 (got momentum "
                                "%g, dampening %g)", c->momentum, c->dampening);
    } else {
        if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
            return dm_fail(err, "%s: beta1 must be in [0, 1), got %g", who, c->beta1);
        if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
            return dm_fail(err, "%s: beta2 must be in [0, 1), got %g", who, c->beta2);
        if (!(c->eps >= 0.0)) return dm_fail(err, "%s: eps must be >= 0, got %g", who, c->eps);
    }
    return 0;
}

int dm_optim_num_moments(const dm_optim *o) { return o->cfg.kind == DM_OPTIM_SGD ? 1 : 2; }

const char *dm_optim_moment_name(const dm_optim *o, int k)
{
    if (o->cfg.kind == DM_OPTIM_SGD) return k == 0 ? "momentum_buffer" : NULL;
    return k == 0 ? "exp_avg" : k == 1 ? "exp_avg_sq" : NULL;
}

void dm_optim_free(dm_optim *o)
{
    if (o->names)
        for (size_t i = 0; i < o->n; i++) free(o->names[i]);
    free(o->names);
    free(o->params);
    free(o->steps);
    dm_arena_free(&o->state);
    memset(o, 0, sizeof *o);
}

int dm_optim_init(dm_optim *o, const dm_optim_config *cfg, const dm_param_ref *params, size_t n,
                  dm_error *err)
{
    memset(o, 0, sizeof *o);
    dm_arena_init(&o->state);
    if (check_config(cfg, err) != 0) return -1;
    o->cfg = *cfg;
    const char *who = kind_name(cfg->kind);
    o->params = calloc(n ? n : 1, sizeof *o->params);
    o->names = calloc(n ? n : 1, sizeof *o->names);
    o->steps = calloc(n ? n : 1, sizeof *o->steps);
    if (!o->params || !o->names || !o->steps) {
        dm_fail(err, "%s: out of memory for %zu parameters", who, n);
        goto fail;
    }
    o->n = n;
    int nmom = dm_optim_num_moments(o);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        const char *name = params[i].name;
        if (!name) {
            snprintf(buf, sizeof buf, "p%zu", i);
            name = buf;
        }
        if (!params[i].param) {
            dm_fail(err, "%s: parameter %zu ('%s') has no data", who, i + 1, name);
            goto fail;
        }
        o->names[i] = strdup(name);
        if (!o->names[i]) {
            dm_fail(err, "%s: out of memory", who);
            goto fail;
        }
        o->params[i] = params[i];
        o->params[i].name = o->names[i];
        for (int k = 0; k < nmom; k++) {
            char ename[DM_ARENA_NAME_MAX + 32];
            snprintf(ename, sizeof ename, "%s.%s", name, dm_optim_moment_name(o, k));
            int64_t shape[1] = {(int64_t)params[i].numel};
            if (dm_arena_add(&o->state, ename, 1, shape, err) < 0) {
                if (k == 0 && dm_arena_find(&o->state, ename) >= 0)
                    dm_fail(err, "%s: duplicate parameter name '%s'", who, name);
                goto fail;
            }
        }
    }
    if (dm_arena_alloc(&o->state, err) != 0) goto fail;
    return 0;
fail:
    dm_optim_free(o);
    return -1;
}

float *dm_optim_moment(const dm_optim *o, size_t i, int k)
{
    return dm_arena_ptr(&o->state, (int)(i * (size_t)dm_optim_num_moments(o) + (size_t)k));
}

int64_t dm_optim_find(const dm_optim *o, const char *name)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->names[i], name) == 0) return (int64_t)i;
    return -1;
}

size_t dm_optim_count(const dm_optim *o) { return o->n; }
const dm_optim_config *dm_optim_get_config(const dm_optim *o) { return &o->cfg; }
const dm_param_ref *dm_optim_param(const dm_optim *o, size_t i) { return i < o->n ? &o->params[i] : NULL; }
int64_t dm_optim_step_count(const dm_optim *o, size_t i) { return i < o->n ? o->steps[i] : 0; }

int dm_optim_set_step_count(dm_optim *o, size_t i, int64_t steps, dm_error *err)
{
    if (i >= o->n)
        return dm_fail(err, "%s: no parameter %zu (it has %zu)", kind_name(o->cfg.kind), i + 1, o->n);
    if (steps < 0)
        return dm_fail(err, "%s: step count of '%s' must be >= 0, got %" PRId64, kind_name(o->cfg.kind),
                       o->names[i], steps);
    o->steps[i] = steps;
    return 0;
}

void dm_optim_set_lr(dm_optim *o, double lr) { o->cfg.lr = lr; }
double dm_optim_get_lr(const dm_optim *o) { return o->cfg.lr; }

static void sgd_one(dm_optim *o, size_t i)
{
    const dm_optim_config *c = &o->cfg;
    float *p = o->params[i].param, *g = o->params[i].grad, *buf = dm_optim_moment(o, i, 0);
    size_t n = o->params[i].numel;
    const float wd = (float)c->weight_decay, mom = (float)c->momentum;
    const float keep = (float)(1.0 - c->dampening), neg_lr = (float)(-c->lr);
    const int first = o->steps[i] == 0;
    for (size_t j = 0; j < n; j++) {
        float d = g[j];
        if (c->weight_decay != 0.0) d = d + wd * p[j];
        if (c->momentum != 0.0) {
            float b = first ? d : buf[j] * mom + keep * d;
            buf[j] = b;
            d = c->nesterov ? d + mom * b : b;
        }
        p[j] = p[j] + neg_lr * d;
    }
}

static void adam_one(dm_optim *o, size_t i)
{
    const dm_optim_config *c = &o->cfg;
    float *p = o->params[i].param, *g = o->params[i].grad;
    float *m = dm_optim_moment(o, i, 0), *v = dm_optim_moment(o, i, 1);
    size_t n = o->params[i].numel;
    const int64_t t = o->steps[i] + 1;
    const double bc1 = 1.0 - pow(c->beta1, (double)t);
    const double bc2 = 1.0 - pow(c->beta2, (double)t);
    const float neg_step = (float)(-(c->lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)c->beta1, b2 = (float)c->beta2;
    const float a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
    const float eps = (float)c->eps;
    const int decoupled = c->kind == DM_OPTIM_ADAMW;
    const float wd = (float)c->weight_decay;
    const float shrink = (float)(1.0 - c->lr * c->weight_decay);
    for (size_t j = 0; j < n; j++) {
        float gj = g[j];
        if (decoupled)
            p[j] = p[j] * shrink;
        else if (c->weight_decay != 0.0)
            gj = gj + wd * p[j];
        m[j] = m[j] * b1 + a1 * gj;
        v[j] = v[j] * b2 + a2 * gj * gj;
        float denom = sqrtf(v[j]) / bc2_sqrt + eps;
        p[j] = p[j] + neg_step * m[j] / denom;
    }
}

void dm_optim_step(dm_optim *o)
{
    for (size_t i = 0; i < o->n; i++) {
        if (!o->params[i].grad) continue;
        if (o->cfg.kind == DM_OPTIM_SGD)
            sgd_one(o, i);
        else
            adam_one(o, i);
        o->steps[i]++;
    }
}

void dm_optim_zero_grad(dm_optim *o)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->params[i].grad) memset(o->params[i].grad, 0, o->params[i].numel * sizeof(float));
}

double dm_clip_grad_norm(const dm_param_ref *params, size_t n, double max_norm)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *g = params[i].grad;
        if (!g) continue;
        for (size_t j = 0; j < params[i].numel; j++) ss += (double)g[j] * g[j];
    }
    double total = sqrt(ss);
    double coef = max_norm / (total + 1e-6);
    if (coef > 1.0) coef = 1.0; /* NaN stays NaN, as torch.clamp leaves it */
    float fc = (float)coef;
    for (size_t i = 0; i < n; i++) {
        float *g = params[i].grad;
        if (!g) continue;
        for (size_t j = 0; j < params[i].numel; j++) g[j] *= fc;
    }
    return total;
}

/* ---- schedulers -------------------------------------------------------- */

int dm_cosine_lr_init(dm_cosine_lr *s, double base_lr, int64_t T_max, double eta_min,
                      dm_error *err)
{
    if (T_max < 1) return dm_fail(err, "CosineAnnealingLR: T_max must be >= 1, got %lld", (long long)T_max);
    s->base_lr = base_lr;
    s->eta_min = eta_min;
    s->T_max = T_max;
    s->last_epoch = 0;
    s->lr = base_lr;
    return 0;
}

double dm_cosine_lr_at(const dm_cosine_lr *s, int64_t epoch)
{
    /* Reduce the angle modulo the period first so a long run loses nothing
     * to a huge argument of cos. */
    int64_t e = epoch % (2 * s->T_max);
    if (e < 0) e += 2 * s->T_max;
    return s->eta_min +
           (s->base_lr - s->eta_min) * (1.0 + cos(M_PI * (double)e / (double)s->T_max)) / 2.0;
}

double dm_cosine_lr_step(dm_cosine_lr *s)
{
    s->last_epoch++;
    s->lr = dm_cosine_lr_at(s, s->last_epoch);
    return s->lr;
}

int dm_step_lr_init(dm_step_lr *s, double base_lr, int64_t step_size, double gamma, dm_error *err)
{
    if (step_size < 1)
        return dm_fail(err, "StepLR: step_size must be >= 1, got %lld", (long long)step_size);
    s->base_lr = base_lr;
    s->gamma = gamma;
    s->step_size = step_size;
    s->last_epoch = 0;
    s->lr = base_lr;
    return 0;
}

double dm_step_lr_step(dm_step_lr *s)
{
    s->last_epoch++;
    /* torch multiplies the current lr by gamma at each boundary; repeated
     * products agree with pow to the last bit or two. */
    if (s->last_epoch % s->step_size == 0) s->lr *= s->gamma;
    return s->lr;
}

void dm_plateau_lr_defaults(dm_plateau_lr *s, double base_lr)
{
    memset(s, 0, sizeof *s);
    s->factor = 0.1;
    s->patience = 10;
    s->threshold = 1e-4;
    s->cooldown = 0;
    s->min_lr = 0.0;
    s->eps = 1e-8;
    s->lr = base_lr;
    s->best = INFINITY;
}

int dm_plateau_lr_init(dm_plateau_lr *s, dm_error *err)
{
    if (!(s->factor < 1.0)) return dm_fail(err, "ReduceLROnPlateau: factor must be < 1, got %g", s->factor);
    if (s->patience < 0)
        return dm_fail(err, "ReduceLROnPlateau: patience must be >= 0, got %lld", (long long)s->patience);
    if (s->cooldown < 0)
        return dm_fail(err, "ReduceLROnPlateau: cooldown must be >= 0, got %lld", (long long)s->cooldown);
    if (!(s->threshold >= 0.0))
        return dm_fail(err, "ReduceLROnPlateau: threshold must be >= 0, got %g", s->threshold);
    if (!(s->min_lr >= 0.0))
        return dm_fail(err, "ReduceLROnPlateau: min_lr must be >= 0, got %g", s->min_lr);
    if (!(s->eps >= 0.0)) return dm_fail(err, "ReduceLROnPlateau: eps must be >= 0, got %g", s->eps);
    s->best = s->mode_max ? -INFINITY : INFINITY;
    s->num_bad_epochs = 0;
    s->cooldown_counter = 0;
    s->last_epoch = 0;
    return 0;
}

static int plateau_better(const dm_plateau_lr *s, double a)
{
    if (!s->mode_max)
        return s->threshold_abs ? a < s->best - s->threshold : a < s->best * (1.0 - s->threshold);
    return s->threshold_abs ? a > s->best + s->threshold : a > s->best * (s->threshold + 1.0);
}

double dm_plateau_lr_step(dm_plateau_lr *s, double metric)
{
    s->last_epoch++;
    if (plateau_better(s, metric)) {
        s->best = metric;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) {
        s->cooldown_counter--;
        s->num_bad_epochs = 0;
    }
    if (s->num_bad_epochs > s->patience) {
        double new_lr = s->lr * s->factor;
        if (new_lr < s->min_lr) new_lr = s->min_lr;
        if (s->lr - new_lr > s->eps) s->lr = new_lr;
        s->cooldown_counter = s->cooldown;
        s->num_bad_epochs = 0;
    }
    return s->lr;
}

/* ---- one scheduler of any kind -------------------------------------------- */

const char *dm_lr_sched_name(dm_lr_sched_kind kind)
{
    return kind == DM_SCHED_COSINE ? "CosineAnnealingLR"
           : kind == DM_SCHED_STEP ? "StepLR"
                                   : "ReduceLROnPlateau";
}

double dm_lr_sched_lr(const dm_lr_sched *s)
{
    return s->kind == DM_SCHED_COSINE ? s->u.cosine.lr
           : s->kind == DM_SCHED_STEP ? s->u.step.lr
                                      : s->u.plateau.lr;
}

double dm_lr_sched_step(dm_lr_sched *s, double metric, double current_lr)
{
    if (s->kind == DM_SCHED_COSINE) return dm_cosine_lr_step(&s->u.cosine);
    if (s->kind == DM_SCHED_STEP) return dm_step_lr_step(&s->u.step);
    s->u.plateau.lr = current_lr;
    return dm_plateau_lr_step(&s->u.plateau, metric);
}

/* Where each named state value lives in the kind's struct: the one table
 * both listing and restoring read, so the two cannot drift apart. */
typedef struct sched_slot {
    const char *name;
    int integer;
    double *num;
    int64_t *count;
} sched_slot;

static size_t sched_slots(dm_lr_sched *s, sched_slot out[DM_SCHED_STATE_MAX])
{
    size_t n = 0;
#define NUM(nm, field) (out[n++] = (sched_slot){nm, 0, &(field), NULL})
#define CNT(nm, field) (out[n++] = (sched_slot){nm, 1, NULL, &(field)})
    if (s->kind == DM_SCHED_COSINE) {
        dm_cosine_lr *c = &s->u.cosine;
        NUM("base_lr", c->base_lr), NUM("eta_min", c->eta_min), CNT("T_max", c->T_max);
        CNT("last_epoch", c->last_epoch), NUM("lr", c->lr);
    } else if (s->kind == DM_SCHED_STEP) {
        dm_step_lr *c = &s->u.step;
        NUM("base_lr", c->base_lr), NUM("gamma", c->gamma), CNT("step_size", c->step_size);
        CNT("last_epoch", c->last_epoch), NUM("lr", c->lr);
    } else {
        dm_plateau_lr *p = &s->u.plateau;
        NUM("best", p->best), CNT("num_bad_epochs", p->num_bad_epochs);
        CNT("cooldown_counter", p->cooldown_counter), CNT("last_epoch", p->last_epoch);
        NUM("lr", p->lr);
    }
#undef NUM
#undef CNT
    return n;
}

size_t dm_lr_sched_state(const dm_lr_sched *s, dm_sched_value out[DM_SCHED_STATE_MAX])
{
    sched_slot slot[DM_SCHED_STATE_MAX];
    size_t n = sched_slots((dm_lr_sched *)s, slot);
    for (size_t i = 0; i < n; i++)
        out[i] = (dm_sched_value){slot[i].name,
                                  slot[i].integer ? (double)*slot[i].count : *slot[i].num,
                                  slot[i].integer};
    return n;
}

int dm_lr_sched_restore(dm_lr_sched *s, const dm_sched_value *vals, size_t n, dm_error *err)
{
    const char *kind = dm_lr_sched_name(s->kind);
    dm_lr_sched next = *s;
    sched_slot slot[DM_SCHED_STATE_MAX];
    size_t ns = sched_slots(&next, slot);
    for (size_t i = 0; i < n; i++) {
        const dm_sched_value *v = &vals[i];
        size_t j = 0;
        while (j < ns && strcmp(slot[j].name, v->name) != 0) j++;
        if (j == ns) return dm_fail(err, "%s: state has no value named '%s'", kind, v->name);
        if (slot[j].integer) {
            /* 2^53: every count below it is a double exactly. */
            if (!(v->value >= 0.0 && v->value <= 9007199254740992.0) || v->value != floor(v->value))
                return dm_fail(err, "%s: state %s must be a whole number >= 0, got %g", kind,
                               v->name, v->value);
            *slot[j].count = (int64_t)v->value;
        } else {
            /* best starts at +-inf (nothing seen yet); every other value is a rate. */
            if (isnan(v->value) || (isinf(v->value) && strcmp(v->name, "best") != 0))
                return dm_fail(err, "%s: state %s must be finite, got %g", kind, v->name, v->value);
            *slot[j].num = v->value;
        }
    }
    if (next.kind == DM_SCHED_COSINE && next.u.cosine.T_max < 1)
        return dm_fail(err, "%s: state T_max must be >= 1", kind);
    if (next.kind == DM_SCHED_STEP && next.u.step.step_size < 1)
        return dm_fail(err, "%s: state step_size must be >= 1", kind);
    *s = next;
    return 0;
}
