/* test_parity.c: the layers of nn.h / gru.h (and the memory read of
 * memory.h) against PyTorch, on the golden batches of tests/fixtures
 * (golden_1234: V=20 E=D=8 M=6 H=12 L=2 B=3 T=5; golden_7: V=50 E=16 D=12
 * M=32 H=24 L=3 B=4 T=7). It rebuilds DRLMemNet's training forward from the
 * dumped initial parameters and dropout mask, checks every dumped
 * activation and both losses, then runs the backward of each loss and
 * checks the activation gradients and every trained parameter's gradient.
 *
 * Tolerance: max |ours - torch| <= 1e-5 * max |torch| over each tensor
 * (float32 agrees with float64 to ~3e-7 relative on logits and ~6e-7 on
 * gradients, see the reference README; 1e-5 leaves headroom for a different
 * summation order, and a wrong formula misses by orders of magnitude). */
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

#include "core/gru.h"
#include "core/memory.h"
#include "core/nn.h"
#include "fixture.h"

#define PARITY_RTOL 1e-5

typedef struct {
    const char *dir;
    size_t V, E, D, M, H, L, B, T, N;
    double p;
    int bad; /* mismatches found so far */
} golden;

/* Read a fixture or fail the test with the reader's reason. */
static float *need(golden *g, const char *name, size_t n)
{
    char why[600];
    float *x = fixture_read(g->dir, name, n, why, sizeof why);
    if (!x) {
        print_message("%s\n", why);
        fail();
    }
    return x;
}

static void expect_close(golden *g, const char *what, const float *got, const float *ref, size_t n)
{
    double scale = 0, maxerr = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!(e <= maxerr)) { /* also catches NaN */
            maxerr = isnan(e) ? INFINITY : e;
            worst = i;
        }
    }
    /* An all-zero reference (nothing reaches it) must be matched by zeros. */
    double tol = scale > 0 ? PARITY_RTOL * scale : 1e-12;
    if (!(maxerr <= tol)) {
        print_message("%s %s: max |ours - torch| = %g at %zu (ours %.9g, torch %.9g), "
                      "scale %g, tol %g\n",
                      g->dir, what, maxerr, worst, (double)got[worst], (double)ref[worst], scale,
                      tol);
        g->bad++;
    }
}

static void expect_fixture(golden *g, const char *name, const float *got, size_t n)
{
    float *ref = need(g, name, n);
    expect_close(g, name, got, ref, n);
    free(ref);
}

static size_t cfg_size(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v)) {
        print_message("manifest config: %s missing or not an integer\n", key);
        fail();
    }
    return (size_t)json_integer_value(v);
}

static void load_config(golden *g)
{
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.json", g->dir);
    json_t *root = fixture_json(path);
    if (!root) fail();
    json_t *cfg = json_object_get(root, "config");
    assert_non_null(cfg);
    g->V = cfg_size(cfg, "vocab_size");
    g->E = cfg_size(cfg, "embedding_size");
    g->D = cfg_size(cfg, "memory_embedding_size");
    g->M = cfg_size(cfg, "memory_size");
    g->H = cfg_size(cfg, "hidden_size");
    g->L = cfg_size(cfg, "num_layers");
    g->B = cfg_size(cfg, "batch");
    g->T = cfg_size(cfg, "seq");
    g->p = json_number_value(json_object_get(cfg, "dropout"));
    g->N = g->B * g->T;
    json_decref(root);
}

/* The model's parameters and forward activations. */
typedef struct {
    float *emb, *fcq_w, *fcq_b, *keys, *values, *fc1_w, *fc1_b, *fco_w, *fco_b;
    float *gru_w[DM_GRU_MAX_LAYERS][4];
    dm_gru_params gp;
    dm_gru_dims gd;
    int32_t *ids, *tgt;
    float *mask; /* (N,H) 0 or 1/(1-p), as dm_dropout_forward makes it */
    float *embedded, *fcq_pre, *query, *scores, *weights, *mem_out, *cache, *rnn_out;
    float *fc1_pre, *fc1_act, *hidden, *fco_pre, *logits;
} model;

static const char *gru_names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

static size_t gru_numel(const golden *g, size_t l, int k)
{
    size_t in = l == 0 ? g->D : g->H;
    return k == 0 ? 3 * g->H * in : k == 1 ? 3 * g->H * g->H : 3 * g->H;
}

