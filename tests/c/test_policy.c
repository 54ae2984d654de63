/* test_policy.c: the episodic memory (episodic.h) and the REINFORCE write
 * policy (policy.h).
 *
 * The central proof is the exact gradient test. A tiny environment (T = 3
 * steps, so 2^3 = 8 action sequences) runs the real episodic memory with
 * fixed states h_t: the write decisions a_t change what later steps read,
 * so the per-step rewards r_t = log p(y_t) of a fixed readout depend on
 * past actions. Enumerating the 8 sequences gives the expected policy loss
 *   L(theta) = -(alpha/T) E_pi[sum_t R_t] - eta mean_t Hb(p_t)
 * exactly, in double; its central finite differences (step 1e-5, error
 * ~1e-10) are compared with
 *   (a) the probability-weighted sum over the 8 sequences of the gradient
 *       dm_reinforce_backward produces for each (reward-to-go, a baseline,
 *       entropy): equal up to float rounding of the per-sequence gradient,
 *       tolerance 1e-6 absolute (gradients are O(0.1..1));
 *   (b) the mean of the same gradient over 20000 sampled episodes: within
 *       3 standard errors per component (plus 1e-6), with the standard
 *       error itself required to be small against the gradient so the
 *       check has power.
 * The baseline's gradient is checked the same way against the expected
 * baseline loss (beta/T) E_pi[sum_t (v_t - G_t)^2] with pi held fixed (the
 * baseline is never differentiated through the policy). A negative control
 * shifts the rewards by one step (crediting the read of step t to the
 * write of step t, a classic off-by-one) and shows (a) then fails.
 *
 * The episodic memory itself gets: causality (a changed future state and
 * future writes leave every earlier read, slot assignment and output
 * bit-identical), the slot rule (empty first, then least recently used),
 * empty-memory reads, finite differences of every differentiable path
 * (projections, gate, input states, soft write weights) and accumulation,
 * for the original read and for its options (the cosine read with its
 * learned sharpness, keys from the previous state), and a lookup by hand
 * that shows what key_prev changes: the value stored after a key is found
 * by that key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/episodic.h"
#include "core/policy.h"
#include "core/rng.h"
#include "core/writepolicy.h"

#include "fdcheck.h"

static double sigmoidd(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- episodic memory fixture ---- */

typedef struct {
    dm_episodic_dims d;
    float *h, *wr, *out, *cache, *scratch, *R;
    int32_t *src;
    float *w_q, *w_k, *w_v, *w_g, *b_g, *scale;
    int32_t *tokens;
    dm_episodic_params p;
} epi_ctx;

static void epi_setup(epi_ctx *c, size_t B, size_t T, size_t H, size_t Dk, size_t K, dm_rng *r)
{
    memset(c, 0, sizeof *c);
    c->d = (dm_episodic_dims){B, T, H, Dk, K, 0, 0, 0, 0};
    dm_error err;
    assert_int_equal(dm_episodic_dims_check(&c->d, &err), 0);
    size_t N = B * T;
    c->h = randv(N * H, 1.0f, r);
    c->wr = zeros(N);
    c->out = zeros(N * H);
    c->cache = zeros(dm_episodic_cache_numel(&c->d));
    c->scratch = zeros(dm_episodic_scratch_numel(&c->d));
    c->src = calloc(dm_episodic_src_numel(&c->d), sizeof(int32_t));
    c->R = randv(N * H, 1.0f, r);
    c->w_q = randv(Dk * H, 1.0f, r);
    c->w_k = randv(Dk * H, 1.0f, r);
    c->w_v = randv(H * H, 1.0f, r);
    c->w_g = randv(H, 0.5f, r);
    c->b_g = randv(1, 1.0f, r);
    c->scale = zeros(1);
    c->scale[0] = 3.0f;
    c->p = (dm_episodic_params){c->w_q, c->w_k, c->w_v, c->w_g, c->b_g, c->scale, NULL};
}

/* Turns the read's options on; the cache grows with cosine. */
static void epi_options(epi_ctx *c, int cosine, int key_prev)
{
    c->d.cosine = cosine;
    c->d.key_prev = key_prev;
    dm_error err;
    assert_int_equal(dm_episodic_dims_check(&c->d, &err), 0);
    free(c->cache);
    c->cache = zeros(dm_episodic_cache_numel(&c->d));
}

/* Token addressing: W_q and W_k become (V,Dk) tables and each step gets a
 * token id (repeats included, so table rows collect several steps). */
static void epi_token_address(epi_ctx *c, size_t V, dm_rng *r)
{
    const size_t N = c->d.B * c->d.T, Dk = c->d.Dk;
    c->d.address_token = 1;
    c->d.V = V;
    free(c->w_q), free(c->w_k), free(c->tokens);
    c->w_q = randv(V * Dk, 1.0f, r);
    c->w_k = randv(V * Dk, 1.0f, r);
    c->tokens = calloc(N, sizeof *c->tokens);
    for (size_t i = 0; i < N; i++) c->tokens[i] = (int32_t)(dm_rng_uniform(r) * (float)V) % (int32_t)V;
    c->p.w_q = c->w_q;
    c->p.w_k = c->w_k;
    c->p.tokens = c->tokens;
    epi_options(c, c->d.cosine, c->d.key_prev);
}

static void epi_teardown(epi_ctx *c)
{
    free(c->h), free(c->wr), free(c->out), free(c->cache), free(c->scratch), free(c->src);
    free(c->R), free(c->w_q), free(c->w_k), free(c->w_v), free(c->w_g), free(c->b_g);
    free(c->scale), free(c->tokens);
}

static double epi_loss(void *p)
{
    epi_ctx *c = p;
    dm_episodic_forward(c->out, c->cache, c->src, c->h, c->wr, &c->p, &c->d);
    return dotd(c->out, c->R, c->d.B * c->d.T * c->d.H);
}

/* ---- episodic: empty memory, no writes ---- */

static void test_episodic_empty(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 3);
    epi_ctx c;
    epi_setup(&c, 2, 5, 4, 3, 2, &r);
    /* No writes at all: every read is zero and out = h exactly. */
    epi_loss(&c);
    const float *e = dm_episodic_reads(c.cache, &c.d);
    for (size_t i = 0; i < 2 * 5 * 4; i++) {
        assert_true(e[i] == 0.0f);
        assert_true(c.out[i] == c.h[i]);
    }
    for (size_t i = 0; i < dm_episodic_src_numel(&c.d); i++) assert_int_equal(c.src[i], -1);
    assert_true(dm_episodic_slot_usage(c.src, c.wr, &c.d) == 0.0);
    /* Writes everywhere: the first read of each sequence is still empty. */
    for (size_t i = 0; i < 10; i++) c.wr[i] = 1.0f;
    epi_loss(&c);
    for (size_t b = 0; b < 2; b++)
        for (size_t k = 0; k < 4; k++) assert_true(e[(b * 5) * 4 + k] == 0.0f);
    assert_true(dm_episodic_slot_usage(c.src, c.wr, &c.d) == 1.0);
    epi_teardown(&c);
}

/* ---- episodic: the slot rule ---- */

static void test_episodic_slot_rule(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 4);
    epi_ctx c;
    const size_t B = 3, T = 12, K = 3;
    epi_setup(&c, B, T, 5, 4, K, &r);
    for (size_t i = 0; i < B * T; i++) c.wr[i] = dm_rng_uniform(&r) < 0.7f ? 1.0f : 0.0f;
    epi_loss(&c);
    const float *w = dm_episodic_attention(c.cache, &c.d);
    /* The slot each write went into, as the write trace reports it. */
    const int32_t *written = dm_episodic_written_slots(c.cache, &c.d);
    /* Replay the rule independently from the recorded attention. */
    for (size_t b = 0; b < B; b++) {
        int32_t slot[3] = {-1, -1, -1};
        long last[3] = {-1, -1, -1};
        size_t evictions = 0;
        for (size_t t = 0; t < T; t++) {
            size_t i = b * T + t;
            for (size_t k = 0; k < K; k++) assert_int_equal(c.src[i * K + k], slot[k]);
            /* Attention is over filled slots only and sums to one. */
            double s = 0;
            long best = -1;
            for (size_t k = 0; k < K; k++) {
                if (slot[k] < 0) assert_true(w[i * K + k] == 0.0f);
                s += w[i * K + k];
                if (slot[k] >= 0 && (best < 0 || w[i * K + k] > w[i * K + best])) best = (long)k;
            }
            if (best >= 0) {
                assert_float_equal(s, 1.0, 1e-5);
                last[best] = (long)t;
            }
            if (c.wr[i] > 0) {
                long pick = -1;
                for (size_t k = 0; k < K && pick < 0; k++)
                    if (slot[k] < 0) pick = (long)k;
                if (pick < 0) {
                    evictions++;
                    pick = 0;
                    for (size_t k = 1; k < K; k++)
                        if (last[k] < last[pick]) pick = (long)k;
                    assert_true(pick != best); /* the slot just read is kept */
                }
                slot[pick] = (int32_t)t;
                last[pick] = (long)t;
                assert_int_equal(written[i], pick); /* the last step's too, which no src shows */
            } else {
                assert_int_equal(written[i], -1);
            }
        }
        assert_true(evictions > 0); /* the LRU branch was exercised */
    }
    epi_teardown(&c);
}

