/* test_layers.c: the layers of nn.h and gru.h against finite differences.
 *
 * Every check turns a layer's output into a scalar loss = sum(out * R) with
 * a fixed random R (summed in double), perturbs one input or parameter
 * element at a time by +-eps (central differences, float32 forward), and
 * compares (loss+ - loss-) / (actual step) with the analytic gradient that
 * backward accumulated. Tolerance: max |fd - analytic| <= FD_RTOL times the
 * max-abs of the analytic gradient tensor (float32 rounding of the forward
 * divided by eps dominates; a wrong formula is off by O(1) of that scale).
 * Also: backward accumulates (twice = double), dropout masks, huge logits,
 * ignore_index, and the bad-input errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm.h"
#include "core/gru.h"
#include "core/nn.h"
#include "core/rng.h"
#include "core/vmath.h"

#include "fdcheck.h"

static void assert_doubled(const char *what, const float *once, const float *twice, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)twice[i] - 2.0 * (double)once[i]);
        if (d > 1e-6 * (1.0 + fabs(once[i]))) {
            print_message("%s[%zu]: %g after two backwards, %g after one\n", what, i,
                          (double)twice[i], (double)once[i]);
            fail();
        }
    }
}

/* ---- Linear ---- */

typedef struct {
    size_t N, C, OC;
    float *in, *w, *b, *out, *R;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    dm_linear_forward(c->out, c->in, c->w, c->b, c->N, c->C, c->OC);
    return dotd(c->out, c->R, c->N * c->OC);
}

static void test_linear(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 1);
    lin_ctx c = {.N = 6, .C = 5, .OC = 4};
    c.in = randv(c.N * c.C, 1, &r);
    c.w = randv(c.OC * c.C, 1, &r);
    c.b = randv(c.OC, 1, &r);
    c.out = zeros(c.N * c.OC);
    c.R = randv(c.N * c.OC, 1, &r);
    /* Forward against a direct loop. */
    lin_loss(&c);
    for (size_t n = 0; n < c.N; n++)
        for (size_t o = 0; o < c.OC; o++) {
            double s = c.b[o];
            for (size_t i = 0; i < c.C; i++) s += (double)c.in[n * c.C + i] * c.w[o * c.C + i];
            assert_float_equal(c.out[n * c.OC + o], s, 1e-5);
        }
    float *din = zeros(c.N * c.C), *dw = zeros(c.OC * c.C), *db = zeros(c.OC);
    dm_linear_backward(din, dw, db, c.R, c.in, c.w, c.N, c.C, c.OC);
    check_grad("linear din", c.in, c.N * c.C, din, lin_loss, &c, 1e-2f);
    check_grad("linear dweight", c.w, c.OC * c.C, dw, lin_loss, &c, 1e-2f);
    check_grad("linear dbias", c.b, c.OC, db, lin_loss, &c, 1e-2f);

    /* Accumulation: a second backward doubles every gradient. */
    float *din2 = zeros(c.N * c.C), *dw2 = zeros(c.OC * c.C), *db2 = zeros(c.OC);
    for (int k = 0; k < 2; k++) dm_linear_backward(din2, dw2, db2, c.R, c.in, c.w, c.N, c.C, c.OC);
    assert_doubled("linear din", din, din2, c.N * c.C);
    assert_doubled("linear dweight", dw, dw2, c.OC * c.C);
    assert_doubled("linear dbias", db, db2, c.OC);

    /* No bias: out = in W^T exactly; NULL gradients are skipped. */
    float *nb = c.b;
    c.b = NULL;
    lin_loss(&c);
    for (size_t o = 0; o < c.OC; o++) {
        double s = 0;
        for (size_t i = 0; i < c.C; i++) s += (double)c.in[i] * c.w[o * c.C + i];
        assert_float_equal(c.out[o], s, 1e-5);
    }
    dm_linear_backward(NULL, dw2, NULL, c.R, c.in, c.w, c.N, c.C, c.OC);
    free(nb);
    free(c.in), free(c.w), free(c.out), free(c.R);
    free(din), free(dw), free(db), free(din2), free(dw2), free(db2);
}

