/* test_controller.c: the whole DRLMemNet controller (core/controller.h)
 * against PyTorch, on the golden batches of tests/fixtures (golden_1234:
 * V=20 E=D=8 M=6 H=12 L=2 B=3 T=5; golden_7: V=50 E=16 D=12 M=32 H=24 L=3
 * B=4 T=7) and on three consecutive upstream training steps
 * (tests/fixtures/steps, made by make_steps.py).
 *
 * Checked: logits, both losses, usage counts after the forward, every
 * gradient of both losses (frozen tensors: no gradient at all), the memory
 * write, the eval forward, a full training step (forward, loss_with_pad /
 * loss_ignore_pad, zero_grad + backward, clip_grad_norm(1.0), AdamW(lr
 * 0.01, wd 1e-4), write_memory(0.1)) against the whole state_dict, three
 * consecutive steps with one optimizer, activation arena reuse, and the
 * error paths.
 *
 * Tolerances. Activations, losses, gradients and the memory: max |ours -
 * torch| <= 1e-5 * max |torch| over each tensor (float32 agrees with
 * float64 to ~3e-7 relative on logits, ~6e-7 on gradients). Parameters
 * that AdamW updated: the update is about lr = 1e-2 while weight decay moves
 * a parameter by only lr*wd*|p| = 1e-6 |p|, so a relative-to-scale test
 * would not notice missing decay. They are compared element by element to
 * about one float32 ulp of p per step (1e-8 + 1e-7 |p|, growing by half of
 * that with each further step), and the test checks that this does see the
 * decay: torch's result with the decay undone must fall outside it for 90%
 * of the elements with |p| >= 0.05. That holds when our optimizer gets
 * torch's gradients (second run of each step test). With our own gradients
 * (first run) an element whose gradient is near zero may move further,
 * because Adam divides by the gradient's RMS: the tolerance there adds the
 * spread of the update that the 1e-5 gradient tolerance allows (see
 * adam_spread), computed by replaying torch's AdamW in double. */
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

#include "core/controller.h"
#include "core/nn.h"
#include "core/optim.h"
#include "fixture.h"

#define RTOL 1e-5
#define ADAMW_ATOL 1e-8
#define ADAMW_RTOL 1e-7
#define LR 0.01
#define WD 1e-4

typedef struct {
    const char *dir;
    dm_controller_config cfg;
    size_t B, T, N;
    int bad;           /* mismatches found so far (reported, then asserted 0) */
    int decay_seen;    /* elements where missing decay would have been caught */
    int decay_checked; /* elements with |p| >= 0.05 looked at */
} golden;

static float *need(const char *dir, const char *name, size_t n)
{
    char why[700];
    float *x = fixture_read(dir, name, n, why, sizeof why);
    if (!x) {
        print_message("%s\n", why);
        fail();
    }
    return x;
}

static json_t *load_json(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_t *m = fixture_json(path);
    if (!m) fail();
    return m;
}

static int64_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    return (int64_t)json_integer_value(v);
}

/* Reads the golden manifest's model config and batch size. */
static void golden_open(golden *g, const char *dir)
{
    memset(g, 0, sizeof *g);
    g->dir = dir;
    json_t *m = load_json(dir);
    json_t *c = json_object_get(m, "config");
    assert_non_null(c);
    g->cfg = dm_controller_config_default(0);
    g->cfg.vocab_size = jint(c, "vocab_size");
    g->cfg.embedding_dim = jint(c, "embedding_size");
    g->cfg.memory_embedding_dim = jint(c, "memory_embedding_size");
    g->cfg.memory_size = jint(c, "memory_size");
    g->cfg.hidden_size = jint(c, "hidden_size");
    g->cfg.num_layers = jint(c, "num_layers");
    g->cfg.dropout = json_real_value(json_object_get(c, "dropout"));
    g->cfg.output_activation = DM_OUTPUT_GELU;
    g->B = (size_t)jint(c, "batch");
    g->T = (size_t)jint(c, "seq");
    g->N = g->B * g->T;
    json_decref(m);
}

static void expect_close(golden *g, const char *what, const float *got, const float *ref, size_t n)
{
    double scale = 0, maxerr = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= maxerr)) { /* NaN too */
            maxerr = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    double tol = scale > 0 ? RTOL * scale : 0.0; /* all-zero reference: zeros */
    if (!(maxerr <= tol)) {
        print_message("%s %s: max |ours - torch| = %g at %zu (ours %.9g, torch %.9g), scale %g, "
                      "tol %g\n",
                      g->dir, what, maxerr, worst, (double)got[worst], (double)ref[worst], scale,
                      tol);
        g->bad++;
    }
}

static void expect_fixture(golden *g, const char *dir, const char *name, const float *got, size_t n)
{
    float *ref = need(dir, name, n);
    expect_close(g, name, got, ref, n);
    free(ref);
}

/* A parameter AdamW updated: per element, to about an ulp of p per step
 * (1, 1.5, 2 units of 1e-8 + 1e-7 |p| after 1, 2, 3 steps), plus slack[i] (the spread of the update that the
 * gradient tolerance allows, see adam_spread; NULL: none). before is the
 * parameter before this step, to check that the tolerance sees the decay. */
static void expect_adamw(golden *g, const char *what, const float *got, const float *ref,
                         const float *before, const double *slack, int nsteps, size_t n)
{
    size_t nbad = 0, worst = 0;
    double worst_ratio = 0;
    for (size_t i = 0; i < n; i++) {
        double tight = (1 + 0.5 * (nsteps - 1)) * (ADAMW_ATOL + ADAMW_RTOL * fabs(ref[i]));
        double tol = tight + (slack ? slack[i] : 0.0);
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= tol)) {
            nbad++;
            if (isnan(e) || e / tol > worst_ratio) {
                worst_ratio = isnan(e) ? INFINITY : e / tol;
                worst = i;
            }
        }
        if (!slack && fabs(before[i]) >= 0.05) {
            /* torch's step with p *= 1 - lr*wd undone */
            double undecayed = (double)ref[i] + LR * WD * (double)before[i];
            g->decay_checked++;
            if (fabs((double)got[i] - undecayed) > tol) g->decay_seen++;
        }
    }
    if (nbad) {
        print_message("%s %s: %zu of %zu elements off by more than the tolerance; worst at %zu: "
                      "ours %.9g, torch %.9g (%.1fx tol, slack %g)\n",
                      g->dir, what, nbad, n, worst, (double)got[worst], (double)ref[worst],
                      worst_ratio, slack ? slack[worst] : 0.0);
        g->bad++;
    }
}