/* ---- episodic: nothing from the future ---- */

static void test_episodic_causality(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 5);
    epi_ctx c;
    const size_t B = 2, T = 8, H = 4, K = 3, t0 = 4;
    epi_setup(&c, B, T, H, 3, K, &r);
    for (size_t i = 0; i < B * T; i++) c.wr[i] = (i % 3 != 1) ? 1.0f : 0.0f;
    epi_loss(&c);
    size_t N = B * T;
    float *out1 = malloc(N * H * sizeof(float)), *e1 = malloc(N * H * sizeof(float));
    float *w1 = malloc(N * K * sizeof(float));
    int32_t *src1 = malloc(N * K * sizeof(int32_t));
    memcpy(out1, c.out, N * H * sizeof(float));
    memcpy(e1, dm_episodic_reads(c.cache, &c.d), N * H * sizeof(float));
    memcpy(w1, dm_episodic_attention(c.cache, &c.d), N * K * sizeof(float));
    memcpy(src1, c.src, N * K * sizeof(int32_t));
    /* Pass 1 flips only the write decisions from step t0 on: the read at
     * t0 happens before t0's write, so every read and output at t <= t0
     * stays bit-identical. Pass 2 also changes the states from t0 on: the
     * query of step t0 changes, but what it can see (src) does not, and
     * everything before t0 stays bit-identical. */
    for (int pass = 1; pass <= 2; pass++) {
        for (size_t b = 0; b < B; b++)
            for (size_t t = t0; t < T; t++) {
                if (pass == 2)
                    for (size_t k = 0; k < H; k++) c.h[(b * T + t) * H + k] += 3.0f;
                else
                    c.wr[b * T + t] = 1.0f - c.wr[b * T + t];
            }
        epi_loss(&c);
        const float *e2 = dm_episodic_reads(c.cache, &c.d);
        const float *w2 = dm_episodic_attention(c.cache, &c.d);
        int later_changed = 0;
        size_t last_same = pass == 1 ? t0 : t0 - 1;
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < T; t++) {
                size_t i = b * T + t;
                int same_read = memcmp(e1 + i * H, e2 + i * H, H * sizeof(float)) == 0 &&
                                memcmp(w1 + i * K, w2 + i * K, K * sizeof(float)) == 0;
                int same_src = memcmp(src1 + i * K, c.src + i * K, K * sizeof(int32_t)) == 0;
                if (t <= t0) assert_true(same_src);
                if (t <= last_same) {
                    assert_true(same_read);
                    assert_memory_equal(out1 + i * H, c.out + i * H, H * sizeof(float));
                }
                if (t > t0 && !(same_read && same_src)) later_changed = 1;
            }
        assert_true(later_changed); /* the change did reach the later reads */
    }
    free(out1), free(e1), free(w1), free(src1);
    epi_teardown(&c);
}

/* ---- episodic: finite differences ---- */

static void epi_grad_check(epi_ctx *c, int soft)
{
    const dm_episodic_dims *d = &c->d;
    size_t N = d->B * d->T, H = d->H, Dk = d->Dk;
    const size_t QK = d->address_token ? d->V * Dk : Dk * H; /* W_q, W_k (or tables) */
    float *dh = zeros(N * H), *dwr = zeros(N), *gq = zeros(QK), *gk = zeros(QK),
          *gv = zeros(H * H), *gg = zeros(H), *gb = zeros(1), *gs = zeros(1);
    dm_episodic_grads g = {gq, gk, gv, gg, gb, gs};
    epi_loss(c);
    dm_episodic_backward(dh, dwr, &g, c->R, c->cache, c->src, c->h, c->wr, &c->p, d, c->scratch);
    const char *m = soft ? "soft" : "hard";
    char nm[64];
    /* A difference quotient carries the float rounding of the whole loss
     * (~5e-7) over 2 eps: up to ~2e-4 at eps = 1e-3, at the tolerance of
     * the options' smaller weight gradients (measured: the error falls as
     * 1/eps, so it is rounding). Their weights take eps = 1e-2 (error
     * ~2e-5); the states and write weights, whose curvature through the
     * normalisation is larger, keep 1e-3. */
    const float weps = d->cosine || d->key_prev || d->address_token ? 1e-2f : 1e-3f;
    snprintf(nm, sizeof nm, "episodic %s dh", m);
    check_grad(nm, c->h, N * H, dh, epi_loss, c, 1e-3f);
    snprintf(nm, sizeof nm, "episodic %s dW_q", m);
    check_grad(nm, c->w_q, QK, gq, epi_loss, c, weps);
    snprintf(nm, sizeof nm, "episodic %s dW_k", m);
    check_grad(nm, c->w_k, QK, gk, epi_loss, c, weps);
    snprintf(nm, sizeof nm, "episodic %s dW_v", m);
    check_grad(nm, c->w_v, H * H, gv, epi_loss, c, weps);
    /* The gate does not see the options (its path is checked by the
     * runs without them; with them its gradient can sit below the noise). */
    if (!d->cosine && !d->key_prev && !d->address_token) {
        snprintf(nm, sizeof nm, "episodic %s dw_g", m);
        check_grad(nm, c->w_g, H, gg, epi_loss, c, 1e-3f);
        snprintf(nm, sizeof nm, "episodic %s db_g", m);
        check_grad(nm, c->b_g, 1, gb, epi_loss, c, 1e-3f);
    }
    if (soft) check_grad("episodic soft dwr", c->wr, N, dwr, epi_loss, c, 1e-3f);
    if (d->cosine) {
        snprintf(nm, sizeof nm, "episodic %s dscale", m);
        check_grad(nm, c->scale, 1, gs, epi_loss, c, weps);
    } else {
        assert_true(gs[0] == 0.0f); /* the dot read has no sharpness */
    }

    /* Backward accumulates: a second run doubles every gradient. */
    float *dh2 = zeros(N * H), *gq2 = zeros(QK), *gb2 = zeros(1), *dwr2 = zeros(N);
    dm_episodic_grads g2 = {gq2, zeros(QK), zeros(H * H), zeros(H), gb2, zeros(1)};
    epi_loss(c);
    for (int k = 0; k < 2; k++)
        dm_episodic_backward(dh2, dwr2, &g2, c->R, c->cache, c->src, c->h, c->wr, &c->p, d,
                             c->scratch);
    for (size_t i = 0; i < N * H; i++) assert_float_equal(dh2[i], 2 * dh[i], 1e-5 * (1 + fabs(dh[i])));
    for (size_t i = 0; i < QK; i++) assert_float_equal(gq2[i], 2 * gq[i], 1e-5 * (1 + fabs(gq[i])));
    assert_float_equal(gb2[0], 2 * gb[0], 1e-5 * (1 + fabs(gb[0])));
    /* NULL dh / dwr are skipped. */
    dm_episodic_backward(NULL, NULL, &g2, c->R, c->cache, c->src, c->h, c->wr, &c->p, d, c->scratch);
    if (d->cosine) {
        /* (the NULL-skipping call above added a third share) */
        assert_float_equal(g2.scale[0], 3 * gs[0], 1e-5 * (1 + fabs(gs[0])));
    }
    free(dh), free(dwr), free(gq), free(gk), free(gv), free(gg), free(gb), free(gs);
    free(dh2), free(gq2), free(gb2), free(dwr2), free(g2.w_k), free(g2.w_v), free(g2.w_g);
    free(g2.scale);
}

