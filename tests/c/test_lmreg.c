/* test_lmreg.c: the recurrent language model's options of the controller
 * (core/controller.h): input, layer and output dropout, their variational
 * form, embedding dropout, tied output weights, and a carried initial
 * state (truncated BPTT), for the GRU and the LSTM.
 *
 * Gradients are checked by central differences of loss = sum(logits * R)
 * over sampled elements of every trained parameter, in training mode with
 * every dropout on. The masks are held fixed by seeding the controller's
 * generator the same way before each forward, so the loss is one smooth
 * function of the parameters and the masks are those the real draws give
 * (the existing dropout's tests inject its mask instead; these dropouts
 * have no injection, and need none). The masks are checked to drop
 * something, and, variational, to repeat along time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/controller.h"
#include "core/nn.h"

enum { V = 11, B = 2, T = 4 };

static dm_controller_config small_cfg(const char *cell)
{
    dm_controller_config cfg = dm_controller_config_default(V);
    cfg.embedding_dim = 5, cfg.memory_embedding_dim = 4, cfg.memory_size = 3;
    cfg.hidden_size = 6, cfg.num_layers = 2;
    cfg.output_activation = DM_OUTPUT_NONE;
    strcpy(cfg.cell, cell);
    return cfg;
}

static void create(dm_controller *c, const dm_controller_config *cfg)
{
    dm_error err;
    if (dm_controller_create(c, cfg, NULL, &err) != 0) {
        print_message("%s\n", err.msg);
        fail();
    }
}

static void forward_ok(dm_controller *c, const int32_t *x, size_t b, size_t t)
{
    dm_error err;
    if (dm_controller_forward(c, x, b, t, &err) != 0) {
        print_message("%s\n", err.msg);
        fail();
    }
}

typedef struct fd_ctx {
    dm_controller *c;
    const int32_t *x;
    size_t B, T;
    const float *R;
    dm_rng rng;
} fd_ctx;

/* sum(logits * R) of a forward whose dropout draws start from seed 5. */
static double loss_of(fd_ctx *f)
{
    dm_rng_seed(&f->rng, 5);
    dm_controller_set_rng(f->c, &f->rng);
    forward_ok(f->c, f->x, f->B, f->T);
    const float *lg = dm_controller_logits(f->c);
    double s = 0;
    for (size_t i = 0; i < f->B * f->T * f->c->V; i++) s += (double)lg[i] * f->R[i];
    return s;
}

/* Checks the analytic gradient of every trained entry (a few elements
 * each, and every element of `all`, when given) against central
 * differences; returns the number of elements checked. */
static int check_gradients(fd_ctx *f, const char *all)
{
    dm_controller *c = f->c;
    dm_error err;
    loss_of(f);
    dm_controller_zero_grad(c);
    assert_int_equal(dm_controller_backward(c, f->R, f->B, f->T, &err), 0);
    dm_rng pick;
    dm_rng_seed(&pick, 3);
    int checked = 0, bad = 0;
    for (int i = 0; i < c->params.n; i++) {
        if (!dm_controller_entry_trained(c, i)) continue;
        const dm_arena_entry *e = &c->params.entries[i];
        float *p = dm_arena_ptr(&c->params, i);
        const float *g = dm_arena_ptr(&c->grads, i);
        const int every = all && strcmp(e->name, all) == 0;
        const size_t n = every ? e->numel : 4;
        for (size_t k = 0; k < n; k++) {
            size_t j = every ? k : (size_t)dm_rng_below(&pick, e->numel);
            if (strcmp(e->name, "embedding.weight") == 0 && !every)
                j = (size_t)f->x[k] * c->E + k % c->E; /* a row the batch uses */
            const float keep = p[j], h = 1e-2f;
            p[j] = keep + h;
            const double up = loss_of(f);
            p[j] = keep - h;
            const double dn = loss_of(f);
            p[j] = keep;
            const double fd = (up - dn) / (2.0 * h);
            if (!(fabs(fd - g[j]) <= 2e-3 + 1e-2 * fabs(fd))) {
                print_message("%s[%zu]: analytic %.6g, finite differences %.6g\n", e->name, j,
                              (double)g[j], fd);
                bad++;
            }
            checked++;
        }
    }
    assert_int_equal(bad, 0);
    return checked;
}

static float *weights_R(size_t n)
{
    float *R = malloc(n * sizeof *R);
    dm_rng r;
    dm_rng_seed(&r, 17);
    for (size_t i = 0; i < n; i++) R[i] = 2.0f * dm_rng_uniform(&r) - 1.0f;
    return R;
}

