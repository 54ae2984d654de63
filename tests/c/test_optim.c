/* test_optim.c: optimizers, clip_grad_norm and lr schedulers (optim.h)
 * against PyTorch's own results (tests/fixtures/optim/optim.json, made by
 * tests/fixtures/make_optim.py): SGD with momentum/nesterov/dampening/decay,
 * Adam with L2 decay, AdamW, frozen parameters, the moments and step counts,
 * state save/restore, clipping that clips and that clamps to 1, and the lr
 * sequences of CosineAnnealingLR, StepLR and ReduceLROnPlateau, and a
 * scheduler's state as named numbers, restored with checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/optim.h"
#include "fixture.h"

static json_t *fx;

static int setup(void **state)
{
    fx = fixture_json("tests/fixtures/optim/optim.json");
    return fx ? 0 : -1;
}

static int teardown(void **state)
{
    json_decref(fx);
    return 0;
}

static json_t *get(json_t *o, const char *path)
{
    /* "a.b.c" walk through objects. */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, ".")) {
        o = json_object_get(o, tok);
        if (!o) fail_msg("optim.json: no '%s' in '%s'", tok, path);
    }
    return o;
}

/* Fills n floats from a JSON array (checks its length). */
static void fill(float *dst, json_t *arr, size_t n, const char *what)
{
    if (!json_is_array(arr) || json_array_size(arr) != n)
        fail_msg("optim.json: %s should have %zu values", what, n);
    for (size_t i = 0; i < n; i++) dst[i] = (float)json_number_value(json_array_get(arr, i));
}

static void assert_close(const char *what, const float *got, json_t *ref, size_t n, double tol)
{
    float *r = malloc(n * sizeof(float));
    fill(r, ref, n, what);
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(r[i]));
    if (scale == 0.0) scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - r[i]) <= tol * scale))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got[i], r[i]);
    free(r);
}

/* The fixture's three parameters: w (3,4), b (5), frozen (2, never a grad). */
typedef struct setup3 {
    float w[12], b[5], frozen[2], gw[12], gb[5];
    dm_param_ref refs[3];
} setup3;

static void init3(setup3 *s)
{
    fill(s->w, get(fx, "init.w"), 12, "init.w");
    fill(s->b, get(fx, "init.b"), 5, "init.b");
    fill(s->frozen, get(fx, "init.frozen"), 2, "init.frozen");
    s->refs[0] = (dm_param_ref){"w", s->w, s->gw, 12};
    s->refs[1] = (dm_param_ref){"b", s->b, s->gb, 5};
    s->refs[2] = (dm_param_ref){"frozen", s->frozen, NULL, 2};
}

/* The gradients of a step from the fixture's list `list` ("grads", unit
 * scale, or "grads_small", the same times 1e-4). */
static void set_grads_from(setup3 *s, const char *list, size_t step)
{
    json_t *g = json_array_get(get(fx, list), step);
    fill(s->gw, json_object_get(g, "w"), 12, "grads.w");
    fill(s->gb, json_object_get(g, "b"), 5, "grads.b");
}

static void set_grads(setup3 *s, size_t step) { set_grads_from(s, "grads", step); }

static dm_optim_config config_of(json_t *c)
{
    const char *kind = json_string_value(json_object_get(c, "kind"));
    dm_optim_kind k = strcmp(kind, "sgd") == 0    ? DM_OPTIM_SGD
                      : strcmp(kind, "adam") == 0 ? DM_OPTIM_ADAM
                                                  : DM_OPTIM_ADAMW;
    dm_optim_config cfg = dm_optim_defaults(k);
    json_t *v;
    if ((v = json_object_get(c, "lr"))) cfg.lr = json_number_value(v);
    if ((v = json_object_get(c, "weight_decay"))) cfg.weight_decay = json_number_value(v);
    if ((v = json_object_get(c, "momentum"))) cfg.momentum = json_number_value(v);
    if ((v = json_object_get(c, "dampening"))) cfg.dampening = json_number_value(v);
    if ((v = json_object_get(c, "nesterov"))) cfg.nesterov = json_is_true(v);
    if ((v = json_object_get(c, "eps"))) cfg.eps = json_number_value(v);
    if ((v = json_object_get(c, "betas"))) {
        cfg.beta1 = json_number_value(json_array_get(v, 0));
        cfg.beta2 = json_number_value(json_array_get(v, 1));
    }
    return cfg;
}