/* ---- GELU ---- */

typedef struct {
    size_t n;
    float *in, *out, *R;
} gelu_ctx;

static double gelu_loss(void *p)
{
    gelu_ctx *c = p;
    dm_gelu_forward(c->out, c->in, c->n);
    return dotd(c->out, c->R, c->n);
}

static void test_gelu(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 2);
    gelu_ctx c = {.n = 40};
    c.in = randv(c.n, 4, &r);
    c.in[0] = 0.0f, c.in[1] = -7.0f, c.in[2] = 7.0f;
    c.out = zeros(c.n);
    c.R = randv(c.n, 1, &r);
    gelu_loss(&c);
    /* Known values of the exact (erf) form. */
    float probe[3] = {1.0f, -1.0f, 0.5f}, got[3];
    dm_gelu_forward(got, probe, 3);
    assert_float_equal(got[0], 0.8413447460685429, 1e-6);
    assert_float_equal(got[1], -0.15865525393145707, 1e-6);
    assert_float_equal(got[2], 0.34573123063700656, 1e-6);
    float *din = zeros(c.n), *din2 = zeros(c.n);
    dm_gelu_backward(din, c.R, c.in, c.n);
    check_grad("gelu din", c.in, c.n, din, gelu_loss, &c, 1e-2f);
    dm_gelu_backward(din2, c.R, c.in, c.n);
    dm_gelu_backward(din2, c.R, c.in, c.n);
    assert_doubled("gelu din", din, din2, c.n);
    free(c.in), free(c.out), free(c.R), free(din), free(din2);
}

/* ---- Embedding ---- */

typedef struct {
    size_t N, V, E;
    int32_t *ids;
    float *w, *out, *R;
} emb_ctx;

static double emb_loss(void *p)
{
    emb_ctx *c = p;
    assert_int_equal(dm_embedding_forward(c->out, c->ids, c->w, c->N, c->V, c->E, NULL), 0);
    return dotd(c->out, c->R, c->N * c->E);
}

static void test_embedding(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 3);
    int32_t ids[7] = {3, 0, 3, 9, 4, 3, 9}; /* repeats must add up */
    emb_ctx c = {.N = 7, .V = 10, .E = 4, .ids = ids};
    c.w = randv(c.V * c.E, 1, &r);
    c.out = zeros(c.N * c.E);
    c.R = randv(c.N * c.E, 1, &r);
    emb_loss(&c);
    assert_memory_equal(c.out + 3 * c.E, c.w + 9 * c.E, c.E * sizeof(float));
    float *dw = zeros(c.V * c.E), *dw2 = zeros(c.V * c.E);
    dm_embedding_backward(dw, c.R, ids, c.N, c.E);
    check_grad("embedding dweight", c.w, c.V * c.E, dw, emb_loss, &c, 1e-2f);
    for (size_t e = 0; e < c.E; e++) assert_float_equal(dw[1 * c.E + e], 0.0f, 0); /* unused row */
    dm_embedding_backward(dw2, c.R, ids, c.N, c.E);
    dm_embedding_backward(dw2, c.R, ids, c.N, c.E);
    assert_doubled("embedding dweight", dw, dw2, c.V * c.E);
    free(c.w), free(c.out), free(c.R), free(dw), free(dw2);
}

static void test_embedding_bad_ids(void **state)
{
    float w[20 * 2] = {0}, out[3 * 2];
    dm_error err;
    int32_t high[3] = {1, 20, 2}, low[3] = {-1, 0, 0};
    assert_int_equal(dm_embedding_forward(out, high, w, 3, 20, 2, &err), -1);
    assert_non_null(strstr(err.msg, "embedding"));
    assert_non_null(strstr(err.msg, "token id 20"));
    assert_non_null(strstr(err.msg, "vocabulary size 20"));
    assert_non_null(strstr(err.msg, "position 1"));
    assert_int_equal(dm_embedding_forward(out, low, w, 3, 20, 2, &err), -1);
    assert_non_null(strstr(err.msg, "token id -1"));
    assert_non_null(strstr(err.msg, "vocabulary size 20"));
    int32_t ok[3] = {0, 19, 5};
    assert_int_equal(dm_embedding_forward(out, ok, w, 3, 20, 2, &err), 0);
}