static const int32_t X[B * T] = {4, 5, 6, 7, 8, 9, 10, 4};

/* The fraction of zeros of an activation entry (a mask), and whether each
 * sequence's mask repeats at every step (rows of width w). */
static double zero_fraction(const dm_controller *c, const char *name, int *repeats, size_t w)
{
    const int i = dm_arena_find(&c->acts, name);
    assert_true(i >= 0);
    const float *m = dm_arena_ptr(&c->acts, i);
    const size_t n = c->acts.entries[i].numel;
    size_t z = 0;
    *repeats = 1;
    for (size_t k = 0; k < n; k++) z += m[k] == 0.0f;
    /* rows are (sequence, t, w) */
    for (size_t s = 0; s < n / (T * w); s++)
        for (size_t t = 1; t < T; t++)
            if (memcmp(m + (s * T + t) * w, m + s * T * w, w * sizeof *m) != 0) *repeats = 0;
    return (double)z / (double)n;
}

static void check_dropouts(const char *cell, int variational)
{
    dm_controller_config cfg = small_cfg(cell);
    cfg.input_dropout = 0.3, cfg.layer_dropout = 0.4, cfg.output_dropout = 0.3;
    cfg.embedding_dropout = 0.4;
    cfg.dropout = 0.2;
    cfg.variational_dropout = variational;
    dm_controller c;
    create(&c, &cfg);
    float *R = weights_R(B * T * V);
    fd_ctx f = {.c = &c, .x = X, .B = B, .T = T, .R = R};
    assert_true(check_gradients(&f, NULL) >= 4 * 15);
    /* the backward is of the forward as it ran: switching to eval in
     * between changes nothing (its masks stay those it drew) */
    dm_error err;
    loss_of(&f);
    dm_controller_zero_grad(&c);
    assert_int_equal(dm_controller_backward(&c, R, B, T, &err), 0);
    float *g1 = malloc(c.grads.numel * sizeof *g1);
    memcpy(g1, c.grads.data, c.grads.numel * sizeof *g1);
    loss_of(&f);
    dm_controller_eval(&c);
    dm_controller_zero_grad(&c);
    assert_int_equal(dm_controller_backward(&c, R, B, T, &err), 0);
    assert_memory_equal(g1, c.grads.data, c.grads.numel * sizeof *g1);
    dm_controller_train(&c);
    free(g1);
    /* every mask drops something; variational ones repeat along time */
    loss_of(&f);
    const char *masks[3] = {"input_dropout.mask", "rnn.layer_mask", "output_dropout.mask"};
    const size_t width[3] = {c.E, c.H, c.H};
    for (int k = 0; k < 3; k++) {
        int rep;
        const double z = zero_fraction(&c, masks[k], &rep, width[k]);
        if (!(z > 0.0 && z < 0.9)) print_message("%s: zero fraction %g\n", masks[k], z);
        assert_true(z > 0.0 && z < 0.9);
        assert_int_equal(rep, variational);
    }
    const float *rows = dm_arena_ptr(&c.acts, dm_arena_find(&c.acts, "embedding.row_mask"));
    size_t dropped = 0;
    for (size_t v = 0; v < V; v++) {
        assert_true(rows[v] == 0.0f || fabsf(rows[v] - 1.0f / 0.6f) < 1e-6f);
        dropped += rows[v] == 0.0f;
    }
    assert_true(dropped > 0 && dropped < V);

    /* eval: no dropout at all, the logits of the same weights without the
     * options; and the default model has none of the new parts */
    dm_controller plain;
    dm_controller_config pc = small_cfg(cell);
    pc.dropout = 0.2;
    create(&plain, &pc);
    assert_int_equal(dm_controller_entry_find(&plain, "input_dropout.mask"), -1);
    assert_int_equal(plain.params.n, c.params.n);
    memcpy(plain.params.data, c.params.data, c.params.numel * sizeof(float));
    dm_controller_eval(&c);
    dm_controller_eval(&plain);
    forward_ok(&c, X, B, T);
    forward_ok(&plain, X, B, T);
    assert_memory_equal(dm_controller_logits(&c), dm_controller_logits(&plain), B * T * V * sizeof(float));
    assert_int_equal(dm_arena_find(&plain.acts, "rnn.layer_mask"), -1);
    dm_controller_free(&plain);
    free(R);
    dm_controller_free(&c);
}

static void test_dropouts_gru(void **s) { (void)s; check_dropouts("gru", 0); }
static void test_dropouts_gru_variational(void **s) { (void)s; check_dropouts("gru", 1); }
static void test_dropouts_lstm(void **s) { (void)s; check_dropouts("lstm", 0); }
static void test_dropouts_lstm_variational(void **s) { (void)s; check_dropouts("lstm", 1); }