static void check_optimizer(const char *name, double tol)
{
    json_t *o = json_object_get(get(fx, "optimizers"), name);
    assert_non_null(o);
    dm_optim_config cfg = config_of(json_object_get(o, "config"));
    setup3 s;
    init3(&s);
    float frozen0[2] = {s.frozen[0], s.frozen[1]};
    dm_optim opt;
    dm_error err;
    assert_int_equal(dm_optim_init(&opt, &cfg, s.refs, 3, &err), 0);
    json_t *after = json_object_get(o, "after");
    json_t *list = json_object_get(o, "grads");
    const char *grads = list ? json_string_value(list) : "grads";
    char what[96];
    for (size_t t = 0; t < json_array_size(after); t++) {
        set_grads_from(&s, grads, t);
        dm_optim_step(&opt);
        json_t *a = json_array_get(after, t);
        snprintf(what, sizeof what, "%s step %zu w", name, t + 1);
        assert_close(what, s.w, json_object_get(a, "w"), 12, tol);
        snprintf(what, sizeof what, "%s step %zu b", name, t + 1);
        assert_close(what, s.b, json_object_get(a, "b"), 5, tol);
        assert_memory_equal(s.frozen, frozen0, sizeof frozen0);
    }
    /* Moments and step counts as torch keeps them. */
    json_t *st = json_object_get(o, "state");
    for (int k = 0; k < dm_optim_num_moments(&opt); k++) {
        const char *mn = dm_optim_moment_name(&opt, k);
        json_t *ref = json_object_get(json_object_get(st, "w"), mn);
        if (!ref || json_is_null(ref)) continue; /* plain SGD keeps no buffer */
        snprintf(what, sizeof what, "%s %s(w)", name, mn);
        assert_close(what, dm_optim_moment(&opt, 0, k), ref, 12, tol);
        snprintf(what, sizeof what, "%s %s(b)", name, mn);
        assert_close(what, dm_optim_moment(&opt, 1, k), json_object_get(json_object_get(st, "b"), mn),
                     5, tol);
    }
    json_t *step = json_object_get(json_object_get(st, "w"), "step");
    if (step) assert_int_equal(opt.steps[0], (int64_t)json_number_value(step));
    assert_int_equal(opt.steps[2], 0);
    dm_optim_free(&opt);
}

static void test_sgd(void **state)
{
    check_optimizer("sgd_nesterov", 1e-6);
    check_optimizer("sgd_dampening", 1e-6);
    check_optimizer("sgd_plain", 1e-6);
}

/* The *_small cases step with 1e-4 gradients, where eps is comparable to
 * sqrt(v): they pin down that eps is added after the bias correction. */
static void test_adam(void **state)
{
    check_optimizer("adam_wd", 1e-6);
    check_optimizer("adam_small", 1e-6);
}

static void test_adamw(void **state)
{
    check_optimizer("adamw", 1e-6);
    check_optimizer("adamw_betas", 1e-6);
    check_optimizer("adamw_small", 1e-6);
}

/* Restoring moments and step counts into a fresh optimizer continues the
 * run bit for bit. */