/* ---- Dropout ---- */

typedef struct {
    size_t n;
    float *in, *mask, *out, *R;
} drop_ctx;

/* The mask is fixed (drawn once), so the loss is linear in `in`. */
static double drop_loss(void *p)
{
    drop_ctx *c = p;
    for (size_t i = 0; i < c->n; i++) c->out[i] = c->in[i] * c->mask[i];
    return dotd(c->out, c->R, c->n);
}

static void test_dropout(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 4);
    const size_t n = 20000;
    float *in = randv(n, 1, &r), *out = zeros(n), *mask = zeros(n);
    dm_dropout_forward(out, mask, in, n, 0.3f, 1, &r);
    size_t dropped = 0;
    const float keep = (float)(1.0 / 0.7);
    for (size_t i = 0; i < n; i++) {
        assert_true(mask[i] == 0.0f || mask[i] == keep);
        dropped += mask[i] == 0.0f;
        assert_float_equal(out[i], in[i] * mask[i], 0);
    }
    /* 0.3 * 20000 = 6000, sd ~65: 6 sd either side. */
    assert_in_range(dropped, 5600, 6400);

    /* Same seed, same mask. */
    dm_rng r1, r2;
    dm_rng_seed(&r1, 9), dm_rng_seed(&r2, 9);
    float *m2 = zeros(n);
    dm_dropout_forward(out, mask, in, n, 0.3f, 1, &r1);
    dm_dropout_forward(out, m2, in, n, 0.3f, 1, &r2);
    assert_memory_equal(mask, m2, n * sizeof(float));

    /* Eval: identity, mask of ones, the generator untouched. */
    dm_rng before = r1;
    dm_dropout_forward(out, m2, in, n, 0.3f, 0, &r1);
    assert_memory_equal(out, in, n * sizeof(float));
    for (size_t i = 0; i < n; i++) assert_true(m2[i] == 1.0f);
    assert_memory_equal(&before, &r1, sizeof before);
    /* p = 1 drops everything, without infinities. */
    dm_dropout_forward(out, m2, in, 16, 1.0f, 1, &r1);
    for (size_t i = 0; i < 16; i++) assert_true(out[i] == 0.0f && m2[i] == 0.0f);

    /* Backward with a fixed mask, by finite differences. */
    drop_ctx c = {.n = 50, .in = in, .mask = mask, .out = out};
    c.R = randv(c.n, 1, &r);
    float *din = zeros(c.n), *din2 = zeros(c.n);
    dm_dropout_backward(din, c.R, mask, c.n);
    check_grad("dropout din", in, c.n, din, drop_loss, &c, 1e-2f);
    dm_dropout_backward(din2, c.R, mask, c.n);
    dm_dropout_backward(din2, c.R, mask, c.n);
    assert_doubled("dropout din", din, din2, c.n);
    free(in), free(out), free(mask), free(m2), free(c.R), free(din), free(din2);
}

/* ---- cross-entropy ---- */

typedef struct {
    size_t N, V;
    float *logits;
    int32_t *targets;
    int32_t ignore;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    float loss;
    size_t cnt;
    assert_int_equal(dm_cross_entropy(&loss, &cnt, NULL, c->logits, c->targets, c->N, c->V,
                                      c->ignore, 1.0f, NULL),
                     0);
    return loss;
}

static double ce_reference(const float *x, const int32_t *t, size_t N, size_t V, int32_t ignore)
{
    double s = 0;
    size_t cnt = 0;
    for (size_t n = 0; n < N; n++) {
        if (ignore >= 0 && t[n] == ignore) continue;
        double z = 0;
        for (size_t v = 0; v < V; v++) z += exp((double)x[n * V + v]);
        s += log(z) - x[n * V + t[n]];
        cnt++;
    }
    return s / (double)cnt;
}