static void test_episodic_gradients(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 6);
    epi_ctx c;
    /* Hard writes, K < number of writes: evictions happen. */
    epi_setup(&c, 2, 7, 4, 3, 3, &r);
    for (size_t i = 0; i < 14; i++) c.wr[i] = (i % 4 != 2) ? 1.0f : 0.0f;
    epi_grad_check(&c, 0);
    /* Soft writes: every step writes with weight p in (0.05, 0.95). */
    for (size_t i = 0; i < 14; i++) c.wr[i] = 0.05f + 0.9f * dm_rng_uniform(&r);
    epi_grad_check(&c, 1);
    epi_teardown(&c);
}

/* The options' gradients: each alone and together, hard and soft writes;
 * the last two runs address by token (with and without cosine). */
static void test_episodic_option_gradients(void **state)
{
    const int opts[5][3] = {{1, 0, 0}, {0, 1, 0}, {1, 1, 0}, {1, 1, 1}, {0, 1, 1}};
    for (int o = 0; o < 5; o++) {
        dm_rng r;
        dm_rng_seed(&r, 60 + (uint64_t)o);
        epi_ctx c;
        epi_setup(&c, 2, 7, 4, 3, 7, &r);
        epi_options(&c, opts[o][0], opts[o][1]);
        /* Larger projections: the query and key gradients grow out of
         * the float noise of the differences (as in the soft-mode test). */
        for (size_t k = 0; k < 3 * 4; k++) c.w_q[k] *= 3.0f, c.w_k[k] *= 3.0f;
        if (opts[o][2]) epi_token_address(&c, 5, &r);
        for (size_t i = 0; i < 14; i++) c.wr[i] = (i % 4 != 2) ? 1.0f : 0.0f;
        epi_grad_check(&c, 0);
        for (size_t i = 0; i < 14; i++) c.wr[i] = 0.05f + 0.9f * dm_rng_uniform(&r);
        epi_grad_check(&c, 1);
        epi_teardown(&c);
    }
}

/* A lookup by hand. States are one-hot tokens (H = Dk = 4, identity
 * projections, gate bias large so g ~ 1), the sequence a x b y a writes at
 * every step, and the last step's query is token a. With keys from the
 * state, the best match is the slot written AT a (its value: a); with
 * key_prev it is the slot written at x, whose key is the state before it,
 * a: the read returns x, the value paired with a. The cosine read with a
 * sharp scale makes the match near-exclusive either way. */
static void test_episodic_key_prev_lookup(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 61);
    epi_ctx c;
    const size_t T = 5, H = 4;
    epi_setup(&c, 1, T, H, H, T, &r);
    const int tok[5] = {0, 1, 2, 3, 0}; /* a x b y a */
    memset(c.h, 0, T * H * sizeof(float));
    for (size_t t = 0; t < T; t++) c.h[t * H + (size_t)tok[t]] = 1.0f;
    memset(c.w_q, 0, H * H * sizeof(float));
    memset(c.w_k, 0, H * H * sizeof(float));
    memset(c.w_v, 0, H * H * sizeof(float));
    for (size_t k = 0; k < H; k++) c.w_q[k * H + k] = c.w_k[k * H + k] = c.w_v[k * H + k] = 1.0f;
    memset(c.w_g, 0, H * sizeof(float));
    c.b_g[0] = 20.0f;
    c.scale[0] = 20.0f;
    for (size_t t = 0; t < T; t++) c.wr[t] = 1.0f;
    for (int prev = 0; prev <= 1; prev++) {
        epi_options(&c, 1, prev);
        epi_loss(&c);
        const float *e = dm_episodic_reads(c.cache, &c.d) + (T - 1) * H;
        const int want = prev ? 1 : 0; /* x, or a itself */
        for (size_t k = 0; k < H; k++)
            assert_float_equal(e[k], k == (size_t)want ? 1.0 : 0.0, 1e-3);
    }
    epi_teardown(&c);
}

static void test_episodic_bad_dims(void **state)
{
    dm_error err;
    dm_episodic_dims d = {2, 3, 4, 5, 0, 0, 0, 0, 0};
    assert_int_equal(dm_episodic_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "K must be >= 1"));
    d = (dm_episodic_dims){2, 0, 4, 5, 3, 0, 0, 0, 0};
    assert_int_equal(dm_episodic_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "T must be >= 1"));
    d = (dm_episodic_dims){SIZE_MAX / 2, 4, 4, 5, 3, 0, 0, 0, 0};
    assert_int_equal(dm_episodic_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "too large"));
    d = (dm_episodic_dims){2, 3, 4, 5, 3, 2, 0, 0, 0};
    assert_int_equal(dm_episodic_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "cosine, key_prev and address_token must be 0 or 1"));
    d = (dm_episodic_dims){2, 3, 4, 5, 3, 0, 0, 1, 0};
    assert_int_equal(dm_episodic_dims_check(&d, &err), -1);
    assert_non_null(strstr(err.msg, "address_token needs V"));
}

/* ---- policy pieces ---- */

static void test_policy_returns(void **state)
{
    /* B = 2, T = 4; the second sequence has one pad position at the end. */
    const float r[8] = {-1.0f, -2.0f, -3.0f, -4.0f, -0.5f, -0.25f, -0.125f, -9.0f};
    const float a[8] = {1, 0, 1, 1, 0, 1, 0, 0};
    const float valid[8] = {1, 1, 1, 1, 1, 1, 1, 0};
    float G[8];
    const double g = 0.9, c = 0.1;
    dm_policy_returns(G, r, a, valid, 2, 4, (float)g, (float)c);
    /* R_t = r_{t+1} - c a_t (r_T = 0). */
    double R0[4] = {-2 - c, -3, -4 - c, -c};
    double G0[4];
    G0[3] = R0[3];
    for (int t = 2; t >= 0; t--) G0[t] = R0[t] + g * G0[t + 1];
    for (int t = 0; t < 4; t++) assert_float_equal(G[t], G0[t], 1e-5);
    double R1[3] = {-0.25, -0.125 - c, 0}; /* r_3 is a pad: no reward */
    double G1[3];
    G1[2] = R1[2];
    for (int t = 1; t >= 0; t--) G1[t] = R1[t] + g * G1[t + 1];
    for (int t = 0; t < 3; t++) assert_float_equal(G[4 + t], G1[t], 1e-5);
    assert_true(G[7] == 0.0f);
}

static void test_policy_act_and_probs(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 7);
    float p[4] = {0.2f, 0.5f, 0.51f, 0.9f}, a[4], valid[4] = {1, 1, 1, 0};
    dm_policy_act(a, p, valid, 4, 0, NULL);
    assert_true(a[0] == 0 && a[1] == 0 && a[2] == 1 && a[3] == 0);
    /* Sampling frequency ~ p (binomial, 20000 draws: 5 sd ~ 0.014). */
    enum { M = 20000 };
    float *pp = malloc(M * sizeof(float)), *aa = malloc(M * sizeof(float));
    for (int i = 0; i < M; i++) pp[i] = 0.3f;
    dm_policy_act(aa, pp, NULL, M, 1, &r);
    double s = 0;
    for (int i = 0; i < M; i++) s += aa[i];
    assert_float_equal(s / M, 0.3, 0.015);
    free(pp), free(aa);
    /* log pi and entropy against direct formulas, and finite at extremes. */
    for (float z = -6.0f; z <= 6.0f; z += 1.5f) {
        double q = sigmoidd(z);
        assert_float_equal(dm_policy_log_prob(z, 1), log(q), 1e-9);
        assert_float_equal(dm_policy_log_prob(z, 0), log(1 - q), 1e-9);
        assert_float_equal(dm_policy_entropy(z), -q * log(q) - (1 - q) * log(1 - q), 1e-9);
    }
    assert_true(isfinite(dm_policy_log_prob(-200.0f, 1)));
    assert_float_equal(dm_policy_log_prob(-200.0f, 1), -200.0, 1e-9);
    assert_true(isfinite(dm_policy_entropy(300.0f)) && dm_policy_entropy(300.0f) >= 0);
    /* Linear policy forward: z = s.w + b, p = sigmoid(z). */
    float s3[6] = {1, 2, 3, -1, 0, 1}, w3[3] = {0.5f, -0.25f, 1}, b3 = -2, z[2], pz[2];
    dm_policy_forward(z, pz, s3, w3, &b3, 2, 3);
    assert_float_equal(z[0], 0.5 - 0.5 + 3 - 2, 1e-6);
    assert_float_equal(z[1], -0.5 + 1 - 2, 1e-6);
    assert_float_equal(pz[1], sigmoidd(-1.5), 1e-6);
}