static void test_state_roundtrip(void **state)
{
    json_t *o = json_object_get(get(fx, "optimizers"), "adamw");
    dm_optim_config cfg = config_of(json_object_get(o, "config"));
    setup3 a, b;
    init3(&a);
    dm_optim oa, ob;
    dm_error err;
    assert_int_equal(dm_optim_init(&oa, &cfg, a.refs, 3, &err), 0);
    for (size_t t = 0; t < 2; t++) set_grads(&a, t), dm_optim_step(&oa);
    /* b: same parameter values, a new optimizer, state copied by name. */
    init3(&b);
    memcpy(b.w, a.w, sizeof a.w), memcpy(b.b, a.b, sizeof a.b);
    dm_param_ref rev[3] = {b.refs[2], b.refs[1], b.refs[0]}; /* order differs */
    assert_int_equal(dm_optim_init(&ob, &cfg, rev, 3, &err), 0);
    for (size_t i = 0; i < oa.n; i++) {
        int64_t j = dm_optim_find(&ob, oa.names[i]);
        assert_true(j >= 0);
        ob.steps[j] = oa.steps[i];
        for (int k = 0; k < dm_optim_num_moments(&oa); k++)
            memcpy(dm_optim_moment(&ob, (size_t)j, k), dm_optim_moment(&oa, i, k),
                   oa.params[i].numel * sizeof(float));
    }
    assert_int_equal(dm_optim_find(&ob, "nope"), -1);
    for (size_t t = 2; t < 5; t++) {
        set_grads(&a, t), set_grads(&b, t);
        dm_optim_step(&oa), dm_optim_step(&ob);
    }
    assert_memory_equal(a.w, b.w, sizeof a.w);
    assert_memory_equal(a.b, b.b, sizeof a.b);
    assert_close("adamw after restore", a.w, json_object_get(json_array_get(get(fx, "optimizers.adamw.after"), 4), "w"), 12, 1e-6);
    /* zero_grad clears grads, skips frozen (NULL) ones. */
    dm_optim_zero_grad(&ob);
    for (int i = 0; i < 12; i++) assert_true(b.gw[i] == 0.0f);
    dm_optim_set_lr(&ob, 0.5);
    assert_true(dm_optim_get_lr(&ob) == 0.5);
    dm_optim_free(&oa);
    dm_optim_free(&ob);
}

static void test_bad_config(void **state)
{
    setup3 s;
    init3(&s);
    dm_optim o;
    dm_error err;
    dm_optim_config c = dm_optim_defaults(DM_OPTIM_SGD);
    c.nesterov = 1;
    assert_int_equal(dm_optim_init(&o, &c, s.refs, 3, &err), -1);
    assert_non_null(strstr(err.msg, "nesterov needs momentum > 0"));
    c = dm_optim_defaults(DM_OPTIM_ADAM);
    c.lr = -1;
    assert_int_equal(dm_optim_init(&o, &c, s.refs, 3, &err), -1);
    assert_string_equal(err.msg, "Adam: lr must be >= 0, got -1");
    c = dm_optim_defaults(DM_OPTIM_ADAMW);
    c.beta2 = 1.0;
    assert_int_equal(dm_optim_init(&o, &c, s.refs, 3, &err), -1);
    assert_non_null(strstr(err.msg, "beta2 must be in [0, 1), got 1"));
    c = dm_optim_defaults(DM_OPTIM_ADAMW);
    dm_param_ref dup[2] = {s.refs[0], s.refs[0]};
    assert_int_equal(dm_optim_init(&o, &c, dup, 2, &err), -1);
    assert_string_equal(err.msg, "AdamW: duplicate parameter name 'w'");
    dm_param_ref nodata[1] = {{"x", NULL, NULL, 3}};
    assert_int_equal(dm_optim_init(&o, &c, nodata, 1, &err), -1);
    assert_non_null(strstr(err.msg, "parameter 1 ('x') has no data"));
    /* An empty list is fine (nothing to do). */
    assert_int_equal(dm_optim_init(&o, &c, NULL, 0, &err), 0);
    dm_optim_step(&o);
    dm_optim_free(&o);
}

/* The step-count setter refuses an index past the list and a negative
 * count in one line, and leaves the state as it was. */