static void test_cross_entropy(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 5);
    int32_t targets[6] = {2, 0, 4, 0, 1, 3};
    ce_ctx c = {.N = 6, .V = 5, .targets = targets};
    c.logits = randv(c.N * c.V, 2, &r);
    for (int pass = 0; pass < 2; pass++) {
        c.ignore = pass == 0 ? -1 : 0;
        float loss, *dl = zeros(c.N * c.V), *dl2 = zeros(c.N * c.V);
        size_t cnt;
        dm_error err;
        assert_int_equal(dm_cross_entropy(&loss, &cnt, dl, c.logits, targets, c.N, c.V, c.ignore,
                                          1.0f, &err),
                         0);
        assert_int_equal(cnt, pass == 0 ? 6 : 4);
        assert_float_equal(loss, ce_reference(c.logits, targets, c.N, c.V, c.ignore), 1e-6);
        check_grad(pass == 0 ? "cross_entropy dlogits" : "cross_entropy dlogits (ignore 0)",
                   c.logits, c.N * c.V, dl, ce_loss, &c, 1e-2f);
        if (pass == 1)
            for (size_t v = 0; v < c.V; v++) assert_float_equal(dl[1 * c.V + v], 0.0f, 0);
        /* dloss scales; two calls add. */
        for (int k = 0; k < 2; k++)
            dm_cross_entropy(&loss, &cnt, dl2, c.logits, targets, c.N, c.V, c.ignore, 0.5f, &err);
        for (size_t i = 0; i < c.N * c.V; i++) assert_float_equal(dl2[i], dl[i], 1e-7);
        free(dl), free(dl2);
    }
    free(c.logits);
}

/* The fused output loss of the GELU'd logits against the unfused path
 * (GELU forward, cross-entropy into a zeroed buffer, GELU backward): the
 * same loss and count and the same gradient bits, on odd sizes, with an
 * ignored target, in place over pre, without the GELU (pre NULL), and with
 * every target ignored; then finite differences of the loss through the
 * GELU with respect to pre. */
typedef struct {
    size_t N, V;
    float *pre, *logits;
    int32_t *targets;
    int32_t ignore;
} fused_ctx;

static double fused_loss(void *p)
{
    fused_ctx *c = p;
    float loss;
    size_t cnt;
    dm_gelu_forward(c->logits, c->pre, c->N * c->V);
    assert_int_equal(dm_cross_entropy(&loss, &cnt, NULL, c->logits, c->targets, c->N, c->V,
                                      c->ignore, 1.0f, NULL),
                     0);
    return loss;
}

