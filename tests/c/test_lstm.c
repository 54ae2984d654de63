/* test_lstm.c: the LSTM cell (core/lstm.h) and `cell: lstm` in the
 * controller. Parity with torch.nn.LSTM (tests/fixtures/lstm/lstm.json,
 * made by tests/fixtures/make_lstm.py): outputs and every gradient of
 * sum(out * R) to 1e-5 of each tensor's scale, for one layer and for two
 * layers with In != H; finite differences of the cell and of a whole
 * controller built with cell = "lstm"; PyTorch's state_dict names and
 * shapes (4H gate rows) in the controller's arena; bad sizes and an
 * unknown cell refused with a message. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/controller.h"
#include "core/lstm.h"
#include "fdcheck.h"
#include "fixture.h"

static json_t *fx;

static int setup(void **state)
{
    fx = fixture_json("tests/fixtures/lstm/lstm.json");
    return fx ? 0 : -1;
}

static int teardown(void **state)
{
    json_decref(fx);
    return 0;
}

static float *load(json_t *arr, size_t n, const char *what)
{
    if (!json_is_array(arr) || json_array_size(arr) != n)
        fail_msg("lstm.json: %s should have %zu values", what, n);
    float *r = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) r[i] = (float)json_number_value(json_array_get(arr, i));
    return r;
}

static void assert_close(const char *what, const float *got, json_t *ref, size_t n, double tol)
{
    float *r = load(ref, n, what);
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(r[i]));
    if (scale == 0.0) scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - r[i]) <= tol * scale))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got[i], r[i]);
    free(r);
}

/* One fixture case: dims, parameters, grads, input, weights R. */
typedef struct lcase {
    json_t *j;
    dm_lstm_dims d;
    dm_lstm_params p;
    dm_lstm_grads g;
    float *x, *R, *out, *cache, *scratch, *dx;
    float *t[4 * DM_GRU_MAX_LAYERS], *gt[4 * DM_GRU_MAX_LAYERS];
} lcase;

static const char *const tensor_fmt[4] = {"weight_ih_l%zu", "weight_hh_l%zu", "bias_ih_l%zu",
                                          "bias_hh_l%zu"};

static size_t tensor_numel(const dm_lstm_dims *d, size_t l, int k)
{
    size_t in = l == 0 ? d->In : d->H;
    return 4 * d->H * (k == 0 ? in : k == 1 ? d->H : 1);
}

static void case_open(lcase *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->j = json_object_get(fx, name);
    assert_non_null(c->j);
    json_t *dims = json_object_get(c->j, "dims");
    c->d.B = (size_t)json_integer_value(json_object_get(dims, "B"));
    c->d.T = (size_t)json_integer_value(json_object_get(dims, "T"));
    c->d.In = (size_t)json_integer_value(json_object_get(dims, "In"));
    c->d.H = (size_t)json_integer_value(json_object_get(dims, "H"));
    c->d.L = (size_t)json_integer_value(json_object_get(dims, "L"));
    dm_error err;
    assert_int_equal(dm_lstm_dims_check(&c->d, &err), 0);
    const size_t BT = c->d.B * c->d.T;
    for (size_t l = 0; l < c->d.L; l++)
        for (int k = 0; k < 4; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, tensor_fmt[k], l);
            size_t n = tensor_numel(&c->d, l, k);
            float *v = load(json_object_get(json_object_get(c->j, "params"), nm), n, nm);
            float *g = zeros(n);
            c->t[l * 4 + k] = v;
            c->gt[l * 4 + k] = g;
            const float **ps[4] = {&c->p.w_ih[l], &c->p.w_hh[l], &c->p.b_ih[l], &c->p.b_hh[l]};
            float **gs[4] = {&c->g.w_ih[l], &c->g.w_hh[l], &c->g.b_ih[l], &c->g.b_hh[l]};
            *ps[k] = v;
            *gs[k] = g;
        }
    c->x = load(json_object_get(c->j, "x"), BT * c->d.In, "x");
    c->R = load(json_object_get(c->j, "R"), BT * c->d.H, "R");
    c->out = zeros(BT * c->d.H);
    c->dx = zeros(BT * c->d.In);
    c->cache = zeros(dm_lstm_cache_numel(&c->d));
    c->scratch = zeros(dm_lstm_scratch_numel(&c->d));
}

static void case_close(lcase *c)
{
    for (size_t i = 0; i < 4 * c->d.L; i++) free(c->t[i]), free(c->gt[i]);
    free(c->x), free(c->R), free(c->out), free(c->dx), free(c->cache), free(c->scratch);
}

static double case_loss(void *ctx)
{
    lcase *c = ctx;
    dm_lstm_forward(c->out, c->cache, c->x, &c->p, &c->d);
    return dotd(c->out, c->R, c->d.B * c->d.T * c->d.H);
}

static void check_parity(const char *name)
{
    lcase c;
    case_open(&c, name);
    const size_t BT = c.d.B * c.d.T;
    case_loss(&c);
    assert_close("out", c.out, json_object_get(c.j, "out"), BT * c.d.H, 1e-5);
    dm_lstm_backward(c.dx, &c.g, c.R, c.cache, c.x, &c.p, &c.d, c.scratch);
    assert_close("dx", c.dx, json_object_get(c.j, "dx"), BT * c.d.In, 1e-5);
    for (size_t l = 0; l < c.d.L; l++)
        for (int k = 0; k < 4; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, tensor_fmt[k], l);
            assert_close(nm, c.gt[l * 4 + k], json_object_get(json_object_get(c.j, "grads"), nm),
                         tensor_numel(&c.d, l, k), 1e-5);
        }
    /* Backward adds: a second run doubles every gradient. */
    float g0 = c.gt[0][0];
    dm_lstm_backward(c.dx, &c.g, c.R, c.cache, c.x, &c.p, &c.d, c.scratch);
    assert_true(fabsf(c.gt[0][0] - 2.0f * g0) <= 1e-6f * fmaxf(1.0f, fabsf(g0)));
    case_close(&c);
}