static void load_params(golden *g, model *m)
{
    const size_t V = g->V, E = g->E, D = g->D, M = g->M, H = g->H, N = g->N;
    m->emb = need(g, "params/embedding.weight", V * E);
    m->fcq_w = need(g, "params/fc_query.weight", D * E);
    m->fcq_b = need(g, "params/fc_query.bias", D);
    m->keys = need(g, "params/memory.keys", M * D);
    m->values = need(g, "params/memory.values", M * D);
    m->fc1_w = need(g, "params/fc1.weight", H * H);
    m->fc1_b = need(g, "params/fc1.bias", H);
    m->fco_w = need(g, "params/fc_output.weight", V * H);
    m->fco_b = need(g, "params/fc_output.bias", V);
    m->gd = (dm_gru_dims){.B = g->B, .T = g->T, .In = D, .H = H, .L = g->L};
    assert_int_equal(dm_gru_dims_check(&m->gd, NULL), 0);
    char name[128];
    for (size_t l = 0; l < g->L; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "params/rnn.%s_l%zu", gru_names[k], l);
            m->gru_w[l][k] = need(g, name, gru_numel(g, l, k));
        }
        m->gp.w_ih[l] = m->gru_w[l][0], m->gp.w_hh[l] = m->gru_w[l][1];
        m->gp.b_ih[l] = m->gru_w[l][2], m->gp.b_hh[l] = m->gru_w[l][3];
    }
    float *x = need(g, "inputs", N);
    m->ids = fixture_ids(x, N);
    free(x);
    x = need(g, "targets", N);
    m->tgt = fixture_ids(x, N);
    free(x);
    /* The dump's mask is {0,1}; PyTorch scales by 1/(1-p) computed in
     * float64, which is how dm_dropout_forward builds its mask too. */
    m->mask = need(g, "acts/dropout_mask", N * H);
    float keep = (float)(1.0 / (1.0 - g->p));
    for (size_t i = 0; i < N * H; i++) m->mask[i] *= keep;
}

static void forward(golden *g, model *m)
{
    const size_t V = g->V, E = g->E, D = g->D, M = g->M, H = g->H, N = g->N;
    dm_error err;
    m->embedded = calloc(N * E, sizeof(float));
    m->fcq_pre = calloc(N * D, sizeof(float));
    m->query = calloc(N * D, sizeof(float));
    m->scores = calloc(N * M, sizeof(float));
    m->weights = calloc(N * M, sizeof(float));
    m->mem_out = calloc(N * D, sizeof(float));
    m->cache = calloc(dm_gru_cache_numel(&m->gd), sizeof(float));
    m->rnn_out = calloc(N * H, sizeof(float));
    m->fc1_pre = calloc(N * H, sizeof(float));
    m->fc1_act = calloc(N * H, sizeof(float));
    m->hidden = calloc(N * H, sizeof(float));
    m->fco_pre = calloc(N * V, sizeof(float));
    m->logits = calloc(N * V, sizeof(float));

    assert_int_equal(dm_embedding_forward(m->embedded, m->ids, m->emb, N, V, E, &err), 0);
    expect_fixture(g, "acts/embedded", m->embedded, N * E);
    dm_linear_forward(m->fcq_pre, m->embedded, m->fcq_w, m->fcq_b, N, E, D);
    expect_fixture(g, "acts/fc_query_pre", m->fcq_pre, N * D);
    dm_gelu_forward(m->query, m->fcq_pre, N * D);
    expect_fixture(g, "acts/query", m->query, N * D);

    dm_memory_scores(m->scores, m->query, m->keys, N, M, D);
    expect_fixture(g, "acts/mem_scores", m->scores, N * M);
    int32_t *argmax = calloc(N, sizeof *argmax), *iscratch = calloc(M, sizeof *iscratch);
    dm_memory_read_forward(m->mem_out, m->weights, argmax, m->query, m->keys, m->values, N, M, D);
    expect_fixture(g, "acts/mem_weights", m->weights, N * M);
    expect_fixture(g, "acts/mem_out", m->mem_out, N * D);
    float *usage = need(g, "params/memory.usage_counts", M);
    dm_memory_usage_update(usage, argmax, N, M, iscratch);
    expect_fixture(g, "usage_counts_after_forward", usage, M);
    free(usage), free(argmax), free(iscratch);

    dm_gru_forward(m->rnn_out, m->cache, m->mem_out, &m->gp, &m->gd);
    expect_fixture(g, "acts/rnn_out_layer0", dm_gru_layer_output(m->cache, &m->gd, 0), N * H);
    expect_fixture(g, "acts/rnn_out", m->rnn_out, N * H);
    float *h_n = calloc(g->L * g->B * H, sizeof(float));
    dm_gru_final_hidden(h_n, m->cache, &m->gd);
    expect_fixture(g, "acts/rnn_h_n", h_n, g->L * g->B * H);
    free(h_n);

    dm_linear_forward(m->fc1_pre, m->rnn_out, m->fc1_w, m->fc1_b, N, H, H);
    expect_fixture(g, "acts/fc1_pre", m->fc1_pre, N * H);
    dm_gelu_forward(m->fc1_act, m->fc1_pre, N * H);
    expect_fixture(g, "acts/fc1_act", m->fc1_act, N * H);
    for (size_t i = 0; i < N * H; i++) m->hidden[i] = m->fc1_act[i] * m->mask[i];
    expect_fixture(g, "acts/hidden", m->hidden, N * H);
    dm_linear_forward(m->fco_pre, m->hidden, m->fco_w, m->fco_b, N, H, V);
    expect_fixture(g, "acts/fc_output_pre", m->fco_pre, N * V);
    dm_gelu_forward(m->logits, m->fco_pre, N * V);
    expect_fixture(g, "acts/logits", m->logits, N * V);
    float *lp = calloc(N * V, sizeof(float));
    dm_log_softmax_forward(lp, m->logits, N, V);
    expect_fixture(g, "acts/log_probs", lp, N * V);
    free(lp);
}