static void test_cross_entropy_fused(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 11);
    const size_t N = 7, V = 37, n = N * V;
    int32_t targets[7] = {3, 0, 36, 5, 0, 17, 1};
    float *pre = randv(n, 3, &r), *logits = zeros(n), *dl = zeros(n), *want = zeros(n);
    float *got = zeros(n), *inplace = zeros(n);
    dm_error err;
    for (int ig = -1; ig <= 0; ig++) {
        dm_gelu_forward(logits, pre, n);
        float l0, l1, l2;
        size_t c0, c1, c2;
        memset(dl, 0, n * sizeof *dl);
        assert_int_equal(dm_cross_entropy(&l0, &c0, dl, logits, targets, N, V, ig, 0.7f, &err), 0);
        dm_vgelu_backward(want, dl, pre, n, 0);
        assert_int_equal(dm_cross_entropy_pre(&l1, &c1, got, logits, pre, targets, N, V, ig, 0.7f,
                                              &err),
                         0);
        assert_memory_equal(&l1, &l0, sizeof l0);
        assert_int_equal(c1, c0);
        assert_memory_equal(got, want, n * sizeof *got);
        /* in place: the gradient replaces pre row by row */
        memcpy(inplace, pre, n * sizeof *pre);
        assert_int_equal(dm_cross_entropy_pre(&l2, &c2, inplace, logits, inplace, targets, N, V,
                                              ig, 0.7f, &err),
                         0);
        assert_memory_equal(inplace, want, n * sizeof *inplace);
        /* no GELU: dpre is dlogits itself, overwritten (not added) */
        for (size_t i = 0; i < n; i++) got[i] = 99.0f;
        assert_int_equal(dm_cross_entropy_pre(&l2, &c2, got, logits, NULL, targets, N, V, ig, 0.7f,
                                              &err),
                         0);
        assert_memory_equal(got, dl, n * sizeof *got);
        assert_memory_equal(&l2, &l0, sizeof l0);
    }
    /* every target ignored: NaN, count 0, a zero gradient */
    int32_t pads[7] = {0, 0, 0, 0, 0, 0, 0};
    float l;
    size_t c;
    for (size_t i = 0; i < n; i++) got[i] = 99.0f;
    assert_int_equal(dm_cross_entropy_pre(&l, &c, got, logits, pre, pads, N, V, 0, 1.0f, &err), 0);
    assert_true(isnan(l));
    assert_int_equal(c, 0);
    for (size_t i = 0; i < n; i++) assert_true(got[i] == 0.0f);
    /* a bad target writes nothing */
    int32_t bad[7] = {3, 0, 37, 5, 0, 17, 1};
    for (size_t i = 0; i < n; i++) got[i] = 99.0f;
    assert_int_equal(dm_cross_entropy_pre(&l, &c, got, logits, pre, bad, N, V, -1, 1.0f, &err), -1);
    assert_non_null(strstr(err.msg, "target 37 at position 2"));
    for (size_t i = 0; i < n; i++) assert_true(got[i] == 99.0f);
    /* finite differences through the GELU */
    fused_ctx fc = {N, V, pre, logits, targets, 0};
    dm_gelu_forward(logits, pre, n);
    assert_int_equal(dm_cross_entropy_pre(&l, &c, got, logits, pre, targets, N, V, 0, 1.0f, &err),
                     0);
    check_grad("cross_entropy_pre dpre", pre, n, got, fused_loss, &fc, 1e-2f);
    free(pre), free(logits), free(dl), free(want), free(got), free(inplace);
}

/* The output path's row loops split over the products' pool (oneDNN's
 * threads) give the bits of one thread: the fused loss and gradient, the
 * plain cross-entropy's, and a GELU over more than one block per thread. */
static void test_output_threads(void **state)
{
    dm_error err;
    if (dm_gemm_use("dnnl", &err) != 0) {
        print_message("oneDNN does not load here: its pool is not used, nothing to split\n");
        skip();
    }
    dm_rng r;
    dm_rng_seed(&r, 13);
    const size_t N = 203, V = 2601, n = N * V; /* 129 GELU blocks: two per thread at least */
    int32_t *targets = calloc(N, sizeof *targets);
    for (size_t i = 0; i < N; i++) targets[i] = (int32_t)(dm_rng_uniform(&r) * (float)V) % (int32_t)V;
    float *pre = randv(n, 3, &r), *logits[2], *dpre[2], *dl[2], loss[2][2];
    size_t cnt;
    for (int k = 0; k < 2; k++) {
        dm_gemm_set_threads(k == 0 ? 1 : 2);
        logits[k] = zeros(n), dpre[k] = zeros(n), dl[k] = zeros(n);
        dm_gelu_forward(logits[k], pre, n);
        assert_int_equal(dm_cross_entropy_pre(&loss[k][0], &cnt, dpre[k], logits[k], pre, targets,
                                              N, V, 0, 1.0f, &err),
                         0);
        assert_int_equal(dm_cross_entropy(&loss[k][1], &cnt, dl[k], logits[k], targets, N, V, 0,
                                          1.0f, &err),
                         0);
    }
    assert_memory_equal(logits[0], logits[1], n * sizeof(float));
    assert_memory_equal(dpre[0], dpre[1], n * sizeof(float));
    assert_memory_equal(dl[0], dl[1], n * sizeof(float));
    assert_memory_equal(loss[0], loss[1], sizeof loss[0]);
    for (int k = 0; k < 2; k++) free(logits[k]), free(dpre[k]), free(dl[k]);
    free(pre);
    free(targets);
}