static void test_parity_one_layer(void **s) { check_parity("one_layer"); }
static void test_parity_two_layers(void **s) { check_parity("two_layers"); }

static void test_finite_differences(void **s)
{
    lcase c;
    case_open(&c, "two_layers");
    case_loss(&c);
    dm_lstm_backward(c.dx, &c.g, c.R, c.cache, c.x, &c.p, &c.d, c.scratch);
    check_grad("lstm dx", c.x, c.d.B * c.d.T * c.d.In, c.dx, case_loss, &c, 1e-2f);
    for (size_t i = 0; i < 4 * c.d.L; i++)
        check_grad("lstm param", c.t[i], tensor_numel(&c.d, i / 4, (int)(i % 4)), c.gt[i], case_loss,
                   &c, 1e-2f);
    case_close(&c);
}

/* ---- cell = "lstm" in the controller ---- */

static dm_controller_config small_cfg(void)
{
    dm_controller_config cfg = dm_controller_config_default(11);
    cfg.embedding_dim = 6;
    cfg.memory_embedding_dim = 5;
    cfg.memory_size = 4;
    cfg.hidden_size = 7;
    cfg.num_layers = 2;
    cfg.dropout = 0.0;
    strcpy(cfg.cell, "lstm");
    return cfg;
}

static double ctrl_loss(dm_controller *c, const int32_t *x, size_t B, size_t T, const float *R)
{
    dm_error err;
    assert_int_equal(dm_controller_forward(c, x, B, T, &err), 0);
    return dotd(dm_controller_logits(c), R, B * T * c->V);
}

static void test_controller_lstm(void **s)
{
    dm_controller_config cfg = small_cfg();
    dm_controller c;
    dm_error err;
    dm_rng r;
    dm_rng_seed(&r, 5);
    assert_int_equal(dm_controller_create(&c, &cfg, &r, &err), 0);
    /* PyTorch's names, 4H gate rows, layer 1 reading H */
    int w0 = dm_controller_entry_find(&c, "rnn.weight_ih_l0");
    int w1 = dm_controller_entry_find(&c, "rnn.weight_ih_l1");
    int b1 = dm_controller_entry_find(&c, "rnn.bias_hh_l1");
    assert_true(w0 >= 0 && w1 >= 0 && b1 >= 0);
    assert_int_equal(dm_controller_entry_info(&c, w0)->shape[0], 28);
    assert_int_equal(dm_controller_entry_info(&c, w0)->shape[1], 5);
    assert_int_equal(dm_controller_entry_info(&c, w1)->shape[1], 7);
    assert_int_equal(dm_controller_entry_info(&c, b1)->shape[0], 28);
    /* the same entries, in the same order, as the GRU model's around the cell */
    assert_string_equal(dm_controller_entry_info(&c, w0 - 1)->name, "fc_query.bias");
    assert_string_equal(dm_controller_entry_info(&c, b1 + 1)->name, "fc1.weight");

    const size_t B = 2, T = 4, NV = B * T * c.V;
    int32_t x[8] = {1, 4, 2, 9, 3, 3, 0, 10};
    float *R = randv(NV, 1.0f, &r);
    ctrl_loss(&c, x, B, T, R);
    dm_controller_zero_grad(&c);
    assert_int_equal(dm_controller_backward(&c, R, B, T, &err), 0);
    int bad = 0, checked = 0;
    for (int i = 0; i < dm_controller_num_entries(&c); i++) {
        const dm_arena_entry *e = dm_controller_entry_info(&c, i);
        if (strncmp(e->name, "rnn.", 4) != 0) continue;
        float *p = dm_controller_entry_value(&c, i);
        const float *gr = dm_controller_entry_grad(&c, i);
        assert_non_null(gr);
        for (int k = 0; k < 4; k++) {
            size_t j = (size_t)dm_rng_below(&r, e->numel);
            float keep = p[j], h = 1e-2f;
            p[j] = keep + h;
            double up = ctrl_loss(&c, x, B, T, R);
            p[j] = keep - h;
            double dn = ctrl_loss(&c, x, B, T, R);
            p[j] = keep;
            double fd = (up - dn) / (2.0 * h);
            if (!(fabs(fd - gr[j]) <= 2e-3 + 1e-2 * fabs(fd))) {
                print_message("%s[%zu]: analytic %.6g, finite differences %.6g\n", e->name, j,
                              (double)gr[j], fd);
                bad++;
            }
            checked++;
        }
    }
    assert_int_equal(checked, 8 * 4);
    assert_int_equal(bad, 0);
    free(R);
    dm_controller_free(&c);
}

static void test_bad_input(void **s)
{
    dm_error err;
    dm_lstm_dims d = {2, 3, 4, 0, 1};
    assert_int_equal(dm_lstm_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "H=0"));
    dm_controller_config cfg = small_cfg();
    strcpy(cfg.cell, "rnn");
    dm_controller c;
    assert_int_equal(dm_controller_create(&c, &cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "cell must be one of gru, lstm, got \"rnn\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_one_layer),
        cmocka_unit_test(test_parity_two_layers),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_controller_lstm),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