/* Why slack: Adam divides each gradient by its own running RMS, so for an
 * element whose gradient is within a few orders of eps = 1e-8 of zero, a
 * gradient that agrees with torch's to 1e-5 of the tensor's scale (what the
 * gradient checks assert) can move the update by far more than an ulp of p.
 * adam_spread replays torch's AdamW in double from torch's own gradients
 * (hist[0..t-1], arena layout) and returns, per element, how far the update
 * of step t moves when the gradients move within that tolerance: the
 * current one alone, or every one of them together, sampled across
 * [-delta, +delta]. slack accumulates it over the steps. */
static double adam_update(float *const *hist, const double *delta, int t, size_t i, int all,
                          double s)
{
    double m = 0, v = 0;
    for (int j = 0; j < t; j++) {
        double gj = hist[j][i] + ((all || j == t - 1) ? s * delta[j] : 0.0);
        m = 0.9 * m + 0.1 * gj;
        v = 0.999 * v + 0.001 * gj * gj;
    }
    double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t);
    return LR / bc1 * m / (sqrt(v) / sqrt(bc2) + 1e-8);
}

static void adam_spread(const dm_controller *c, float *const *hist, int t, double *slack)
{
    double delta[8];
    for (int i = 0; i < c->params.n; i++) {
        const dm_arena_entry *e = &c->params.entries[i];
        if (!dm_controller_entry_trained(c, i)) continue;
        for (int j = 0; j < t; j++) {
            double mx = 0;
            for (size_t k = 0; k < e->numel; k++)
                if (fabs(hist[j][e->offset + k]) > mx) mx = fabs(hist[j][e->offset + k]);
            delta[j] = RTOL * mx;
        }
        for (size_t k = 0; k < e->numel; k++) {
            size_t at = e->offset + k;
            double u0 = adam_update(hist, delta, t, at, 0, 0.0), sp = 0;
            static const double ss[] = {-1, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1};
            for (int all = 0; all < 2; all++)
                for (size_t q = 0; q < sizeof ss / sizeof ss[0]; q++) {
                    double d = fabs(adam_update(hist, delta, t, at, all, ss[q]) - u0);
                    if (d > sp) sp = d;
                }
            slack[at] += sp;
        }
    }
}

/* Reference gradients <dir>/<name>.bin in arena layout (zeros where the
 * parameter gets none). */
static float *load_grads(const dm_controller *c, const char *dir)
{
    float *all = calloc(c->params.numel, sizeof(float));
    for (int i = 0; i < c->params.n; i++) {
        const dm_arena_entry *e = &c->params.entries[i];
        if (!dm_controller_entry_trained(c, i)) continue;
        float *x = need(dir, e->name, e->numel);
        memcpy(all + e->offset, x, e->numel * sizeof(float));
        free(x);
    }
    return all;
}

static void create(dm_controller *c, const dm_controller_config *cfg)
{
    dm_error err;
    if (dm_controller_create(c, cfg, NULL, &err) != 0) {
        print_message("%s\n", err.msg);
        fail();
    }
}

/* Loads <dir>/<sub>/<name>.bin into every state_dict entry. */
static void load_state(dm_controller *c, const char *dir, const char *sub)
{
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s/%s", dir, sub);
    for (int i = 0; i < c->params.n; i++) {
        const dm_arena_entry *e = &c->params.entries[i];
        float *x = need(sdir, e->name, e->numel);
        memcpy(dm_arena_ptr(&c->params, i), x, e->numel * sizeof(float));
        free(x);
    }
}

static int32_t *load_ids(const char *dir, const char *name, size_t n)
{
    float *x = need(dir, name, n);
    int32_t *ids = fixture_ids(x, n);
    free(x);
    return ids;
}

static void forward_ok(dm_controller *c, const int32_t *x, size_t B, size_t T)
{
    dm_error err;
    if (dm_controller_forward(c, x, B, T, &err) != 0) {
        print_message("%s\n", err.msg);
        fail();
    }
}

static void set_mask(dm_controller *c, const char *dir, const char *name, size_t B, size_t T)
{
    dm_error err;
    float *mask = need(dir, name, B * T * c->H);
    assert_int_equal(dm_controller_set_dropout_mask(c, mask, B, T, &err), 0);
    free(mask);
}

/* loss and dloss/dlogits of the last forward; ignore_index -1: with pad. */
static float loss_grad(dm_controller *c, const int32_t *y, size_t N, int32_t ignore, float *dlogits)
{
    float loss;
    size_t count;
    dm_error err;
    if (dlogits) memset(dlogits, 0, N * c->V * sizeof(float));
    assert_int_equal(dm_cross_entropy(&loss, &count, dlogits, dm_controller_logits(c), y, N, c->V,
                                      ignore, 1.0f, &err),
                     0);
    return loss;
}

static void expect_scalar(golden *g, const char *dir, const char *name, float got)
{
    expect_fixture(g, dir, name, &got, 1);
}

/* ---- forward, losses, gradients ----------------------------------------- */