static void test_cross_entropy_extremes(void **state)
{
    /* Logits of 1e4 overflow a naive exp; the result must stay finite. */
    float x[2 * 3] = {1e4f, 0.0f, -1e4f, 1e4f, 1e4f - 2.0f, 1e4f};
    int32_t t[2] = {1, 0};
    float loss, dl[6] = {0};
    size_t cnt;
    dm_error err;
    assert_int_equal(dm_cross_entropy(&loss, &cnt, dl, x, t, 2, 3, -1, 1.0f, &err), 0);
    assert_true(isfinite(loss));
    /* Row 0: NLL = 1e4 (exact up to e^-1e4); row 1: log(2 + e^-2). */
    assert_float_equal(loss, (1e4 + log(2.0 + exp(-2.0))) / 2.0, 1e-2);
    for (int i = 0; i < 6; i++) assert_true(isfinite(dl[i]));
    assert_float_equal(dl[0], 0.5f, 1e-6);
    assert_float_equal(dl[1], -0.5f, 1e-6);

    /* All targets ignored: NaN with count 0, gradient untouched. */
    int32_t pads[2] = {0, 0};
    float g[6] = {0};
    assert_int_equal(dm_cross_entropy(&loss, &cnt, g, x, pads, 2, 3, 0, 1.0f, &err), 0);
    assert_true(isnan(loss));
    assert_int_equal(cnt, 0);
    for (int i = 0; i < 6; i++) assert_true(g[i] == 0.0f);

    /* A target out of range fails, naming it and V, and writes nothing. */
    int32_t bad[2] = {1, 3};
    cnt = 77;
    assert_int_equal(dm_cross_entropy(&loss, &cnt, g, x, bad, 2, 3, 0, 1.0f, &err), -1);
    assert_non_null(strstr(err.msg, "cross_entropy"));
    assert_non_null(strstr(err.msg, "target 3"));
    assert_non_null(strstr(err.msg, "vocabulary size 3"));
    assert_int_equal(cnt, 77);
    int32_t neg[2] = {-5, 1};
    assert_int_equal(dm_cross_entropy(&loss, &cnt, g, x, neg, 2, 3, 0, 1.0f, &err), -1);
    assert_non_null(strstr(err.msg, "target -5"));
    /* A negative ignore_index means "ignore nothing" (not PyTorch's -100). */
    int32_t ign[2] = {-100, 1};
    assert_int_equal(dm_cross_entropy(&loss, &cnt, g, x, ign, 2, 3, -100, 1.0f, &err), -1);
    for (int i = 0; i < 6; i++) assert_true(g[i] == 0.0f);

    /* log_softmax agrees with the log-sum-exp form and stays finite. */
    float lp[6];
    dm_log_softmax_forward(lp, x, 2, 3);
    assert_float_equal(lp[0], 0.0f, 1e-6);
    assert_float_equal(lp[1], -1e4f, 1e-1);
    assert_float_equal(lp[3], -log(2.0 + exp(-2.0)), 1e-6);
}

/* ---- GRU ---- */

#define GB 2
#define GT 7
#define GI 3
#define GH 4
#define GL 2

typedef struct {
    dm_gru_dims d;
    dm_gru_params p;
    float *w[GL][4]; /* w_ih, w_hh, b_ih, b_hh */
    float *in, *out, *cache, *R;
} gru_ctx;

static double gru_loss(void *pv)
{
    gru_ctx *c = pv;
    dm_gru_forward(c->out, c->cache, c->in, &c->p, &c->d);
    return dotd(c->out, c->R, GB * GT * GH);
}