/* The same seed gives the same masks; the next forward draws new ones. */
static void test_dropout_draws(void **s)
{
    (void)s;
    dm_controller_config cfg = small_cfg("gru");
    cfg.input_dropout = 0.5, cfg.layer_dropout = 0.5, cfg.output_dropout = 0.5;
    cfg.embedding_dropout = 0.3, cfg.variational_dropout = 1;
    dm_controller a, b;
    create(&a, &cfg);
    create(&b, &cfg);
    memcpy(b.params.data, a.params.data, a.params.numel * sizeof(float));
    dm_rng r1, r2;
    dm_rng_seed(&r1, 9);
    dm_rng_seed(&r2, 9);
    dm_controller_set_rng(&a, &r1);
    dm_controller_set_rng(&b, &r2);
    forward_ok(&a, X, B, T);
    forward_ok(&b, X, B, T);
    assert_memory_equal(dm_controller_logits(&a), dm_controller_logits(&b), B * T * V * sizeof(float));
    forward_ok(&a, X, B, T);
    assert_memory_not_equal(dm_controller_logits(&a), dm_controller_logits(&b), B * T * V * sizeof(float));
    dm_controller_free(&a);
    dm_controller_free(&b);
}

static void test_bad_options(void **s)
{
    (void)s;
    dm_controller c;
    dm_error err;
    dm_controller_config cfg = small_cfg("gru");
    cfg.input_dropout = 1.0;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "input_dropout must be in [0, 1), got 1"));
    cfg = small_cfg("lstm");
    cfg.embedding_dropout = -0.1;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "embedding_dropout must be in [0, 1), got -0.1"));
    cfg = small_cfg("gru");
    cfg.num_layers = 1;
    cfg.layer_dropout = 0.2;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "layer_dropout acts between recurrent layers, and num_layers is 1"));
}

/* ---- tied weights ------------------------------------------------------------- */

static void check_tied(const char *cell, int64_t H)
{
    dm_controller_config cfg = small_cfg(cell);
    cfg.hidden_size = H;
    cfg.tie_weights = 1;
    cfg.dropout = 0.0;
    dm_controller c;
    create(&c, &cfg);
    assert_int_equal(dm_controller_entry_find(&c, "fc_output.weight"), -1);
    assert_true(dm_controller_entry_find(&c, "fc_output.bias") >= 0);
    const int proj = dm_controller_entry_find(&c, "tie_proj.weight");
    if (H == cfg.embedding_dim) {
        assert_int_equal(proj, -1);
    } else {
        assert_true(proj >= 0);
        assert_int_equal(c.params.entries[proj].shape[0], cfg.embedding_dim);
        assert_int_equal(c.params.entries[proj].shape[1], H);
    }
    float *R = weights_R(B * T * V);
    fd_ctx f = {.c = &c, .x = X, .B = B, .T = T, .R = R};
    /* every element of the shared matrix: rows the batch never reads get
     * their gradient from the output layer alone */
    check_gradients(&f, "embedding.weight");
    /* the output layer reads the embedding: changing a row of it that
     * no token of the batch uses changes that word's logits */
    dm_controller_eval(&c);
    forward_ok(&c, X, B, T);
    float before = dm_controller_logits(&c)[3];
    float *w = dm_arena_ptr(&c.params, dm_controller_entry_find(&c, "embedding.weight"));
    w[3 * c.E] += 0.5f; /* token 3: not in X */
    forward_ok(&c, X, B, T);
    assert_true(dm_controller_logits(&c)[3] != before);
    free(R);
    dm_controller_free(&c);
}

static void test_tied_projection_gru(void **s) { (void)s; check_tied("gru", 6); }
static void test_tied_same_width_lstm(void **s) { (void)s; check_tied("lstm", 5); }

/* ---- the carried state ---------------------------------------------------------- */

/* One forward over 2T steps equals a forward over the first T and one over
 * the next T from the first's final state; the gradient with a state set
 * passes finite differences; a forward of another batch size is refused. */