static void test_step_count_setter(void **state)
{
    setup3 s;
    init3(&s);
    dm_optim o;
    dm_error err;
    dm_optim_config c = dm_optim_defaults(DM_OPTIM_ADAM);
    assert_int_equal(dm_optim_init(&o, &c, s.refs, 3, &err), 0);
    assert_int_equal(dm_optim_count(&o), 3);
    assert_int_equal(dm_optim_set_step_count(&o, 1, 7, &err), 0);
    assert_int_equal(dm_optim_step_count(&o, 1), 7);
    assert_int_equal(dm_optim_set_step_count(&o, 3, 1, &err), -1);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(dm_optim_set_step_count(&o, 1, -2, &err), -1);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(dm_optim_step_count(&o, 1), 7);
    assert_int_equal(dm_optim_step_count(&o, 9), 0);
    assert_null(dm_optim_param(&o, 3));
    assert_string_equal(dm_optim_param(&o, 0)->name, s.refs[0].name);
    dm_optim_free(&o);
}

static void test_clip(void **state)
{
    const char *cases[2] = {"clips", "clamped"};
    for (int c = 0; c < 2; c++) {
        json_t *ref = json_object_get(get(fx, "clip"), cases[c]);
        setup3 s;
        init3(&s);
        set_grads(&s, 0);
        double total = dm_clip_grad_norm(s.refs, 3, json_number_value(json_object_get(ref, "max_norm")));
        double want = json_number_value(json_object_get(ref, "total"));
        assert_true(fabs(total - want) <= 1e-6 * want);
        assert_close(cases[c], s.gw, json_object_get(ref, "w"), 12, 1e-6);
        assert_close(cases[c], s.gb, json_object_get(ref, "b"), 5, 1e-6);
    }
    /* A NaN gradient makes everything NaN (torch's default), no crash. */
    float g[2] = {NAN, 1.0f}, p[2] = {0};
    dm_param_ref r = {"x", p, g, 2};
    assert_true(isnan(dm_clip_grad_norm(&r, 1, 1.0)));
    assert_true(isnan(g[1]));
}

static void check_lrs(const char *what, json_t *lrs, const double *got, size_t n)
{
    assert_int_equal(json_array_size(lrs), n);
    for (size_t i = 0; i < n; i++) {
        double want = json_number_value(json_array_get(lrs, i));
        if (!(fabs(got[i] - want) <= 1e-9 * fabs(want)))
            fail_msg("%s epoch %zu: got %.17g, want %.17g", what, i + 1, got[i], want);
    }
}

static void test_cosine(void **state)
{
    json_t *r = get(fx, "schedulers.cosine");
    dm_cosine_lr s, saved;
    dm_error err;
    assert_int_equal(dm_cosine_lr_init(&s, json_number_value(json_object_get(r, "lr0")),
                                       (int64_t)json_number_value(json_object_get(r, "T_max")),
                                       json_number_value(json_object_get(r, "eta_min")), &err), 0);
    json_t *lrs = json_object_get(r, "lrs");
    size_t n = json_array_size(lrs);
    double got[64];
    got[0] = s.lr;
    for (size_t e = 1; e < n; e++) {
        got[e] = dm_cosine_lr_step(&s);
        if (e == 7) saved = s;
    }
    check_lrs("cosine", lrs, got, n);
    /* Restore the state of epoch 7 and continue. */
    s = saved;
    assert_true(dm_cosine_lr_step(&s) == got[8]);
    assert_int_equal(dm_cosine_lr_init(&s, 0.1, 0, 0.0, &err), -1);
    assert_non_null(strstr(err.msg, "T_max must be >= 1, got 0"));
}

static void test_step_lr(void **state)
{
    json_t *r = get(fx, "schedulers.step");
    dm_step_lr s;
    dm_error err;
    assert_int_equal(dm_step_lr_init(&s, json_number_value(json_object_get(r, "lr0")),
                                     (int64_t)json_number_value(json_object_get(r, "step_size")),
                                     json_number_value(json_object_get(r, "gamma")), &err), 0);
    json_t *lrs = json_object_get(r, "lrs");
    size_t n = json_array_size(lrs);
    double got[64];
    got[0] = s.lr;
    for (size_t e = 1; e < n; e++) got[e] = dm_step_lr_step(&s);
    check_lrs("step", lrs, got, n);
    assert_int_equal(dm_step_lr_init(&s, 0.1, 0, 0.5, &err), -1);
}