static void test_token_rewards(void **state)
{
    const float logits[6] = {1, 2, 3, 0, 0, 0};
    const int32_t y[2] = {2, 0};
    float r[2], v[2];
    dm_error err;
    assert_int_equal(dm_policy_token_rewards(r, v, logits, y, 2, 3, -1, &err), 0);
    double lse = log(exp(1) + exp(2) + exp(3));
    assert_float_equal(r[0], 3 - lse, 1e-6);
    assert_float_equal(r[1], -log(3.0), 1e-6);
    assert_true(v[0] == 1 && v[1] == 1);
    assert_int_equal(dm_policy_token_rewards(r, v, logits, y, 2, 3, 0, &err), 0);
    assert_true(r[1] == 0 && v[1] == 0 && v[0] == 1);
    const int32_t bad[2] = {2, 3};
    assert_int_equal(dm_policy_token_rewards(r, v, logits, bad, 2, 3, -1, &err), -1);
    assert_non_null(strstr(err.msg, "target 3 at row 1"));
}

static void test_reinforce_config_and_empty(void **state)
{
    dm_error err;
    dm_reinforce_config cfg = dm_reinforce_config_default();
    assert_int_equal(dm_reinforce_config_check(&cfg, &err), 0);
    cfg.gamma = 1.5f;
    assert_int_equal(dm_reinforce_config_check(&cfg, &err), -1);
    assert_non_null(strstr(err.msg, "gamma must be in [0, 1], got 1.5"));
    cfg = dm_reinforce_config_default();
    cfg.std_decay = 1.0f;
    assert_int_equal(dm_reinforce_config_check(&cfg, &err), -1);
    assert_non_null(strstr(err.msg, "std_decay"));
    /* No valid position: nothing added, state unchanged. */
    cfg = dm_reinforce_config_default();
    float z[2] = {0.3f, -1}, a[2] = {1, 0}, r[2] = {-1, -2}, valid[2] = {0, 0}, v[2] = {0, 0};
    float dz[2] = {0, 0}, dv[2] = {0, 0}, scr[4];
    dm_reinforce_state st = {0, 0};
    dm_reinforce_stats stats;
    assert_int_equal(dm_reinforce_backward(&stats, &st, dz, dv, z, a, r, valid, v, 1, 2, &cfg, scr, &err), 0);
    assert_true(dz[0] == 0 && dz[1] == 0 && dv[0] == 0 && st.updates == 0 && stats.count == 0);
    /* Normalisation: the first batch's scale is its own rms advantage. */
    valid[0] = valid[1] = 1;
    assert_int_equal(dm_reinforce_backward(&stats, &st, dz, dv, z, a, r, valid, v, 1, 2, &cfg, scr, &err), 0);
    /* G = {r_1 - c, 0}, A = G - 0. */
    double A0 = -2 - 0.01, rms = sqrt((A0 * A0 + 0) / 2 + 1e-8);
    assert_float_equal(stats.adv_scale, rms, 1e-6);
    assert_int_equal(st.updates, 1);
    assert_float_equal(stats.write_rate, 0.5, 1e-12);
    assert_float_equal(stats.mean_reward, -1.5, 1e-6);
    assert_float_equal(stats.mean_advantage, A0 / 2, 1e-6);
    assert_float_equal(stats.baseline_loss, A0 * A0 / 2, 1e-5);
}

/* ---- the exact gradient test ---- */

enum { XT = 3, XS = 3, XK = 2, XDK = 2, XV = 4, XSEQ = 1 << XT };

typedef struct {
    float h[XT * XS];         /* fixed states, also the policy state s_t */
    float r[XSEQ][XT];        /* rewards of each action sequence */
    float w[XS], b;           /* policy */
    float wb[XS], bb;         /* baseline */
    dm_reinforce_config cfg;
} xenv;

static void seq_actions(int s, float *a)
{
    for (int t = 0; t < XT; t++) a[t] = (float)((s >> t) & 1);
}

/* Runs the real episodic memory for every action sequence and records the
 * rewards of a fixed softmax readout. */
static void xenv_setup(xenv *x, dm_rng *r)
{
    epi_ctx c;
    epi_setup(&c, 1, XT, XS, XDK, XK, r);
    for (size_t i = 0; i < XDK * XS; i++) c.w_q[i] *= 1.5f, c.w_k[i] *= 1.5f;
    for (size_t i = 0; i < XS * XS; i++) c.w_v[i] *= 2.0f;
    c.b_g[0] = 1.5f;
    memcpy(x->h, c.h, sizeof x->h);
    float *ro = randv(XV * XS, 2.0f, r);
    int32_t y[XT];
    for (int t = 0; t < XT; t++) y[t] = (int32_t)dm_rng_below(r, XV);
    for (int s = 0; s < XSEQ; s++) {
        seq_actions(s, c.wr);
        epi_loss(&c);
        float logits[XT * XV], valid[XT];
        for (int t = 0; t < XT; t++)
            for (int v = 0; v < XV; v++) logits[t * XV + v] = (float)dotd(ro + v * XS, c.out + t * XS, XS);
        dm_error err;
        assert_int_equal(dm_policy_token_rewards(x->r[s], valid, logits, y, XT, XV, -1, &err), 0);
    }
    free(ro);
    epi_teardown(&c);
    for (int k = 0; k < XS; k++) {
        x->w[k] = (2.0f * dm_rng_uniform(r) - 1.0f) * 0.8f;
        x->wb[k] = (2.0f * dm_rng_uniform(r) - 1.0f) * 0.8f;
    }
    x->b = -0.3f;
    x->bb = -1.0f;
    x->cfg = dm_reinforce_config_default();
    x->cfg.gamma = 1.0f; /* the undiscounted objective is the one enumerated */
    x->cfg.write_cost = 0.05f;
    x->cfg.alpha = 1.0f;
    x->cfg.beta = 0.5f;
    x->cfg.eta = 0.05f;
    x->cfg.normalize = 0;
}

/* Expected policy loss in double: -(alpha/T) E[sum R] - eta mean Hb(p). */
static double x_policy_loss(const xenv *x, const double *w, double b)
{
    double z[XT], p[XT], L = 0, H = 0;
    for (int t = 0; t < XT; t++) {
        z[t] = b;
        for (int k = 0; k < XS; k++) z[t] += w[k] * x->h[t * XS + k];
        p[t] = sigmoidd(z[t]);
        H += -p[t] * log(p[t]) - (1 - p[t]) * log(1 - p[t]);
    }
    for (int s = 0; s < XSEQ; s++) {
        float a[XT];
        seq_actions(s, a);
        double pr = 1, R = 0;
        for (int t = 0; t < XT; t++) {
            pr *= a[t] ? p[t] : 1 - p[t];
            R += -(double)x->cfg.write_cost * a[t] + (t + 1 < XT ? x->r[s][t + 1] : 0.0);
        }
        L += pr * R;
    }
    return -(double)x->cfg.alpha * L / XT - (double)x->cfg.eta * H / XT;
}

/* Expected baseline loss (beta/T) E_pi[sum (v - G)^2], pi fixed. */
static double x_baseline_loss(const xenv *x, const double *wb, double bb)
{
    double L = 0;
    for (int s = 0; s < XSEQ; s++) {
        float a[XT], G[XT];
        seq_actions(s, a);
        dm_policy_returns(G, x->r[s], a, NULL, 1, XT, x->cfg.gamma, x->cfg.write_cost);
        double pr = 1, sq = 0;
        for (int t = 0; t < XT; t++) {
            double z = x->b, v = bb;
            for (int k = 0; k < XS; k++) {
                z += (double)x->w[k] * x->h[t * XS + k];
                v += wb[k] * x->h[t * XS + k];
            }
            pr *= a[t] ? sigmoidd(z) : 1 - sigmoidd(z);
            sq += (v - G[t]) * (v - G[t]);
        }
        L += pr * sq;
    }
    return (double)x->cfg.beta * L / XT;
}