static void check_state(const char *cell)
{
    dm_controller_config cfg = small_cfg(cell);
    cfg.dropout = 0.0;
    dm_controller c;
    create(&c, &cfg);
    dm_controller_eval(&c);
    enum { T2 = 2 * T };
    int32_t x2[B * T2], x1[B * T], xb[B * T];
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T2; t++) {
            x2[b * T2 + t] = (int32_t)((b * 7 + t * 3) % V);
            if (t < T) x1[b * T + t] = x2[b * T2 + t];
            else xb[b * T + t - T] = x2[b * T2 + t];
        }
    forward_ok(&c, x2, B, T2);
    float *whole = malloc(B * T2 * V * sizeof(float));
    memcpy(whole, dm_controller_logits(&c), B * T2 * V * sizeof(float));
    const size_t n = c.L * B * c.H;
    float *h = calloc(n, sizeof *h), *cs = calloc(n, sizeof *cs);
    dm_error err;
    forward_ok(&c, x1, B, T);
    assert_int_equal(dm_controller_final_state(&c, h, cs, &err), 0);
    assert_int_equal(dm_controller_set_state(&c, h, dm_controller_has_cell_state(&c) ? cs : NULL, B, &err), 0);
    assert_int_equal(dm_controller_state_batch(&c), B);
    forward_ok(&c, xb, B, T);
    const float *lg = dm_controller_logits(&c);
    double worst = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t v = 0; v < V; v++) {
                double d = fabs((double)lg[(b * T + t) * V + v] - whole[(b * T2 + T + t) * V + v]);
                worst = d > worst ? d : worst;
            }
    if (worst > 1e-5) print_message("carried state: max |difference| %g\n", worst);
    assert_true(worst <= 1e-5);
    /* without the state the second window starts from zeros: different */
    float *carried = malloc(B * T * V * sizeof(float));
    memcpy(carried, lg, B * T * V * sizeof(float));
    dm_controller_set_state(&c, NULL, NULL, 0, &err);
    assert_int_equal(dm_controller_state_batch(&c), 0);
    forward_ok(&c, xb, B, T);
    assert_memory_not_equal(dm_controller_logits(&c), carried, B * T * V * sizeof(float));
    free(carried);

    /* the gradient with a state (the h0 terms of W_hh, and c0's of the
     * LSTM's forget gate), in training mode with dropout between layers */
    dm_controller_free(&c);
    cfg.layer_dropout = 0.3;
    create(&c, &cfg);
    for (size_t i = 0; i < n; i++) h[i] = 0.5f * sinf((float)i), cs[i] = 0.7f * cosf((float)i);
    assert_int_equal(dm_controller_set_state(&c, h, cs, B, &err), 0);
    float *R = weights_R(B * T * V);
    fd_ctx f = {.c = &c, .x = xb, .B = B, .T = T, .R = R};
    check_gradients(&f, "rnn.weight_hh_l0");
    /* the backward is of the state the forward started from, whatever is
     * set for the next forward in between */
    loss_of(&f);
    dm_controller_zero_grad(&c);
    assert_int_equal(dm_controller_backward(&c, R, B, T, &err), 0);
    const int whh = dm_controller_entry_find(&c, "rnn.weight_hh_l0");
    const size_t nw = c.params.entries[whh].numel;
    float *g1 = malloc(nw * sizeof *g1);
    memcpy(g1, dm_arena_ptr(&c.grads, whh), nw * sizeof *g1);
    loss_of(&f);
    float *hn = calloc(n, sizeof *hn);
    assert_int_equal(dm_controller_final_state(&c, hn, NULL, &err), 0);
    assert_int_equal(dm_controller_set_state(&c, hn, NULL, B, &err), 0);
    dm_controller_zero_grad(&c);
    assert_int_equal(dm_controller_backward(&c, R, B, T, &err), 0);
    assert_memory_equal(g1, dm_arena_ptr(&c.grads, whh), nw * sizeof *g1);
    free(g1);
    free(hn);
    assert_int_equal(dm_controller_set_state(&c, h, cs, B, &err), 0);
    /* another batch size is refused while the state is set */
    assert_int_equal(dm_controller_forward(&c, xb, 1, T, &err), -1);
    assert_non_null(strstr(err.msg, "the initial state set is for a batch of 2, the tokens are 1x4"));
    dm_controller_set_state(&c, NULL, NULL, 0, &err);
    forward_ok(&c, xb, 1, T);
    free(R);
    free(h);
    free(cs);
    free(whole);
    dm_controller_free(&c);
}

static void test_state_gru(void **s) { (void)s; check_state("gru"); }
static void test_state_lstm(void **s) { (void)s; check_state("lstm"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropouts_gru),
        cmocka_unit_test(test_dropouts_gru_variational),
        cmocka_unit_test(test_dropouts_lstm),
        cmocka_unit_test(test_dropouts_lstm_variational),
        cmocka_unit_test(test_dropout_draws),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_tied_projection_gru),
        cmocka_unit_test(test_tied_same_width_lstm),
        cmocka_unit_test(test_state_gru),
        cmocka_unit_test(test_state_lstm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