static size_t gru_numel(size_t l, int k)
{
    size_t in = l == 0 ? GI : GH;
    return k == 0 ? 3 * GH * in : k == 1 ? 3 * GH * GH : 3 * GH;
}

static void gru_setup(gru_ctx *c, dm_rng *r)
{
    memset(c, 0, sizeof *c);
    c->d = (dm_gru_dims){.B = GB, .T = GT, .In = GI, .H = GH, .L = GL};
    assert_int_equal(dm_gru_dims_check(&c->d, NULL), 0);
    for (size_t l = 0; l < GL; l++) {
        for (int k = 0; k < 4; k++) c->w[l][k] = randv(gru_numel(l, k), 0.6f, r);
        c->p.w_ih[l] = c->w[l][0], c->p.w_hh[l] = c->w[l][1];
        c->p.b_ih[l] = c->w[l][2], c->p.b_hh[l] = c->w[l][3];
    }
    c->in = randv(GB * GT * GI, 1, r);
    c->out = zeros(GB * GT * GH);
    c->cache = zeros(dm_gru_cache_numel(&c->d));
    c->R = randv(GB * GT * GH, 1, r);
}

static void gru_teardown(gru_ctx *c)
{
    for (size_t l = 0; l < GL; l++)
        for (int k = 0; k < 4; k++) free(c->w[l][k]);
    free(c->in), free(c->out), free(c->cache), free(c->R);
}

static void gru_grads_alloc(dm_gru_grads *g, float *bufs[GL][4])
{
    for (size_t l = 0; l < GL; l++) {
        for (int k = 0; k < 4; k++) bufs[l][k] = zeros(gru_numel(l, k));
        g->w_ih[l] = bufs[l][0], g->w_hh[l] = bufs[l][1];
        g->b_ih[l] = bufs[l][2], g->b_hh[l] = bufs[l][3];
    }
}

/* One step of a single-layer GRU by hand, against the kernel. */
static void test_gru_one_step(void **state)
{
    float wih[3 * 1 * 1] = {0.5f, -0.3f, 0.8f}, whh[3] = {0.1f, 0.2f, -0.4f};
    float bih[3] = {0.05f, -0.1f, 0.2f}, bhh[3] = {0.3f, 0.1f, -0.2f};
    float in[2] = {0.7f, -1.1f}, out[2], cache[2 * 7];
    dm_gru_dims d = {.B = 1, .T = 2, .In = 1, .H = 1, .L = 1};
    dm_gru_params p = {{wih}, {whh}, {bih}, {bhh}};
    dm_gru_forward(out, cache, in, &p, &d);
    double h = 0;
    for (int t = 0; t < 2; t++) {
        double x = in[t];
        double r = 1 / (1 + exp(-(wih[0] * x + bih[0] + whh[0] * h + bhh[0])));
        double z = 1 / (1 + exp(-(wih[1] * x + bih[1] + whh[1] * h + bhh[1])));
        double n = tanh(wih[2] * x + bih[2] + r * (whh[2] * h + bhh[2]));
        h = (1 - z) * n + z * h;
        assert_float_equal(out[t], h, 1e-6);
    }
    float hn[1];
    dm_gru_final_hidden(hn, cache, &d);
    assert_float_equal(hn[0], out[1], 0);
}