/* grad[0..XS) = d/dw, grad[XS] = d/db by central differences in double. */
static void x_fd(const xenv *x, int baseline, double *grad)
{
    double w[XS], b = baseline ? x->bb : x->b;
    for (int k = 0; k < XS; k++) w[k] = baseline ? x->wb[k] : x->w[k];
    const double eps = 1e-5;
    for (int k = 0; k <= XS; k++) {
        double *q = k < XS ? &w[k] : &b, save = *q;
        *q = save + eps;
        double lp = baseline ? x_baseline_loss(x, w, b) : x_policy_loss(x, w, b);
        *q = save - eps;
        double lm = baseline ? x_baseline_loss(x, w, b) : x_policy_loss(x, w, b);
        *q = save;
        grad[k] = (lp - lm) / (2 * eps);
    }
}

/* The library's gradient for one episode: policy (w, b) in gp[0..XS], the
 * baseline's (w_b, b_b) in gb[0..XS]. shift != 0 simulates the off-by-one
 * bug of crediting r_t (instead of r_{t+1}) to a_t. */
static void x_episode_grad(const xenv *x, const float *a, const float *r, int shift, double *gp,
                           double *gb)
{
    float z[XT], v[XT], dz[XT] = {0}, dv[XT] = {0}, scr[2 * XT], rr[XT];
    dm_policy_forward(z, NULL, x->h, x->w, &x->b, XT, XS);
    dm_policy_forward(v, NULL, x->h, x->wb, &x->bb, XT, XS);
    for (int t = 0; t < XT; t++) rr[t] = shift ? (t > 0 ? r[t - 1] : 0.0f) : r[t];
    dm_reinforce_state st = {0, 0};
    dm_error err;
    assert_int_equal(dm_reinforce_backward(NULL, &st, dz, dv, z, a, rr, NULL, v, 1, XT, &x->cfg, scr,
                                           &err),
                     0);
    float dw[XS] = {0}, db = 0, dwb[XS] = {0}, dbb = 0;
    dm_policy_linear_backward(dw, &db, dz, x->h, XT, XS);
    dm_policy_linear_backward(dwb, &dbb, dv, x->h, XT, XS);
    for (int k = 0; k < XS; k++) gp[k] = dw[k], gb[k] = dwb[k];
    gp[XS] = db;
    gb[XS] = dbb;
}

/* A reduce hook that stands for two processes holding the same rows: the
 * sum over them is twice each value. */
static int reduce_twice(double *v, size_t n, void *ctx, dm_error *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    for (size_t i = 0; i < n; i++) v[i] *= 2.0;
    return 0;
}

/* Two real processes: the hook of the first records its sums, that of the
 * second adds the recorded ones (both then see the same total). */
typedef struct split_ctx {
    double saved[16];
    int phase; /* 0: record, 1: add the recorded */
} split_ctx;

static int reduce_split(double *v, size_t n, void *ctx, dm_error *err)
{
    split_ctx *c = ctx;
    assert_true(n <= 16);
    if (c->phase == 0) {
        memcpy(c->saved, v, n * sizeof *v);
        return dm_fail(err, "recorded"); /* the first process's result is not needed */
    }
    for (size_t i = 0; i < n; i++) v[i] += c->saved[i];
    return 0;
}

/* dm_reinforce_backward_reduced: with a hook standing for two identical
 * processes the step (gradients, scale, state, statistics) is one
 * process's; a batch of 2 sequences split one per process gives, on the
 * second process, the whole batch's scale, state and statistics and its
 * share (times 2 processes) of the whole batch's gradient. */
static void test_reinforce_reduced(void **state)
{
    enum { B = 2, T = 4, N = B * T };
    float z[N], a[N], r[N], valid[N], v[N];
    for (int i = 0; i < N; i++) {
        z[i] = (float)(0.4 * sin(i + 1.0));
        a[i] = (i % 3 == 0) ? 1.0f : 0.0f;
        r[i] = (float)(-1.0 - 0.3 * cos(i * 0.7));
        valid[i] = (i == 3 || i == 7) ? 0.0f : 1.0f;
        v[i] = (float)(0.2 * i - 0.5);
    }
    dm_reinforce_config cfg = dm_reinforce_config_default();
    dm_error err;
    float dz1[N] = {0}, dv1[N] = {0}, dz2[N] = {0}, dv2[N] = {0}, scr[2 * N];
    dm_reinforce_state st1 = {0.5, 3}, st2 = {0.5, 3};
    dm_reinforce_stats s1, s2;
    assert_int_equal(dm_reinforce_backward(&s1, &st1, dz1, dv1, z, a, r, valid, v, B, T, &cfg, scr, &err), 0);
    int calls = 0;
    dm_reduce twice = {reduce_twice, &calls};
    assert_int_equal(dm_reinforce_backward_reduced(&s2, &st2, dz2, dv2, z, a, r, valid, v, B, T, &cfg,
                                                   scr, &twice, &err), 0);
    assert_int_equal(calls, 1);
    assert_memory_equal(dz1, dz2, sizeof dz1);
    assert_memory_equal(dv1, dv2, sizeof dv1);
    assert_true(st1.second_moment == st2.second_moment && st1.updates == st2.updates);
    assert_int_equal(s2.count, 2 * s1.count);
    assert_true(s1.adv_scale == s2.adv_scale && s1.write_rate == s2.write_rate);
    assert_true(s1.entropy == s2.entropy && s1.baseline_loss == s2.baseline_loss);
    assert_float_equal(s1.policy_loss, s2.policy_loss, 1e-12);

    /* split: sequence 0 on the first process, sequence 1 on the second */
    split_ctx sc = {{0}, 0};
    dm_reduce split = {reduce_split, &sc};
    dm_reinforce_state sp = {0.5, 3};
    float dzs[N] = {0}, dvs[N] = {0};
    assert_int_equal(dm_reinforce_backward_reduced(NULL, &sp, dzs, dvs, z, a, r, valid, v, 1, T, &cfg,
                                                   scr, &split, &err), -1);
    sc.phase = 1;
    sp = (dm_reinforce_state){0.5, 3};
    assert_int_equal(dm_reinforce_backward_reduced(&s2, &sp, dzs + T, dvs + T, z + T, a + T, r + T,
                                                   valid + T, v + T, 1, T, &cfg, scr, &split, &err), 0);
    assert_float_equal(sp.second_moment, st1.second_moment, 1e-12);
    assert_int_equal(sp.updates, st1.updates);
    assert_int_equal(s2.count, s1.count);
    assert_float_equal(s2.adv_scale, s1.adv_scale, 1e-12);
    assert_float_equal(s2.mean_reward, s1.mean_reward, 1e-7);
    assert_float_equal(s2.policy_loss, s1.policy_loss, 1e-7);
    for (int i = T; i < N; i++) {
        assert_float_equal(dzs[i], 2.0 * dz1[i], 1e-7);
        assert_float_equal(dvs[i], 2.0 * dv1[i], 1e-7);
    }
    /* an empty shard (no rows, every array NULL) takes part too */
    sc.phase = 1;
    sp = (dm_reinforce_state){0.5, 3};
    assert_int_equal(dm_reinforce_backward_reduced(&s2, &sp, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                                   0, &cfg, NULL, &split, &err), 0);
    assert_true(s2.count > 0 && sp.updates == 4);
}