/* Backward of one loss variant: ignore_index 0 checks the fixture folders
 * grads and act_grads; ignore_index -1 (pads counted, upstream) checks
 * with_pad/grads and with_pad/act_grads. */
static void backward(golden *g, model *m, int32_t ignore_index)
{
    const size_t V = g->V, E = g->E, D = g->D, M = g->M, H = g->H, N = g->N;
    const char *pre = ignore_index < 0 ? "with_pad/" : "";
    char name[160];
    dm_error err;

    float loss;
    size_t count;
    float *dlogits = calloc(N * V, sizeof(float));
    assert_int_equal(dm_cross_entropy(&loss, &count, dlogits, m->logits, m->tgt, N, V,
                                      ignore_index, 1.0f, &err),
                     0);
    expect_fixture(g, ignore_index < 0 ? "loss_with_pad" : "loss_ignore_pad", &loss, 1);
    snprintf(name, sizeof name, "%sact_grads/logits", pre);
    expect_fixture(g, name, dlogits, N * V);

    float *dfco_pre = calloc(N * V, sizeof(float)), *dhidden = calloc(N * H, sizeof(float));
    float *dfco_w = calloc(V * H, sizeof(float)), *dfco_b = calloc(V, sizeof(float));
    dm_gelu_backward(dfco_pre, dlogits, m->fco_pre, N * V);
    dm_linear_backward(dhidden, dfco_w, dfco_b, dfco_pre, m->hidden, m->fco_w, N, H, V);

    float *dfc1_act = calloc(N * H, sizeof(float)), *dfc1_pre = calloc(N * H, sizeof(float));
    float *drnn = calloc(N * H, sizeof(float));
    float *dfc1_w = calloc(H * H, sizeof(float)), *dfc1_b = calloc(H, sizeof(float));
    dm_dropout_backward(dfc1_act, dhidden, m->mask, N * H);
    dm_gelu_backward(dfc1_pre, dfc1_act, m->fc1_pre, N * H);
    dm_linear_backward(drnn, dfc1_w, dfc1_b, dfc1_pre, m->rnn_out, m->fc1_w, N, H, H);

    float *gbuf[DM_GRU_MAX_LAYERS][4];
    dm_gru_grads gg;
    for (size_t l = 0; l < g->L; l++) {
        for (int k = 0; k < 4; k++) gbuf[l][k] = calloc(gru_numel(g, l, k), sizeof(float));
        gg.w_ih[l] = gbuf[l][0], gg.w_hh[l] = gbuf[l][1];
        gg.b_ih[l] = gbuf[l][2], gg.b_hh[l] = gbuf[l][3];
    }
    float *dmem_out = calloc(N * D, sizeof(float));
    float *scratch = calloc(dm_gru_scratch_numel(&m->gd), sizeof(float));
    dm_gru_backward(dmem_out, &gg, drnn, m->cache, m->mem_out, &m->gp, &m->gd, scratch);

    float *dquery = calloc(N * D, sizeof(float)), *dkeys = calloc(M * D, sizeof(float));
    float *dvalues = calloc(M * D, sizeof(float)), *mscratch = calloc(N * M, sizeof(float));
    dm_memory_read_backward(dquery, dkeys, dvalues, dmem_out, m->weights, m->query, m->keys,
                            m->values, N, M, D, mscratch);

    float *dfcq_pre = calloc(N * D, sizeof(float)), *dembedded = calloc(N * E, sizeof(float));
    float *dfcq_w = calloc(D * E, sizeof(float)), *dfcq_b = calloc(D, sizeof(float));
    float *demb = calloc(V * E, sizeof(float));
    dm_gelu_backward(dfcq_pre, dquery, m->fcq_pre, N * D);
    dm_linear_backward(dembedded, dfcq_w, dfcq_b, dfcq_pre, m->embedded, m->fcq_w, N, E, D);
    dm_embedding_backward(demb, dembedded, m->ids, N, E);

    if (ignore_index >= 0) { /* activation gradients are dumped for this loss only */
        expect_fixture(g, "act_grads/hidden", dhidden, N * H);
        expect_fixture(g, "act_grads/fc1_act", dfc1_act, N * H);
        expect_fixture(g, "act_grads/rnn_out", drnn, N * H);
        expect_fixture(g, "act_grads/mem_out", dmem_out, N * D);
        expect_fixture(g, "act_grads/query", dquery, N * D);
        expect_fixture(g, "act_grads/embedded", dembedded, N * E);
    }
    struct {
        const char *name;
        const float *got;
        size_t n;
    } params[] = {
        {"embedding.weight", demb, V * E}, {"fc_query.weight", dfcq_w, D * E},
        {"fc_query.bias", dfcq_b, D},      {"memory.keys", dkeys, M * D},
        {"memory.values", dvalues, M * D}, {"fc1.weight", dfc1_w, H * H},
        {"fc1.bias", dfc1_b, H},           {"fc_output.weight", dfco_w, V * H},
        {"fc_output.bias", dfco_b, V},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        snprintf(name, sizeof name, "%sgrads/%s", pre, params[i].name);
        expect_fixture(g, name, params[i].got, params[i].n);
    }
    for (size_t l = 0; l < g->L; l++)
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%sgrads/rnn.%s_l%zu", pre, gru_names[k], l);
            expect_fixture(g, name, gbuf[l][k], gru_numel(g, l, k));
            free(gbuf[l][k]);
        }

    free(dlogits), free(dfco_pre), free(dhidden), free(dfco_w), free(dfco_b);
    free(dfc1_act), free(dfc1_pre), free(drnn), free(dfc1_w), free(dfc1_b);
    free(dmem_out), free(scratch), free(dquery), free(dkeys), free(dvalues), free(mscratch);
    free(dfcq_pre), free(dembedded), free(dfcq_w), free(dfcq_b), free(demb);
}