static void check_plateau(const char *name)
{
    json_t *r = json_object_get(get(fx, "schedulers"), name);
    json_t *o = json_object_get(r, "opts");
    dm_plateau_lr s;
    dm_error err;
    dm_plateau_lr_defaults(&s, json_number_value(json_object_get(r, "lr0")));
    json_t *v;
    if ((v = json_object_get(o, "mode"))) s.mode_max = strcmp(json_string_value(v), "max") == 0;
    if ((v = json_object_get(o, "threshold_mode")))
        s.threshold_abs = strcmp(json_string_value(v), "abs") == 0;
    if ((v = json_object_get(o, "factor"))) s.factor = json_number_value(v);
    if ((v = json_object_get(o, "patience"))) s.patience = (int64_t)json_number_value(v);
    if ((v = json_object_get(o, "threshold"))) s.threshold = json_number_value(v);
    if ((v = json_object_get(o, "cooldown"))) s.cooldown = (int64_t)json_number_value(v);
    if ((v = json_object_get(o, "min_lr"))) s.min_lr = json_number_value(v);
    assert_int_equal(dm_plateau_lr_init(&s, &err), 0);
    json_t *metrics = json_object_get(r, "metrics"), *lrs = json_object_get(r, "lrs");
    size_t n = json_array_size(lrs);
    double got[64];
    got[0] = s.lr;
    for (size_t e = 1; e < n; e++)
        got[e] = dm_plateau_lr_step(&s, json_number_value(json_array_get(metrics, e - 1)));
    check_lrs(name, lrs, got, n);
}

static void test_plateau(void **state)
{
    check_plateau("plateau_default");
    check_plateau("plateau_max_abs");
    dm_plateau_lr s;
    dm_error err;
    dm_plateau_lr_defaults(&s, 0.1);
    assert_true(s.patience == 10 && s.factor == 0.1 && s.threshold == 1e-4 && s.eps == 1e-8);
    s.factor = 1.0;
    assert_int_equal(dm_plateau_lr_init(&s, &err), -1);
    assert_non_null(strstr(err.msg, "factor must be < 1"));
    /* NaN metrics are bad epochs. */
    dm_plateau_lr_defaults(&s, 0.1);
    s.patience = 0;
    assert_int_equal(dm_plateau_lr_init(&s, &err), 0);
    dm_plateau_lr_step(&s, 1.0);
    assert_true(fabs(dm_plateau_lr_step(&s, NAN) - 0.01) < 1e-15);
}

/* A scheduler's state, as the named numbers dm_lr_sched_state lists,
 * restored into a fresh scheduler of the same kind, continues the same lr
 * sequence; the restore refuses what no run could have saved and changes
 * nothing when it does. */
static void sched_roundtrip(dm_lr_sched *a, dm_lr_sched *b, const char *const *names, size_t nn)
{
    const double metrics[] = {3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 1.0, 1.1, 1.2, 1.3};
    double lr_a = dm_lr_sched_lr(a);
    for (int e = 0; e < 4; e++) lr_a = dm_lr_sched_step(a, metrics[e], lr_a);
    dm_sched_value v[DM_SCHED_STATE_MAX];
    size_t n = dm_lr_sched_state(a, v);
    assert_int_equal(n, nn);
    for (size_t i = 0; i < n; i++) assert_string_equal(v[i].name, names[i]);
    dm_error err;
    assert_int_equal(dm_lr_sched_restore(b, v, n, &err), 0);
    assert_true(dm_lr_sched_lr(b) == lr_a);
    double lr_b = lr_a;
    for (int e = 4; e < 10; e++) {
        lr_a = dm_lr_sched_step(a, metrics[e], lr_a);
        lr_b = dm_lr_sched_step(b, metrics[e], lr_b);
        assert_true(lr_a == lr_b);
    }
}