static void test_exact_gradient(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 2024);
    xenv x;
    xenv_setup(&x, &r);
    /* The environment depends on past actions: writing at step 0 changes
     * the rewards of steps 1 and 2. */
    assert_true(fabs(x.r[0][1] - x.r[1][1]) > 1e-2);
    assert_true(fabs(x.r[0][2] - x.r[1][2]) > 1e-2);
    assert_true(fabs(x.r[0][2] - x.r[2][2]) > 1e-2);
    /* ... and r_0 never does (the first read is empty). */
    for (int s = 1; s < XSEQ; s++) assert_true(x.r[s][0] == x.r[0][0]);

    double fdp[XS + 1], fdb[XS + 1];
    x_fd(&x, 0, fdp);
    x_fd(&x, 1, fdb);
    double scale = 0;
    for (int k = 0; k <= XS; k++) scale = fmax(scale, fabs(fdp[k]));
    assert_true(scale > 1e-2); /* a real gradient, not a flat landscape */

    /* (a) the exact probability-weighted score-function gradient. */
    double exp_p[XS + 1] = {0}, exp_b[XS + 1] = {0}, bad[XS + 1] = {0};
    double z[XT];
    for (int t = 0; t < XT; t++) {
        float zf;
        dm_policy_forward(&zf, NULL, x.h + t * XS, x.w, &x.b, 1, XS);
        z[t] = zf;
    }
    for (int s = 0; s < XSEQ; s++) {
        float a[XT];
        seq_actions(s, a);
        double pr = 1;
        for (int t = 0; t < XT; t++) pr *= a[t] ? sigmoidd(z[t]) : 1 - sigmoidd(z[t]);
        double gp[XS + 1], gb[XS + 1], gbad[XS + 1], unused[XS + 1];
        x_episode_grad(&x, a, x.r[s], 0, gp, gb);
        x_episode_grad(&x, a, x.r[s], 1, gbad, unused);
        for (int k = 0; k <= XS; k++) {
            exp_p[k] += pr * gp[k];
            exp_b[k] += pr * gb[k];
            bad[k] += pr * gbad[k];
        }
    }
    double bad_err = 0;
    for (int k = 0; k <= XS; k++) {
        if (fabs(exp_p[k] - fdp[k]) > 1e-6 || fabs(exp_b[k] - fdb[k]) > 1e-6)
            print_message("exact: k=%d policy fd %.9g lib %.9g; baseline fd %.9g lib %.9g\n", k,
                          fdp[k], exp_p[k], fdb[k], exp_b[k]);
        assert_true(fabs(exp_p[k] - fdp[k]) <= 1e-6);
        assert_true(fabs(exp_b[k] - fdb[k]) <= 1e-6);
        bad_err = fmax(bad_err, fabs(bad[k] - fdp[k]));
    }
    /* Negative control: the off-by-one credit is visibly wrong. */
    assert_true(bad_err > 1e-3);

    /* (b) the average REINFORCE gradient over sampled episodes. */
    enum { M = 20000 };
    double sum_p[XS + 1] = {0}, sq_p[XS + 1] = {0}, sum_b[XS + 1] = {0}, sq_b[XS + 1] = {0};
    float p[XT], zf[XT];
    dm_policy_forward(zf, p, x.h, x.w, &x.b, XT, XS);
    dm_rng er;
    dm_rng_seed(&er, 77);
    for (int m = 0; m < M; m++) {
        float a[XT];
        dm_policy_act(a, p, NULL, XT, 1, &er);
        int s = 0;
        for (int t = 0; t < XT; t++) s |= (a[t] > 0.5f) << t;
        double gp[XS + 1], gb[XS + 1];
        x_episode_grad(&x, a, x.r[s], 0, gp, gb);
        for (int k = 0; k <= XS; k++) {
            sum_p[k] += gp[k], sq_p[k] += gp[k] * gp[k];
            sum_b[k] += gb[k], sq_b[k] += gb[k] * gb[k];
        }
    }
    double bscale = 0;
    for (int k = 0; k <= XS; k++) bscale = fmax(bscale, fabs(fdb[k]));
    for (int k = 0; k <= XS; k++) {
        double mp = sum_p[k] / M, sep = sqrt(fmax(sq_p[k] / M - mp * mp, 0) / M);
        double mb = sum_b[k] / M, seb = sqrt(fmax(sq_b[k] / M - mb * mb, 0) / M);
        if (fabs(mp - fdp[k]) > 3 * sep + 1e-6 || fabs(mb - fdb[k]) > 3 * seb + 1e-6)
            print_message("sampled: k=%d policy fd %.6g mean %.6g se %.3g; baseline fd %.6g mean "
                          "%.6g se %.3g\n",
                          k, fdp[k], mp, sep, fdb[k], mb, seb);
        assert_true(fabs(mp - fdp[k]) <= 3 * sep + 1e-6);
        assert_true(fabs(mb - fdb[k]) <= 3 * seb + 1e-6);
        /* The check has power: errors this small are a fraction of the
         * gradient's scale. */
        assert_true(sep < 0.1 * scale);
        assert_true(seb < 0.1 * bscale);
    }
}


/* ---- the write policy unit ---- */

typedef struct {
    dm_writepolicy w;
    dm_wp_tensors P, G;
    float *h, *out, *R, *work;
    size_t B, T, H;
    dm_rng rng;
} wp_ctx;

static void wp_setup(wp_ctx *c, size_t B, size_t T, size_t H, size_t Dk, size_t K)
{
    memset(c, 0, sizeof *c);
    c->B = B, c->T = T, c->H = H;
    dm_error err;
    dm_reinforce_config rl = dm_reinforce_config_default();
    assert_int_equal(dm_writepolicy_init(&c->w, H, Dk, K, &rl, &err), 0);
    dm_rng r;
    dm_rng_seed(&r, 11);
    for (int i = 0; i < DM_WP_NPARAMS; i++) {
        int64_t sh[2];
        int nd = dm_wp_shape(H, Dk, i, sh);
        size_t n = nd == 2 ? (size_t)(sh[0] * sh[1]) : (size_t)sh[0];
        c->P.t[i] = zeros(n);
        c->G.t[i] = zeros(n);
    }
    dm_wp_init_params(&c->P, H, Dk, -2.0f, &r);
    assert_true(c->P.t[DM_WP_BP][0] == -2.0f && c->P.t[DM_WP_BG][0] == 0.0f);
    c->h = randv(B * T * H, 1.0f, &r);
    c->out = zeros(B * T * H);
    c->R = randv(B * T * H, 1.0f, &r);
    c->work = zeros(dm_writepolicy_work_numel(&c->w, B, T));
    dm_rng_seed(&c->rng, 12);
}

static void wp_teardown(wp_ctx *c)
{
    for (int i = 0; i < DM_WP_NPARAMS; i++) free(c->P.t[i]), free(c->G.t[i]);
    free(c->h), free(c->out), free(c->R), free(c->work);
    dm_writepolicy_free(&c->w);
}

static double wp_soft_loss(void *p)
{
    wp_ctx *c = p;
    dm_error err;
    dm_rng r = c->rng;
    assert_int_equal(dm_writepolicy_forward(&c->w, c->out, c->h, &c->P, c->B, c->T, 1, &r, c->work, &err), 0);
    return dotd(c->out, c->R, c->B * c->T * c->H);
}

/* write_actions uniform: steps k, 2k, ... of every sequence write, in
 * training and eval alike, with no draw. */
static void test_writepolicy_uniform(void **state)
{
    wp_ctx c;
    const size_t B = 2, T = 7;
    wp_setup(&c, B, T, 4, 3, 3);
    dm_error err;
    c.w.actions = 3;
    c.w.write_every = 3;
    for (int training = 0; training <= 1; training++) {
        dm_rng before = c.rng;
        assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, training, &c.rng, c.work, &err), 0);
        assert_memory_equal(&before, &c.rng, sizeof before);
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < T; t++)
                assert_true(c.w.a[b * T + t] == ((t == 3 || t == 6) ? 1.0f : 0.0f));
        assert_float_equal(c.w.write_rate_all, 2.0 / 7.0, 1e-6);
    }
    wp_teardown(&c);
}

/* reward_targets: rewards only where they are not ignored, every action
 * still counted; a reward target that is neither is refused. */