static void check_forward_and_grads(const char *dir)
{
    golden g;
    golden_open(&g, dir);
    dm_controller c;
    create(&c, &g.cfg);
    load_state(&c, dir, "params");
    int32_t *x = load_ids(dir, "inputs", g.N), *y = load_ids(dir, "targets", g.N);
    size_t NV = g.N * c.V;
    float *dlogits = malloc(NV * sizeof(float));

    set_mask(&c, dir, "acts/dropout_mask", g.B, g.T);
    forward_ok(&c, x, g.B, g.T);
    expect_fixture(&g, dir, "acts/logits", dm_controller_logits(&c), NV);
    expect_fixture(&g, dir, "acts/query", dm_controller_query(&c), g.N * c.D);
    expect_fixture(&g, dir, "acts/mem_weights", dm_controller_attention(&c), g.N * c.M);
    expect_fixture(&g, dir, "usage_counts_after_forward",
                   dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.usage_counts")), c.M);

    static const struct { const char *loss, *grads; int32_t ignore; } variants[] = {
        {"loss_ignore_pad", "grads", 0},
        {"loss_with_pad", "with_pad/grads", -1},
    };
    for (int v = 0; v < 2; v++) {
        float loss = loss_grad(&c, y, g.N, variants[v].ignore, dlogits);
        expect_scalar(&g, dir, variants[v].loss, loss);
        /* twice: zero_grad really clears what the first backward left */
        for (int rep = 0; rep < 2; rep++) {
            dm_controller_zero_grad(&c);
            dm_error err;
            assert_int_equal(dm_controller_backward(&c, dlogits, g.B, g.T, &err), 0);
        }
        char gdir[512];
        snprintf(gdir, sizeof gdir, "%s/%s", dir, variants[v].grads);
        for (int i = 0; i < c.grads.n; i++) {
            const dm_arena_entry *e = &c.grads.entries[i];
            if (i == dm_controller_entry_find(&c, "memory.usage_counts")) continue; /* a buffer: no grads/ file */
            expect_fixture(&g, gdir, e->name, dm_arena_ptr(&c.grads, i), e->numel);
        }
    }
    /* frozen tensors are handed to the optimizer without a gradient */
    size_t np = dm_controller_num_params(&c);
    dm_param_ref *refs = calloc(np, sizeof *refs);
    dm_controller_param_refs(&c, refs);
    int frozen = 0;
    for (size_t i = 0; i < np; i++) {
        int is_frozen = strncmp(refs[i].name, "fc_query_memory.", 16) == 0 ||
                        strncmp(refs[i].name, "fc_value_memory.", 16) == 0;
        assert_int_equal(refs[i].grad == NULL, is_frozen);
        frozen += is_frozen;
        assert_string_not_equal(refs[i].name, "memory.usage_counts");
    }
    assert_int_equal(frozen, 4);
    assert_int_equal(np, (size_t)c.params.n - 1);
    free(refs);

    /* the write from this (dropout) forward, on the initial memory */
    dm_error err;
    assert_int_equal(dm_controller_write_memory(&c, 0.1f, &err), 0);
    expect_fixture(&g, dir, "write/keys", dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.keys")), c.M * c.D);
    expect_fixture(&g, dir, "write/values", dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.values")), c.M * c.D);

    free(dlogits);
    free(x);
    free(y);
    dm_controller_free(&c);
    assert_int_equal(g.bad, 0);
}

static void test_forward_grads_1234(void **s) { (void)s; check_forward_and_grads("tests/fixtures/golden_1234"); }
static void test_forward_grads_7(void **s) { (void)s; check_forward_and_grads("tests/fixtures/golden_7"); }

/* ---- eval ----------------------------------------------------------------- */

static void check_eval(const char *dir)
{
    golden g;
    golden_open(&g, dir);
    dm_controller c;
    create(&c, &g.cfg);
    load_state(&c, dir, "params");
    int32_t *x = load_ids(dir, "inputs", g.N), *y = load_ids(dir, "targets", g.N);
    dm_controller_eval(&c);
    /* a pending mask is for training forwards only: eval ignores it */
    set_mask(&c, dir, "acts/dropout_mask", g.B, g.T);
    forward_ok(&c, x, g.B, g.T);
    expect_fixture(&g, dir, "eval/logits", dm_controller_logits(&c), g.N * c.V);
    expect_fixture(&g, dir, "eval/usage_counts", dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.usage_counts")), c.M);
    expect_scalar(&g, dir, "eval/loss_with_pad", loss_grad(&c, y, g.N, -1, NULL));
    expect_scalar(&g, dir, "eval/loss_ignore_pad", loss_grad(&c, y, g.N, 0, NULL));
    /* eval is deterministic and does not consume the generator */
    dm_rng before = dm_rng_global;
    float *first = malloc(g.N * c.V * sizeof(float));
    memcpy(first, dm_controller_logits(&c), g.N * c.V * sizeof(float));
    forward_ok(&c, x, g.B, g.T);
    assert_memory_equal(first, dm_controller_logits(&c), g.N * c.V * sizeof(float));
    assert_memory_equal(&before, &dm_rng_global, sizeof before);
    free(first);
    free(x);
    free(y);
    dm_controller_free(&c);
    assert_int_equal(g.bad, 0);
}

static void test_eval_1234(void **s) { (void)s; check_eval("tests/fixtures/golden_1234"); }
static void test_eval_7(void **s) { (void)s; check_eval("tests/fixtures/golden_7"); }

/* ---- full training steps ---------------------------------------------------- */

/* One upstream step: forward (mask injected), loss, zero_grad + backward,
 * clip(1.0), AdamW step, write(0.1). Returns the loss and clip total. With
 * ref_grads (arena layout), torch's gradients replace ours after clipping,
 * so the optimizer and the write are tested on exactly torch's inputs. */
static float train_step(dm_controller *c, dm_optim *o, const int32_t *x, const int32_t *y,
                        size_t B, size_t T, int32_t ignore, double *total,
                        const float *ref_grads)
{
    size_t N = B * T;
    float *dlogits = malloc(N * c->V * sizeof(float));
    forward_ok(c, x, B, T);
    float loss = loss_grad(c, y, N, ignore, dlogits);
    dm_controller_zero_grad(c);
    dm_error err;
    assert_int_equal(dm_controller_backward(c, dlogits, B, T, &err), 0);
    *total = dm_clip_grad_norm(o->params, o->n, 1.0);
    if (ref_grads) {
        for (int i = 0; i < c->grads.n; i++)
            if (dm_controller_entry_trained(c, i))
                memcpy(dm_arena_ptr(&c->grads, i), ref_grads + c->grads.entries[i].offset,
                       c->grads.entries[i].numel * sizeof(float));
    }
    dm_optim_step(o);
    assert_int_equal(dm_controller_write_memory(c, 0.1f, &err), 0);
    free(dlogits);
    return loss;
}

static void make_adamw(dm_optim *o, dm_controller *c)
{
    size_t np = dm_controller_num_params(c);
    dm_param_ref *refs = calloc(np, sizeof *refs);
    dm_controller_param_refs(c, refs);
    dm_optim_config oc = dm_optim_defaults(DM_OPTIM_ADAMW);
    oc.lr = LR;
    oc.weight_decay = WD;
    dm_error err;
    if (dm_optim_init(o, &oc, refs, np, &err) != 0) {
        print_message("%s\n", err.msg);
        fail();
    }
    free(refs);
}

/* Compares the whole state_dict with <sdir>/<name>.bin: AdamW-updated
 * tensors element by element (expect_adamw), the memory (written after
 * AdamW), the usage counts and the frozen tensors relative to scale; the
 * frozen ones must also be bit-for-bit unchanged from `before`. */
static void expect_state(golden *g, dm_controller *c, const char *sdir, const float *before,
                         const double *slack, int nsteps)
{
    for (int i = 0; i < c->params.n; i++) {
        const dm_arena_entry *e = &c->params.entries[i];
        const float *got = dm_arena_ptr(&c->params, i);
        float *ref = need(sdir, e->name, e->numel);
        char what[160];
        snprintf(what, sizeof what, "%s/%s", sdir, e->name);
        if (i == dm_controller_entry_find(c, "memory.keys") || i == dm_controller_entry_find(c, "memory.values") || !dm_controller_entry_trained(c, i)) {
            expect_close(g, what, got, ref, e->numel);
            if (!dm_controller_entry_trained(c, i) && i != dm_controller_entry_find(c, "memory.usage_counts"))
                assert_memory_equal(got, before + e->offset, e->numel * sizeof(float));
        } else {
            expect_adamw(g, what, got, ref, before + e->offset, slack ? slack + e->offset : NULL,
                         nsteps, e->numel);
        }
        free(ref);
    }
}

/* The golden step: once with our gradients (tolerance: ulps + the spread
 * the gradient tolerance allows), once with torch's gradients substituted
 * (ulps only, which must see the weight decay). */
static void check_step(const char *dir, const char *prefix, const char *grads, int32_t ignore)
{
    golden g;
    golden_open(&g, dir);
    json_t *m = load_json(dir);
    json_t *st = json_object_get(json_object_get(m, "steps"), prefix);
    double ref_total = json_real_value(json_object_get(st, "clip_total_norm"));
    /* torch's grads/ are from before clipping: substituting them after our
     * clip is exact only because the clip was inactive (coef 1) */
    assert_true(json_real_value(json_object_get(st, "clip_coef")) == 1.0);
    json_decref(m);
    char gdir[512], sdir[512];
    snprintf(gdir, sizeof gdir, "%s/%s", dir, grads);
    snprintf(sdir, sizeof sdir, "%s/%s", dir, prefix);
    int32_t *x = load_ids(dir, "inputs", g.N), *y = load_ids(dir, "targets", g.N);

    for (int substitute = 0; substitute < 2; substitute++) {
        dm_controller c;
        create(&c, &g.cfg);
        load_state(&c, dir, "params");
        float *before = malloc(c.params.numel * sizeof(float));
        memcpy(before, c.params.data, c.params.numel * sizeof(float));
        float *ref_grads = load_grads(&c, gdir);
        double *slack = NULL;
        if (!substitute) {
            slack = calloc(c.params.numel, sizeof(double));
            adam_spread(&c, &ref_grads, 1, slack);
        }
        dm_optim o;
        make_adamw(&o, &c);
        set_mask(&c, dir, "acts/dropout_mask", g.B, g.T);
        double total;
        float loss = train_step(&c, &o, x, y, g.B, g.T, ignore, &total,
                                substitute ? ref_grads : NULL);
        expect_scalar(&g, dir, ignore < 0 ? "loss_with_pad" : "loss_ignore_pad", loss);
        assert_true(fabs(total - ref_total) <= RTOL * ref_total);
        expect_state(&g, &c, sdir, before, slack, 1);
        dm_optim_free(&o);
        free(slack);
        free(ref_grads);
        free(before);
        dm_controller_free(&c);
    }
    print_message("# %s: the AdamW tolerance catches missing weight decay in %d of %d elements "
                  "with |p| >= 0.05\n",
                  sdir, g.decay_seen, g.decay_checked);
    assert_true(g.decay_checked > 0 && g.decay_seen * 10 >= g.decay_checked * 9);
    free(x);
    free(y);
    assert_int_equal(g.bad, 0);
}

static void test_step_1234(void **s) { (void)s; check_step("tests/fixtures/golden_1234", "step", "with_pad/grads", -1); }
static void test_step_ignore_pad_1234(void **s) { (void)s; check_step("tests/fixtures/golden_1234", "step_ignore_pad", "grads", 0); }
static void test_step_7(void **s) { (void)s; check_step("tests/fixtures/golden_7", "step", "with_pad/grads", -1); }
static void test_step_ignore_pad_7(void **s) { (void)s; check_step("tests/fixtures/golden_7", "step_ignore_pad", "grads", 0); }

/* Three consecutive steps, one optimizer (tests/fixtures/steps), with our
 * gradients and again with torch's substituted. */
static void test_three_steps(void **s)
{
    (void)s;
    const char *dir = "tests/fixtures/steps";
    json_t *m = load_json(dir);
    json_t *cj = json_object_get(m, "config");
    golden g;
    memset(&g, 0, sizeof g);
    g.dir = dir;
    g.cfg = dm_controller_config_default(0);
    g.cfg.vocab_size = jint(cj, "vocab_size");
    g.cfg.embedding_dim = jint(cj, "embedding_dim");
    g.cfg.memory_embedding_dim = jint(cj, "memory_embedding_dim");
    g.cfg.memory_size = jint(cj, "memory_size");
    g.cfg.hidden_size = jint(cj, "hidden_size");
    g.cfg.num_layers = jint(cj, "num_layers");
    g.cfg.dropout = json_real_value(json_object_get(cj, "dropout"));
    g.B = (size_t)jint(cj, "batch");
    g.T = (size_t)jint(cj, "seq");
    g.N = g.B * g.T;
    json_t *steps = json_object_get(m, "steps");
    assert_int_equal(json_array_size(steps), 3);

    for (int substitute = 0; substitute < 2; substitute++) {
        dm_controller c;
        create(&c, &g.cfg);
        if (!substitute) {
            /* the manifest's names and shapes are the arena's, in order */
            json_t *names = json_object_get(m, "names"), *shapes = json_object_get(m, "shapes");
            assert_int_equal(json_array_size(names), (size_t)c.params.n);
            for (int i = 0; i < c.params.n; i++) {
                const dm_arena_entry *e = &c.params.entries[i];
                assert_string_equal(json_string_value(json_array_get(names, (size_t)i)), e->name);
                json_t *sh = json_array_get(shapes, (size_t)i);
                assert_int_equal(json_array_size(sh), (size_t)e->ndim);
                for (int d = 0; d < e->ndim; d++)
                    assert_int_equal(json_integer_value(json_array_get(sh, (size_t)d)), e->shape[d]);
            }
        }
        load_state(&c, dir, "init");
        dm_optim o;
        make_adamw(&o, &c);
        float *before = malloc(c.params.numel * sizeof(float));
        double *slack = calloc(c.params.numel, sizeof(double));
        float *hist[3] = {NULL, NULL, NULL};
        for (int k = 1; k <= 3; k++) {
            char sub[512], name[64];
            snprintf(sub, sizeof sub, "%s/step%d/grads", dir, k);
            hist[k - 1] = load_grads(&c, sub);
            if (!substitute) adam_spread(&c, hist, k, slack);
            snprintf(sub, sizeof sub, "%s/step%d", dir, k);
            int32_t *x = load_ids(sub, "inputs", g.N), *y = load_ids(sub, "targets", g.N);
            set_mask(&c, sub, "dropout_mask", g.B, g.T);
            memcpy(before, c.params.data, c.params.numel * sizeof(float));
            double total;
            float loss = train_step(&c, &o, x, y, g.B, g.T, -1, &total,
                                    substitute ? hist[k - 1] : NULL);
            json_t *sj = json_array_get(steps, (size_t)k - 1);
            float rl = (float)json_real_value(json_object_get(sj, "loss"));
            double ref_total = json_real_value(json_object_get(sj, "clip_total_norm"));
            snprintf(name, sizeof name, "step %d loss", k);
            expect_close(&g, name, &loss, &rl, 1);
            assert_true(fabs(total - ref_total) <= RTOL * ref_total);
            snprintf(sub, sizeof sub, "%s/step%d/state", dir, k);
            expect_state(&g, &c, sub, before, substitute ? NULL : slack, k);
            free(x);
            free(y);
        }
        for (size_t i = 0; i < o.n; i++) assert_int_equal(o.steps[i], o.params[i].grad ? 3 : 0);
        for (int k = 0; k < 3; k++) free(hist[k]);
        free(slack);
        free(before);
        dm_optim_free(&o);
        dm_controller_free(&c);
    }
    print_message("# steps: the AdamW tolerance catches missing weight decay in %d of %d "
                  "elements with |p| >= 0.05\n",
                  g.decay_seen, g.decay_checked);
    assert_true(g.decay_checked > 0 && g.decay_seen * 10 >= g.decay_checked * 9);
    json_decref(m);
    assert_int_equal(g.bad, 0);
}

/* ---- arena reuse, layout, init ------------------------------------------- */

static void test_activation_reuse(void **s)
{
    (void)s;
    golden g;
    golden_open(&g, "tests/fixtures/golden_1234");
    dm_controller c, fresh;
    create(&c, &g.cfg);
    create(&fresh, &g.cfg);
    load_state(&c, g.dir, "params");
    dm_controller_eval(&c);
    dm_controller_eval(&fresh);
    int32_t *x = load_ids(g.dir, "inputs", g.N);
    forward_ok(&c, x, g.B, g.T);
    float *acts = c.acts.data;
    size_t cap = c.acts.numel;
    /* a smaller batch (first 2 rows, first 4 steps) reuses the buffers */
    int32_t small[8];
    for (size_t b = 0; b < 2; b++)
        for (size_t t = 0; t < 4; t++) small[b * 4 + t] = x[b * g.T + t];
    forward_ok(&c, small, 2, 4);
    assert_ptr_equal(c.acts.data, acts);
    assert_int_equal(c.acts.numel, cap);
    /* and computes what a fresh controller computes */
    memcpy(fresh.params.data, c.params.data, c.params.numel * sizeof(float));
    forward_ok(&fresh, small, 2, 4);
    assert_memory_equal(dm_controller_logits(&c), dm_controller_logits(&fresh), 8 * c.V * sizeof(float));
    /* backward on the small batch through the reused buffers, both ways */
    float *dl = calloc(8 * c.V, sizeof(float));
    for (size_t i = 0; i < 8 * c.V; i++) dl[i] = (float)((i % 7) - 3) * 0.01f;
    dm_error err;
    dm_controller_zero_grad(&c);
    dm_controller_zero_grad(&fresh);
    assert_int_equal(dm_controller_backward(&c, dl, 2, 4, &err), 0);
    assert_int_equal(dm_controller_backward(&fresh, dl, 2, 4, &err), 0);
    assert_memory_equal(c.grads.data, fresh.grads.data, c.grads.numel * sizeof(float));
    /* a longer batch grows the arena once; then the old size fits again */
    int32_t *big = calloc(g.B * 9, sizeof(int32_t));
    forward_ok(&c, big, g.B, 9);
    assert_true(c.acts.numel > cap);
    acts = c.acts.data;
    forward_ok(&c, x, g.B, g.T);
    assert_ptr_equal(c.acts.data, acts);
    free(big);
    free(dl);
    free(x);
    dm_controller_free(&c);
    dm_controller_free(&fresh);
}

static void test_layout_and_init(void **s)
{
    (void)s;
    dm_controller_config cfg = dm_controller_config_default(64);
    cfg.embedding_dim = 16;
    cfg.memory_embedding_dim = 0; /* = E */
    cfg.memory_size = 40;
    cfg.hidden_size = 32;
    cfg.num_layers = 3;
    dm_rng r1, r2;
    dm_rng_seed(&r1, 5);
    dm_rng_seed(&r2, 5);
    dm_controller a, b;
    dm_error err;
    assert_int_equal(dm_controller_create(&a, &cfg, &r1, &err), 0);
    assert_int_equal(dm_controller_create(&b, &cfg, &r2, &err), 0);
    assert_int_equal(a.D, 16);
    /* same seed, same weights */
    assert_memory_equal(a.params.data, b.params.data, a.params.numel * sizeof(float));
    static const char *order[] = {
        "memory.keys", "memory.values", "memory.usage_counts", "embedding.weight",
        "fc_query.weight", "fc_query.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
        "rnn.bias_ih_l0", "rnn.bias_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1",
        "rnn.bias_ih_l1", "rnn.bias_hh_l1", "rnn.weight_ih_l2", "rnn.weight_hh_l2",
        "rnn.bias_ih_l2", "rnn.bias_hh_l2", "fc1.weight", "fc1.bias", "fc_output.weight",
        "fc_output.bias", "fc_query_memory.weight", "fc_query_memory.bias",
        "fc_value_memory.weight", "fc_value_memory.bias"};
    assert_int_equal(a.params.n, (int)(sizeof order / sizeof order[0]));
    for (int i = 0; i < a.params.n; i++) assert_string_equal(a.params.entries[i].name, order[i]);
    assert_int_equal(a.params.entries[dm_controller_entry_find(&a, "rnn.weight_ih_l1")].shape[1], 32); /* layer 1 reads H */
    assert_int_equal(a.params.entries[dm_controller_entry_find(&a, "rnn.weight_ih_l0")].shape[0], 96);
    /* distributions: bounds of the README's table */
    struct { int idx; double lo, hi; } u[] = {
        {dm_controller_entry_find(&a, "memory.keys"), -sqrt(6.0 / 16), sqrt(6.0 / 16)},
        {dm_controller_entry_find(&a, "fc_query.weight"), -sqrt(6.0 / 16), sqrt(6.0 / 16)},
        {dm_controller_entry_find(&a, "rnn.weight_hh_l2"), -1 / sqrt(32.0), 1 / sqrt(32.0)},
        {dm_controller_entry_find(&a, "fc_output.weight"), -sqrt(6.0 / 32), sqrt(6.0 / 32)},
        {dm_controller_entry_find(&a, "fc_value_memory.weight"), -1 / sqrt(64.0), 1 / sqrt(64.0)},
        {dm_controller_entry_find(&a, "fc_query_memory.bias"), -1 / sqrt(16.0), 1 / sqrt(16.0)},
    };
    for (size_t k = 0; k < sizeof u / sizeof u[0]; k++) {
        const dm_arena_entry *e = &a.params.entries[u[k].idx];
        const float *p = dm_arena_ptr(&a.params, u[k].idx);
        double mx = 0;
        for (size_t i = 0; i < e->numel; i++) {
            assert_true(p[i] >= u[k].lo && p[i] <= u[k].hi);
            if (fabs(p[i]) > mx) mx = fabs(p[i]);
        }
        assert_true(mx > 0.5 * u[k].hi); /* spread, not all tiny */
    }
    const float *usage = dm_arena_ptr(&a.params, dm_controller_entry_find(&a, "memory.usage_counts"));
    for (size_t i = 0; i < a.M; i++) assert_true(usage[i] == 1.0f);
    const float *fb = dm_arena_ptr(&a.params, dm_controller_entry_find(&a, "fc1.bias"));
    for (size_t i = 0; i < a.H; i++) assert_true(fb[i] == 0.0f);
    const float *emb = dm_arena_ptr(&a.params, dm_controller_entry_find(&a, "embedding.weight"));
    double s2 = 0;
    for (size_t i = 0; i < a.V * a.E; i++) s2 += (double)emb[i] * emb[i];
    double sd = sqrt(s2 / (double)(a.V * a.E));
    assert_true(sd > 0.08 && sd < 0.12);
    /* 256 x 2 layers at the seed's sizes: torch's parameter count */
    dm_controller_free(&a);
    dm_controller_free(&b);
    dm_controller_config seed = dm_controller_config_default(64);
    assert_int_equal(dm_controller_create(&a, &seed, NULL, &err), 0);
    /* sum(p.numel() for p in Controller(128,128,64,512,256,2).parameters()) */
    size_t E = 128, D = 128, V = 64, M = 512, H = 256;
    size_t want = 2 * M * D + V * E + D * E + D + (3 * H * D + 3 * H * H + 6 * H) +
                  (3 * H * H + 3 * H * H + 6 * H) + H * H + H + V * H + V + D * D + D + D * V + D;
    assert_int_equal(dm_controller_param_count(&a), want);
    dm_controller_free(&a);
    dm_controller_free(&a); /* idempotent */
}

/* ---- bad input -------------------------------------------------------------- */

static void expect_err(int rc, const dm_error *err, const char *needle)
{
    assert_int_equal(rc, -1);
    if (!strstr(err->msg, needle)) {
        print_message("message \"%s\" lacks \"%s\"\n", err->msg, needle);
        fail();
    }
}

static void test_bad_input(void **s)
{
    (void)s;
    golden g;
    golden_open(&g, "tests/fixtures/golden_1234");
    dm_controller c;
    dm_error err;
    dm_controller_config bad = g.cfg;
    bad.hidden_size = 0;
    expect_err(dm_controller_create(&c, &bad, NULL, &err), &err, "hidden_size must be in 1..");
    bad = g.cfg;
    bad.dropout = 1.5;
    expect_err(dm_controller_create(&c, &bad, NULL, &err), &err, "dropout must be in [0, 1), got 1.5");
    bad = g.cfg;
    bad.num_layers = 17;
    expect_err(dm_controller_create(&c, &bad, NULL, &err), &err, "num_layers must be in 1..16, got 17");
    dm_output_act act;
    expect_err(dm_output_act_parse("relu", &act, &err), &err, "\"relu\"");

    create(&c, &g.cfg);
    float dl[3 * 5 * 20] = {0};
    expect_err(dm_controller_backward(&c, dl, 3, 5, &err), &err, "no forward");
    expect_err(dm_controller_write_memory(&c, 0.1f, &err), &err, "no forward yet");
    int32_t x[15] = {2, 5, 6, 7, 8, 2, 5, 6, 7, 8, 2, 5, 20, 7, 8};
    float usage0[6];
    memcpy(usage0, dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.usage_counts")), sizeof usage0);
    expect_err(dm_controller_forward(&c, x, 3, 5, &err), &err,
               "token id 20 at (batch 3, time 3) is out of range for vocabulary size 20");
    /* nothing changed, and no forward is kept */
    assert_memory_equal(usage0, dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "memory.usage_counts")), sizeof usage0);
    expect_err(dm_controller_backward(&c, dl, 3, 5, &err), &err, "no forward");
    x[12] = -1;
    expect_err(dm_controller_forward(&c, x, 3, 5, &err), &err, "token id -1");
    x[12] = 19;
    expect_err(dm_controller_forward(&c, x, 0, 5, &err), &err, "got 0x5");
    forward_ok(&c, x, 3, 5);
    expect_err(dm_controller_backward(&c, dl, 5, 3, &err), &err,
               "dlogits is for a 5x3 batch, the last forward was 3x5");
    expect_err(dm_controller_write_memory(&c, 1.5f, &err), &err, "strength must be in [0, 1], got 1.5");
    expect_err(dm_controller_write_memory(&c, NAN, &err), &err, "strength");
    /* a mask for another shape is refused by the forward that would use it */
    float mask[2 * 5 * 12];
    for (size_t i = 0; i < sizeof mask / sizeof mask[0]; i++) mask[i] = 1.0f;
    assert_int_equal(dm_controller_set_dropout_mask(&c, mask, 2, 5, &err), 0);
    expect_err(dm_controller_forward(&c, x, 3, 5, &err), &err,
               "dropout mask is for a 2x5 batch, the tokens are 3x5");
    /* an all-ones mask: exactly the no-dropout forward scaled by 1/(1-p) */
    assert_int_equal(dm_controller_set_dropout_mask(&c, NULL, 0, 0, &err), 0);
    forward_ok(&c, x, 3, 5);
    dm_controller_free(&c);
}

/* Dropout without an injected mask draws from the controller's generator:
 * same seed, same logits; the mask keeps about 1-p. */
static void test_dropout_rng(void **s)
{
    (void)s;
    golden g;
    golden_open(&g, "tests/fixtures/golden_7");
    dm_controller a, b;
    create(&a, &g.cfg);
    create(&b, &g.cfg);
    memcpy(b.params.data, a.params.data, a.params.numel * sizeof(float));
    dm_rng r1, r2;
    dm_rng_seed(&r1, 99);
    dm_rng_seed(&r2, 99);
    dm_controller_set_rng(&a, &r1);
    dm_controller_set_rng(&b, &r2);
    int32_t *x = load_ids(g.dir, "inputs", g.N);
    forward_ok(&a, x, g.B, g.T);
    forward_ok(&b, x, g.B, g.T);
    assert_memory_equal(dm_controller_logits(&a), dm_controller_logits(&b), g.N * a.V * sizeof(float));
    const int mask_entry = dm_arena_find(&a.acts, "dropout.mask");
    assert_true(mask_entry >= 0);
    const float *mask = dm_arena_ptr(&a.acts, mask_entry);
    size_t kept = 0, n = g.N * a.H;
    for (size_t i = 0; i < n; i++) {
        assert_true(mask[i] == 0.0f || fabsf(mask[i] - 1.0f / 0.7f) < 1e-6f);
        kept += mask[i] != 0.0f;
    }
    assert_true(kept > n / 2 && kept < n * 9 / 10);
    /* a second forward draws a different mask */
    forward_ok(&a, x, g.B, g.T);
    assert_memory_not_equal(dm_controller_logits(&a), dm_controller_logits(&b), g.N * a.V * sizeof(float));
    free(x);
    dm_controller_free(&a);
    dm_controller_free(&b);
}

/* output_activation "none": the logits are fc_output's output (GELU of
 * them is the gelu net's logits), and its gradient passes finite
 * differences: loss = sum(logits * R) in float64 central differences. */
static double weighted_sum(dm_controller *c, const int32_t *x, size_t B, size_t T, const float *R)
{
    forward_ok(c, x, B, T);
    const float *lg = dm_controller_logits(c);
    double s = 0;
    for (size_t i = 0; i < B * T * c->V; i++) s += (double)lg[i] * R[i];
    return s;
}

static void test_output_none_and_finite_differences(void **s)
{
    (void)s;
    golden g;
    golden_open(&g, "tests/fixtures/golden_1234");
    dm_controller_config cfg = g.cfg;
    cfg.output_activation = DM_OUTPUT_NONE;
    cfg.dropout = 0.0;
    dm_controller c, gl;
    create(&c, &cfg);
    cfg.output_activation = DM_OUTPUT_GELU;
    create(&gl, &cfg);
    load_state(&c, g.dir, "params");
    load_state(&gl, g.dir, "params");
    int32_t *x = load_ids(g.dir, "inputs", g.N);
    size_t NV = g.N * c.V;
    forward_ok(&c, x, g.B, g.T);
    forward_ok(&gl, x, g.B, g.T);
    float *act = malloc(NV * sizeof(float));
    dm_gelu_forward(act, dm_controller_logits(&c), NV);
    assert_memory_equal(act, dm_controller_logits(&gl), NV * sizeof(float));
    free(act);
    dm_controller_free(&gl);

    float *R = malloc(NV * sizeof(float));
    dm_rng r;
    dm_rng_seed(&r, 17);
    for (size_t i = 0; i < NV; i++) R[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    /* usage counts change with each forward but feed nothing: harmless */
    weighted_sum(&c, x, g.B, g.T, R);
    dm_controller_zero_grad(&c);
    dm_error err;
    assert_int_equal(dm_controller_backward(&c, R, g.B, g.T, &err), 0);
    int checked = 0;
    for (int i = 0; i < c.params.n; i++) {
        if (!dm_controller_entry_trained(&c, i)) continue;
        const dm_arena_entry *e = &c.params.entries[i];
        float *p = dm_arena_ptr(&c.params, i);
        const float *gr = dm_arena_ptr(&c.grads, i);
        for (int k = 0; k < 3; k++) {
            size_t j = (size_t)dm_rng_below(&r, e->numel);
            if (i == dm_controller_entry_find(&c, "embedding.weight")) j = (size_t)x[k] * c.E + (size_t)k; /* a used row */
            float keep = p[j], h = 1e-2f;
            p[j] = keep + h;
            double up = weighted_sum(&c, x, g.B, g.T, R);
            p[j] = keep - h;
            double dn = weighted_sum(&c, x, g.B, g.T, R);
            p[j] = keep;
            double fd = (up - dn) / (2.0 * h);
            double tol = 2e-3 + 1e-2 * fabs(fd);
            if (!(fabs(fd - gr[j]) <= tol)) {
                print_message("%s[%zu]: analytic %.6g, finite differences %.6g\n", e->name, j,
                              (double)gr[j], fd);
                g.bad++;
            }
            checked++;
        }
    }
    assert_true(checked >= 3 * 17);
    free(R);
    free(x);
    dm_controller_free(&c);
    assert_int_equal(g.bad, 0);
}

/* dm_controller_write_trace: refused without the episodic memory, before a
 * forward and past the batch; after a forward, views of sequence b's rows:
 * its tokens, a write at every step (write_actions always) into the empty
 * slots first, then into a slot other than the one the step read most, and
 * attention only over the slots written before the step. */
static void test_write_trace(void **s)
{
    (void)s;
    dm_controller_config cfg = dm_controller_config_default(9);
    cfg.embedding_dim = 4, cfg.memory_size = 3, cfg.hidden_size = 5, cfg.num_layers = 1;
    dm_controller c;
    dm_error err;
    dm_write_trace tr;
    int32_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* (2,4) */
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), 0);
    assert_int_equal(dm_controller_forward(&c, x, 2, 4, &err), 0);
    assert_int_equal(dm_controller_write_trace(&c, 0, &tr, &err), -1);
    assert_non_null(strstr(err.msg, "write_policy is blend"));
    dm_controller_free(&c);

    strcpy(cfg.write_policy, "reinforce");
    cfg.write_actions = DM_WRITE_ACTIONS_ALWAYS;
    cfg.episodic_slots = 2;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), 0);
    assert_int_equal(dm_controller_write_trace(&c, 0, &tr, &err), -1);
    assert_non_null(strstr(err.msg, "no forward yet"));
    assert_int_equal(dm_controller_forward(&c, x, 2, 4, &err), 0);
    assert_int_equal(dm_controller_write_trace(&c, 2, &tr, &err), -1);
    assert_non_null(strstr(err.msg, "sequence 3 out of range: the last forward had 2"));
    assert_int_equal(dm_controller_write_trace(&c, 1, &tr, &err), 0);
    assert_int_equal(tr.T, 4);
    assert_int_equal(tr.K, 2);
    for (size_t t = 0; t < 4; t++) {
        assert_int_equal(tr.tokens[t], x[4 + t]);
        assert_true(tr.write[t] == 1.0f);
        assert_true(tr.p_write[t] > 0.0f && tr.p_write[t] < 1.0f);
    }
    assert_int_equal(tr.slot[0], 0);
    assert_int_equal(tr.slot[1], 1);
    for (size_t t = 2; t < 4; t++) {
        const float *a = tr.attention + t * 2;
        assert_float_equal(a[0] + a[1], 1.0, 1e-5);
        int best = a[1] > a[0];
        assert_int_not_equal(tr.slot[t], best); /* the slot just read is kept */
    }
    assert_true(tr.attention[0] == 0.0f && tr.attention[1] == 0.0f);    /* t = 0: nothing written */
    assert_true(tr.attention[2] == 1.0f && tr.attention[3] == 0.0f);    /* t = 1: slot 0 only */
    dm_controller_free(&c);
}