static void model_free(golden *g, model *m)
{
    free(m->emb), free(m->fcq_w), free(m->fcq_b), free(m->keys), free(m->values);
    free(m->fc1_w), free(m->fc1_b), free(m->fco_w), free(m->fco_b);
    for (size_t l = 0; l < g->L; l++)
        for (int k = 0; k < 4; k++) free(m->gru_w[l][k]);
    free(m->ids), free(m->tgt), free(m->mask);
    free(m->embedded), free(m->fcq_pre), free(m->query), free(m->scores), free(m->weights);
    free(m->mem_out), free(m->cache), free(m->rnn_out), free(m->fc1_pre), free(m->fc1_act);
    free(m->hidden), free(m->fco_pre), free(m->logits);
}

static void run_golden(const char *dir)
{
    golden g = {.dir = dir};
    model m;
    memset(&m, 0, sizeof m);
    load_config(&g);
    assert_true(g.L >= 1 && g.L <= DM_GRU_MAX_LAYERS);
    load_params(&g, &m);
    forward(&g, &m);
    backward(&g, &m, 0);
    backward(&g, &m, -1);
    model_free(&g, &m);
    if (g.bad) print_message("%s: %d tensors differ from PyTorch\n", dir, g.bad);
    assert_int_equal(g.bad, 0);
}

static void test_golden_1234(void **state) { run_golden("tests/fixtures/golden_1234"); }
static void test_golden_7(void **state) { run_golden("tests/fixtures/golden_7"); }

/* The reader itself refuses a file whose size does not match. */
static void test_fixture_size_check(void **state)
{
    char why[600];
    float *x = fixture_read("tests/fixtures/golden_1234", "params/fc1.bias", 13, why, sizeof why);
    assert_null(x);
    assert_non_null(strstr(why, "expected 52"));
    x = fixture_read("tests/fixtures/golden_1234", "params/no_such", 1, why, sizeof why);
    assert_null(x);
    assert_non_null(strstr(why, "cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_size_check),
        cmocka_unit_test(test_golden_1234),
        cmocka_unit_test(test_golden_7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