static void expect_refused(dm_lr_sched *s, dm_sched_value bad, const char *msg)
{
    dm_lr_sched before = *s;
    dm_sched_value v[2] = {{"lr", 0.5, 0}, bad}; /* a good value first: it must not stick */
    dm_error err;
    assert_int_equal(dm_lr_sched_restore(s, v, 2, &err), -1);
    if (!strstr(err.msg, msg)) fail_msg("expected '%s' in '%s'", msg, err.msg);
    assert_memory_equal(&before, s, sizeof before);
}

static void test_sched_state(void **state)
{
    dm_error err;
    dm_lr_sched a = {.kind = DM_SCHED_COSINE}, b = {.kind = DM_SCHED_COSINE};
    assert_int_equal(dm_cosine_lr_init(&a.u.cosine, 0.1, 7, 0.001, &err), 0);
    assert_int_equal(dm_cosine_lr_init(&b.u.cosine, 0.3, 2, 0.0, &err), 0);
    sched_roundtrip(&a, &b, (const char *const[]){"base_lr", "eta_min", "T_max", "last_epoch", "lr"}, 5);
    expect_refused(&b, (dm_sched_value){"T_max", 0, 1}, "CosineAnnealingLR: state T_max must be >= 1");
    expect_refused(&b, (dm_sched_value){"last_epoch", -1, 1}, "last_epoch must be a whole number >= 0, got -1");
    expect_refused(&b, (dm_sched_value){"last_epoch", 2.5, 1}, "last_epoch must be a whole number >= 0, got 2.5");
    expect_refused(&b, (dm_sched_value){"lr", NAN, 0}, "state lr must be finite");
    expect_refused(&b, (dm_sched_value){"eta_min", INFINITY, 0}, "state eta_min must be finite");
    expect_refused(&b, (dm_sched_value){"best", 1.0, 0}, "CosineAnnealingLR: state has no value named 'best'");

    dm_lr_sched c = {.kind = DM_SCHED_STEP}, d = {.kind = DM_SCHED_STEP};
    assert_int_equal(dm_step_lr_init(&c.u.step, 0.1, 3, 0.5, &err), 0);
    assert_int_equal(dm_step_lr_init(&d.u.step, 0.2, 1, 0.9, &err), 0);
    sched_roundtrip(&c, &d, (const char *const[]){"base_lr", "gamma", "step_size", "last_epoch", "lr"}, 5);
    expect_refused(&d, (dm_sched_value){"step_size", 0, 1}, "StepLR: state step_size must be >= 1");

    dm_lr_sched p = {.kind = DM_SCHED_PLATEAU}, q = {.kind = DM_SCHED_PLATEAU};
    dm_plateau_lr_defaults(&p.u.plateau, 0.1);
    p.u.plateau.patience = 1;
    assert_int_equal(dm_plateau_lr_init(&p.u.plateau, &err), 0);
    q = p;
    /* A fresh plateau's best is +inf: that must round-trip. */
    dm_sched_value v[DM_SCHED_STATE_MAX];
    size_t n = dm_lr_sched_state(&q, v);
    assert_true(isinf(v[0].value) && v[0].value > 0);
    assert_int_equal(dm_lr_sched_restore(&q, v, n, &err), 0);
    sched_roundtrip(&p, &q, (const char *const[]){"best", "num_bad_epochs", "cooldown_counter", "last_epoch", "lr"}, 5);
    expect_refused(&q, (dm_sched_value){"best", NAN, 0}, "ReduceLROnPlateau: state best must be finite");
    expect_refused(&q, (dm_sched_value){"num_bad_epochs", -3, 1}, "num_bad_epochs must be a whole number");
    expect_refused(&q, (dm_sched_value){"T_max", 3, 1}, "has no value named 'T_max'");
    assert_string_equal(dm_lr_sched_name(DM_SCHED_PLATEAU), "ReduceLROnPlateau");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),          cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_bad_config),   cmocka_unit_test(test_clip),
        cmocka_unit_test(test_step_count_setter),
        cmocka_unit_test(test_cosine),       cmocka_unit_test(test_step_lr),
        cmocka_unit_test(test_plateau),      cmocka_unit_test(test_sched_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