/* The parts registry and the size tables: kinds by role (aliases
 * included), and dm_controller_sizes' tables equal the arenas a created
 * controller allocates, for an LSTM model with the reinforce policy. */
static void test_parts_and_sizes(void **s)
{
    (void)s;
    assert_ptr_equal(dm_part_find("gru", DM_ROLE_CELL), &dm_gru_part);
    assert_ptr_equal(dm_part_find("lstm", DM_ROLE_CELL), &dm_lstm_part);
    assert_null(dm_part_find("gru", DM_ROLE_POLICY));
    assert_ptr_equal(dm_part_find("seed", DM_ROLE_POLICY), &dm_blend_part);
    char buf[128];
    assert_string_equal(dm_part_kinds(DM_ROLE_POLICY, buf, sizeof buf), "blend, reinforce, content, seed");
    assert_string_equal(dm_part_kinds(DM_ROLE_CELL, buf, sizeof buf), "gru, lstm");

    dm_controller_config cfg = dm_controller_config_default(13);
    cfg.embedding_dim = 6, cfg.memory_embedding_dim = 5, cfg.memory_size = 4;
    cfg.hidden_size = 7, cfg.num_layers = 2;
    strcpy(cfg.cell, "lstm");
    strcpy(cfg.write_policy, "reinforce");
    cfg.episodic_slots = 3;
    dm_arena p, a;
    dm_arena_init(&p);
    dm_arena_init(&a);
    dm_error err;
    assert_int_equal(dm_controller_sizes(&cfg, 2, 3, &p, &a, &err), 0);
    assert_null(p.data);
    assert_null(a.data);
    dm_controller c;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), 0);
    int32_t x[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(dm_controller_forward(&c, x, 2, 3, &err), 0);
    assert_int_equal(p.n, c.params.n);
    assert_int_equal(p.numel, c.params.numel);
    assert_int_equal(a.n, c.acts.n);
    assert_int_equal(a.numel, c.acts.numel);
    for (int i = 0; i < p.n; i++) assert_string_equal(p.entries[i].name, c.params.entries[i].name);
    assert_string_equal(p.entries[p.n - 1].name, "baseline.bias");
    dm_controller_free(&c);
    dm_arena_free(&p);
    dm_arena_free(&a);
    /* "seed" reads as blend, an unknown policy names the registered ones */
    strcpy(cfg.write_policy, "seed");
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), 0);
    assert_string_equal(c.cfg.write_policy, "blend");
    assert_false(dm_controller_has_policy(&c));
    dm_controller_free(&c);
    strcpy(cfg.write_policy, "never");
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "write_policy must be one of blend, reinforce, content, seed, got \"never\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts_and_sizes),
        cmocka_unit_test(test_forward_grads_1234),
        cmocka_unit_test(test_forward_grads_7),
        cmocka_unit_test(test_eval_1234),
        cmocka_unit_test(test_eval_7),
        cmocka_unit_test(test_step_1234),
        cmocka_unit_test(test_step_ignore_pad_1234),
        cmocka_unit_test(test_step_7),
        cmocka_unit_test(test_step_ignore_pad_7),
        cmocka_unit_test(test_three_steps),
        cmocka_unit_test(test_activation_reuse),
        cmocka_unit_test(test_layout_and_init),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_dropout_rng),
        cmocka_unit_test(test_output_none_and_finite_differences),
        cmocka_unit_test(test_write_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