static void test_writepolicy_reward_targets(void **state)
{
    wp_ctx c;
    const size_t B = 2, T = 6, V = 5, N = B * T;
    wp_setup(&c, B, T, 4, 3, 3);
    dm_error err;
    assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, 1, &c.rng, c.work, &err), 0);
    float *logits = randv(N * V, 2.0f, &c.rng);
    int32_t tg[12], rt[12];
    for (size_t i = 0; i < N; i++) tg[i] = (int32_t)(1 + i % (V - 1)), rt[i] = i % T == T - 1 ? tg[i] : 0;
    dm_reinforce_stats all, at;
    assert_int_equal(dm_writepolicy_reinforce(&c.w, &all, logits, tg, V, 0, c.h, NULL, &err), 0);
    float rew_all[12];
    memcpy(rew_all, c.w.rew, sizeof rew_all);
    c.w.reward_targets = rt;
    assert_int_equal(dm_writepolicy_reinforce(&c.w, &at, logits, tg, V, 0, c.h, NULL, &err), 0);
    assert_int_equal(at.count, all.count); /* every action still counts */
    for (size_t i = 0; i < N; i++) {
        assert_true(c.w.valid[i] == 1.0f);
        assert_true(c.w.rew[i] == (i % T == T - 1 ? rew_all[i] : 0.0f));
    }
    rt[2] = tg[2] == 1 ? 2 : 1;
    assert_int_equal(dm_writepolicy_reinforce(&c.w, NULL, logits, tg, V, 0, c.h, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "at row 2 is neither the target"));
    c.w.reward_targets = NULL;
    free(logits);
    wp_teardown(&c);
}

static void test_writepolicy_unit(void **state)
{
    wp_ctx c;
    const size_t B = 2, T = 6, H = 4, V = 5, N = B * T;
    wp_setup(&c, B, T, H, 3, 2);
    dm_error err;
    /* Backward before forward is refused. */
    assert_int_equal(dm_writepolicy_backward(&c.w, NULL, c.R, c.h, &c.P, &c.G, &err), -1);
    assert_non_null(strstr(err.msg, "no forward"));

    /* Eval thresholds p at 0.5, no draw; writes start rare (b = -2). */
    dm_rng before = c.rng;
    assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, 0, &c.rng, c.work, &err), 0);
    assert_memory_equal(&before, &c.rng, sizeof before);
    for (size_t i = 0; i < N; i++) {
        assert_true(c.w.a[i] == (c.w.p[i] > 0.5f ? 1.0f : 0.0f));
        assert_true(c.w.p[i] < 0.3f);
    }
    /* Training samples with one uniform draw per position. */
    dm_rng copy = c.rng;
    assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, 1, &c.rng, c.work, &err), 0);
    for (size_t i = 0; i < N; i++) {
        float u = dm_rng_uniform(&copy);
        assert_true(c.w.a[i] == (u < c.w.p[i] ? 1.0f : 0.0f));
        assert_true(c.w.wr[i] == c.w.a[i]);
    }
    assert_memory_equal(&copy, &c.rng, sizeof copy);

    /* REINFORCE: gradients land in the policy and baseline entries only. */
    float *logits = randv(N * V, 2.0f, &c.rng);
    int32_t tg[12];
    for (size_t i = 0; i < N; i++) tg[i] = (int32_t)(i % V);
    tg[N - 1] = 0; /* ignored (a pad) */
    dm_reinforce_stats st;
    assert_int_equal(dm_writepolicy_reinforce(&c.w, &st, logits, tg, V, 0, c.h, &c.G, &err), 0);
    assert_int_equal(st.count, N - 4); /* target 0 (ignored) at i = 0, 5, 10, 11 */
    double g2 = 0;
    for (size_t k = 0; k < H; k++) g2 += fabs(c.G.t[DM_WP_WP][k]) + fabs(c.G.t[DM_WP_WB][k]);
    assert_true(g2 > 0);
    for (size_t k = 0; k < 3 * H; k++) assert_true(c.G.t[DM_WP_WQ][k] == 0.0f);
    int32_t bad[12];
    memcpy(bad, tg, sizeof bad);
    bad[3] = 7;
    assert_int_equal(dm_writepolicy_reinforce(&c.w, NULL, logits, bad, V, 0, c.h, &c.G, &err), -1);
    assert_non_null(strstr(err.msg, "target 7 at row 3"));
    free(logits);

    /* Soft mode: wr = p, and the policy bias gets the read's gradient. */
    c.w.mode = DM_WRITE_SOFT;
    for (int i = 0; i < DM_WP_NPARAMS; i++) {
        int64_t sh[2];
        int nd = dm_wp_shape(H, 3, i, sh);
        memset(c.G.t[i], 0, (nd == 2 ? (size_t)(sh[0] * sh[1]) : (size_t)sh[0]) * sizeof(float));
    }
    c.P.t[DM_WP_BP][0] = 0.5f; /* p near the middle: a useful gradient */
    c.P.t[DM_WP_BG][0] = 2.0f;
    for (size_t k = 0; k < H * H; k++) c.P.t[DM_WP_WV][k] *= 4.0f;
    for (size_t k = 0; k < 3 * H; k++) c.P.t[DM_WP_WQ][k] *= 4.0f, c.P.t[DM_WP_WK][k] *= 4.0f;
    wp_soft_loss(&c);
    for (size_t i = 0; i < N; i++) assert_true(c.w.wr[i] == c.w.p[i]);
    assert_int_equal(dm_writepolicy_backward(&c.w, NULL, c.R, c.h, &c.P, &c.G, &err), 0);
    /* The policy's share of this loss is small (~6e-3 against float noise
     * of ~6e-7 in the loss), so its differences take a larger step; the
     * function is smooth there (the step-1e-1 and 2.5e-2 differences agree
     * to 1e-6). */
    check_grad("writepolicy soft db_p", c.P.t[DM_WP_BP], 1, c.G.t[DM_WP_BP], wp_soft_loss, &c, 5e-2f);
    check_grad("writepolicy soft dw_p", c.P.t[DM_WP_WP], H, c.G.t[DM_WP_WP], wp_soft_loss, &c, 5e-2f);
    check_grad("writepolicy soft dW_v", c.P.t[DM_WP_WV], H * H, c.G.t[DM_WP_WV], wp_soft_loss, &c, 1e-3f);
    /* A larger batch regrows the buffers. */
    float *h2 = randv(3 * 7 * H, 1.0f, &c.rng), *o2 = zeros(3 * 7 * H);
    /* A larger batch needs more working memory: the caller's, sized by
     * work_numel; none at all is refused. */
    float *w2 = zeros(dm_writepolicy_work_numel(&c.w, 3, 7));
    assert_true(dm_writepolicy_work_numel(&c.w, 3, 7) > dm_writepolicy_work_numel(&c.w, B, T));
    assert_int_equal(dm_writepolicy_forward(&c.w, o2, h2, &c.P, 3, 7, 1, &c.rng, NULL, &err), -1);
    assert_int_equal(dm_writepolicy_forward(&c.w, o2, h2, &c.P, 3, 7, 1, &c.rng, w2, &err), 0);
    free(h2), free(o2), free(w2);
    wp_teardown(&c);
}

/* ---- the straight-through Gumbel-sigmoid gate ---- */

typedef struct {
    float *z, *noise, *g, *a, *c;
    size_t n;
    float tau;
} gate_ctx;

/* sum_i c_i g_i(z) at fixed noise: its z-gradient is the soft path's d g / d z
 * weighted by c, what dm_gumbel_gate_backward must return. */
static double gate_loss(void *p)
{
    gate_ctx *c = p;
    dm_gumbel_gate(c->g, c->a, c->z, c->noise, c->n, c->tau);
    return dotd(c->g, c->c, c->n);
}

static void test_gumbel_gate(void **state)
{
    dm_rng r;
    dm_rng_seed(&r, 21);
    const size_t n = 9;
    gate_ctx c = {randv(n, 2.0f, &r), zeros(n), zeros(n), zeros(n), randv(n, 1.0f, &r), n, 0.7f};
    for (size_t i = 0; i < n; i++) c.noise[i] = dm_gumbel_noise(dm_rng_uniform(&r));
    /* The noise is logistic: its quantile function at u. */
    assert_float_equal(dm_gumbel_noise(0.5f), 0.0f, 1e-7);
    assert_float_equal(dm_gumbel_noise(0.25f), log(0.25 / 0.75), 1e-6);
    assert_true(isfinite(dm_gumbel_noise(0.0f)) && dm_gumbel_noise(0.0f) < -15.0f);
    gate_loss(&c);
    for (size_t i = 0; i < n; i++) {
        assert_float_equal(c.g[i], sigmoidd((c.z[i] + c.noise[i]) / 0.7), 1e-6);
        assert_true(c.a[i] == (c.g[i] > 0.5f ? 1.0f : 0.0f));
    }
    float *dz = zeros(n);
    dm_gumbel_gate_backward(dz, c.c, c.g, n, c.tau);
    check_grad("gumbel gate dz", c.z, n, dz, gate_loss, &c, 1e-3f);
    /* Without noise the decision is [z > 0]; a lower tau only sharpens g. */
    dm_gumbel_gate(c.g, c.a, c.z, NULL, n, 0.1f);
    for (size_t i = 0; i < n; i++) assert_true(c.a[i] == (c.z[i] > 0.0f ? 1.0f : 0.0f));
    free(c.z), free(c.noise), free(c.g), free(c.a), free(c.c), free(dz);
}