static void test_gru_gradients(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 6);
    gru_ctx c;
    gru_setup(&c, &r);
    gru_loss(&c);
    float *gb[GL][4], *gb2[GL][4];
    dm_gru_grads g, g2;
    gru_grads_alloc(&g, gb);
    gru_grads_alloc(&g2, gb2);
    float *din = zeros(GB * GT * GI), *din2 = zeros(GB * GT * GI);
    float *scratch = zeros(dm_gru_scratch_numel(&c.d));
    dm_gru_backward(din, &g, c.R, c.cache, c.in, &c.p, &c.d, scratch);
    /* Twice more into fresh buffers: accumulation doubles. */
    for (int k = 0; k < 2; k++) dm_gru_backward(din2, &g2, c.R, c.cache, c.in, &c.p, &c.d, scratch);

    static const char *names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    char what[64];
    for (size_t l = 0; l < GL; l++)
        for (int k = 0; k < 4; k++) {
            snprintf(what, sizeof what, "gru %s_l%zu", names[k], l);
            check_grad(what, c.w[l][k], gru_numel(l, k), gb[l][k], gru_loss, &c, 1e-2f);
            assert_doubled(what, gb[l][k], gb2[l][k], gru_numel(l, k));
        }
    check_grad("gru din", c.in, GB * GT * GI, din, gru_loss, &c, 1e-2f);
    assert_doubled("gru din", din, din2, GB * GT * GI);

    /* din = NULL is allowed and leaves the parameter gradients the same. */
    float *gb3[GL][4];
    dm_gru_grads g3;
    gru_grads_alloc(&g3, gb3);
    gru_loss(&c);
    dm_gru_backward(NULL, &g3, c.R, c.cache, c.in, &c.p, &c.d, scratch);
    for (size_t l = 0; l < GL; l++)
        for (int k = 0; k < 4; k++)
            assert_memory_equal(gb3[l][k], gb[l][k], gru_numel(l, k) * sizeof(float));

    /* The last layer's cached output is `out`; h_n is its last step. */
    assert_memory_equal(dm_gru_layer_output(c.cache, &c.d, GL - 1), c.out,
                        GB * GT * GH * sizeof(float));
    float hn[GL * GB * GH];
    dm_gru_final_hidden(hn, c.cache, &c.d);
    for (size_t b = 0; b < GB; b++)
        assert_memory_equal(hn + (GL - 1) * GB * GH + b * GH, c.out + (b * GT + GT - 1) * GH,
                            GH * sizeof(float));

    for (size_t l = 0; l < GL; l++)
        for (int k = 0; k < 4; k++) free(gb[l][k]), free(gb2[l][k]), free(gb3[l][k]);
    free(din), free(din2), free(scratch);
    gru_teardown(&c);
}

static void test_gru_bad_dims(void **state)
{
    dm_error err;
    dm_gru_dims d = {.B = 2, .T = 3, .In = 4, .H = 5, .L = 0};
    assert_int_equal(dm_gru_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "num_layers"));
    d.L = 17;
    assert_int_equal(dm_gru_dims_check(&d, &err), -1);
    d.L = 2, d.H = 0;
    assert_int_equal(dm_gru_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "H=0"));
    d.H = (size_t)1 << 40;
    assert_int_equal(dm_gru_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "too large"));
}

/* ---- initialisers ---- */

static void test_init(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 7);
    const size_t n = 20000;
    float *x = zeros(n);
    float bound = dm_init_kaiming_bound(6);
    assert_float_equal(bound, 1.0f, 1e-7);
    assert_float_equal(dm_init_default_bound(16), 0.25f, 0);
    dm_init_uniform(x, n, 0.25f, &r);
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(x[i] >= -0.25f && x[i] <= 0.25f);
        s += x[i], s2 += (double)x[i] * x[i];
        if (fabs(x[i]) > mx) mx = fabs(x[i]);
    }
    assert_true(mx > 0.24); /* the whole range is used */
    assert_float_equal(s2 / n, 0.25 * 0.25 / 3, 2e-3);
    dm_init_normal(x, n, DM_INIT_EMBEDDING_STD, &r);
    s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += x[i], s2 += (double)x[i] * x[i];
    assert_float_equal(s / n, 0.0, 3e-3);
    assert_float_equal(sqrt(s2 / n), 0.1, 3e-3);
    dm_init_fill(x, 3, 1.0f);
    assert_true(x[0] == 1.0f && x[2] == 1.0f);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_bad_ids),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_extremes),
        cmocka_unit_test(test_cross_entropy_fused),
        cmocka_unit_test(test_output_threads),
        cmocka_unit_test(test_gru_one_step),
        cmocka_unit_test(test_gru_gradients),
        cmocka_unit_test(test_gru_bad_dims),
        cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