/* The loss dot(out, R) of the episodic memory alone as a function of the
 * write weights of the steps that wrote (idx), the others held at 0. */
typedef struct {
    wp_ctx *w;
    dm_episodic_dims d;
    dm_episodic_params ep;
    float *wr, *x, *out, *cache, *scratch;
    int32_t *src;
    size_t *idx, m;
} st_ctx;

static double st_loss(void *p)
{
    st_ctx *c = p;
    for (size_t j = 0; j < c->m; j++) c->wr[c->idx[j]] = c->x[j];
    dm_episodic_forward(c->out, c->cache, c->src, c->w->h, c->wr, &c->ep, &c->d);
    return dotd(c->out, c->w->R, c->w->B * c->w->T * c->w->H);
}

/* write_actions gumbel: training draws one logistic noise per position
 * from the run's generator and writes the hard decision [g > 0.5]; the
 * backward gives the policy dL/dwr (at the hard writes, by finite
 * differences of the memory alone) times d g / d z; eval thresholds z with
 * no draw and trains nothing; REINFORCE leaves the policy alone. */
static void test_writepolicy_gumbel(void **state)
{
    wp_ctx c;
    const size_t B = 2, T = 6, H = 4, Dk = 3, K = 2, N = B * T, V = 5;
    wp_setup(&c, B, T, H, Dk, K);
    dm_error err;
    c.w.actions = 4;
    c.w.gumbel_tau = 0.5f;
    c.P.t[DM_WP_BP][0] = 0.3f; /* about half the steps write */
    c.P.t[DM_WP_BG][0] = 2.0f;
    for (size_t k = 0; k < H * H; k++) c.P.t[DM_WP_WV][k] *= 4.0f;
    for (size_t k = 0; k < Dk * H; k++) c.P.t[DM_WP_WQ][k] *= 4.0f, c.P.t[DM_WP_WK][k] *= 4.0f;

    /* Eval: [z > 0], the generator untouched, no policy gradient. */
    dm_rng before = c.rng;
    assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, 0, &c.rng, c.work, &err), 0);
    assert_memory_equal(&before, &c.rng, sizeof before);
    for (size_t i = 0; i < N; i++) assert_true(c.w.a[i] == (c.w.z[i] > 0.0f ? 1.0f : 0.0f));
    assert_int_equal(dm_writepolicy_backward(&c.w, NULL, c.R, c.h, &c.P, &c.G, &err), 0);
    assert_true(c.G.t[DM_WP_BP][0] == 0.0f);
    memset(c.G.t[DM_WP_WV], 0, H * H * sizeof(float));

    /* Training: the noise is the generator's draws, one per position. */
    dm_rng copy = c.rng;
    assert_int_equal(dm_writepolicy_forward(&c.w, c.out, c.h, &c.P, B, T, 1, &c.rng, c.work, &err), 0);
    size_t writes = 0;
    for (size_t i = 0; i < N; i++) {
        float l = dm_gumbel_noise(dm_rng_uniform(&copy));
        assert_true(c.w.noise[i] == l);
        assert_float_equal(c.w.g[i], sigmoidd(((double)c.w.z[i] + l) / 0.5), 1e-6);
        assert_true(c.w.a[i] == (c.w.g[i] > 0.5f ? 1.0f : 0.0f));
        assert_true(c.w.wr[i] == c.w.a[i]); /* hard forward */
        writes += c.w.a[i] == 1.0f;
    }
    assert_memory_equal(&copy, &c.rng, sizeof copy);
    assert_true(writes >= 2 && writes <= N - 2);
    float g[12], wr[12];
    memcpy(g, c.w.g, sizeof g);
    memcpy(wr, c.w.wr, sizeof wr);
    assert_int_equal(dm_writepolicy_backward(&c.w, NULL, c.R, c.h, &c.P, &c.G, &err), 0);
    float dwr[12];
    memcpy(dwr, c.w.dwr, sizeof dwr);

    /* dL/dwr at the hard writes by finite differences of the memory. */
    st_ctx s;
    memset(&s, 0, sizeof s);
    s.w = &c;
    s.d = (dm_episodic_dims){B, T, H, Dk, K, 0, 0, 0, 0};
    s.ep = (dm_episodic_params){c.P.t[DM_WP_WQ], c.P.t[DM_WP_WK], c.P.t[DM_WP_WV],
                                c.P.t[DM_WP_WG], c.P.t[DM_WP_BG], NULL, NULL};
    s.wr = zeros(N), s.x = zeros(N), s.out = zeros(N * H);
    s.cache = zeros(dm_episodic_cache_numel(&s.d)), s.scratch = zeros(dm_episodic_scratch_numel(&s.d));
    s.src = calloc(dm_episodic_src_numel(&s.d), sizeof(int32_t));
    size_t idx[12];
    float an[12];
    s.idx = idx;
    for (size_t i = 0; i < N; i++) {
        if (wr[i] == 0.0f) {
            assert_true(dwr[i] == 0.0f); /* no slot: no gradient */
            continue;
        }
        idx[s.m] = i, s.x[s.m] = 1.0f, an[s.m] = dwr[i];
        s.m++;
    }
    check_grad("gumbel straight-through dwr", s.x, s.m, an, st_loss, &s, 1e-3f);
    /* The policy's gradient: dwr d g / d z through the detached state. */
    double db = 0.0, dw[4] = {0};
    for (size_t i = 0; i < N; i++) {
        double dz = (double)dwr[i] * g[i] * (1.0 - g[i]) / 0.5;
        db += dz;
        for (size_t k = 0; k < H; k++) dw[k] += dz * c.h[i * H + k];
    }
    assert_true(fabs(db) > 1e-3);
    assert_float_equal(c.G.t[DM_WP_BP][0], db, 1e-5 * (1.0 + fabs(db)));
    for (size_t k = 0; k < H; k++) assert_float_equal(c.G.t[DM_WP_WP][k], dw[k], 1e-5 * (1.0 + fabs(dw[k])));

    /* REINFORCE adds nothing to the policy (only its baseline learns). */
    float bp = c.G.t[DM_WP_BP][0];
    float *logits = randv(N * V, 2.0f, &c.rng);
    int32_t tg[12];
    for (size_t i = 0; i < N; i++) tg[i] = (int32_t)(1 + i % (V - 1));
    assert_int_equal(dm_writepolicy_reinforce(&c.w, NULL, logits, tg, V, 0, c.h, &c.G, &err), 0);
    assert_true(c.G.t[DM_WP_BP][0] == bp);
    free(logits);
    free(s.wr), free(s.x), free(s.out), free(s.cache), free(s.scratch), free(s.src);
    wp_teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_episodic_empty),
        cmocka_unit_test(test_episodic_slot_rule),
        cmocka_unit_test(test_episodic_causality),
        cmocka_unit_test(test_episodic_gradients),
        cmocka_unit_test(test_episodic_option_gradients),
        cmocka_unit_test(test_episodic_key_prev_lookup),
        cmocka_unit_test(test_episodic_bad_dims),
        cmocka_unit_test(test_policy_returns),
        cmocka_unit_test(test_policy_act_and_probs),
        cmocka_unit_test(test_token_rewards),
        cmocka_unit_test(test_reinforce_config_and_empty),
        cmocka_unit_test(test_reinforce_reduced),
        cmocka_unit_test(test_exact_gradient),
        cmocka_unit_test(test_writepolicy_unit),
        cmocka_unit_test(test_writepolicy_uniform),
        cmocka_unit_test(test_writepolicy_reward_targets),
        cmocka_unit_test(test_gumbel_gate),
        cmocka_unit_test(test_writepolicy_gumbel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
