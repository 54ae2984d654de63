/* policy.c: the Bernoulli write policy and REINFORCE (policy.h), and the
 * straight-through Gumbel-sigmoid gate that is their differentiable
 * control.
 *
 * Everything here is per-step arithmetic on (B,T) vectors: the policy and
 * baseline are dot products with a detached state, so no BLAS call pays
 * off. Log-probabilities and entropies go through softplus so that a
 * saturated policy (|z| large) gives finite values and gradients. Sums over
 * the batch are taken in double so that the statistics and the exact
 * gradient test do not depend on summation order noise. */
#include "core/policy.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static double softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

void dm_policy_forward(float *z, float *p, const float *s, const float *w, const float *b, size_t N,
                       size_t S)
{
    for (size_t i = 0; i < N; i++) {
        float acc = 0.0f;
        const float *si = s + i * S;
        for (size_t c = 0; c < S; c++) acc += si[c] * w[c];
        z[i] = acc + b[0];
        if (p) p[i] = (float)sigmoid(z[i]);
    }
}

void dm_policy_linear_backward(float *dw, float *db, const float *dz, const float *s, size_t N,
                               size_t S)
{
    double dbs = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (dz[i] == 0.0f) continue;
        const float *si = s + i * S;
        for (size_t c = 0; c < S; c++) dw[c] += dz[i] * si[c];
        dbs += dz[i];
    }
    db[0] += (float)dbs;
}

void dm_policy_act(float *a, const float *p, const float *valid, size_t N, int sample, dm_rng *rng)
{
    for (size_t i = 0; i < N; i++) {
        if (valid && valid[i] == 0.0f) {
            a[i] = 0.0f;
            continue;
        }
        if (sample)
            a[i] = dm_rng_uniform(rng) < p[i] ? 1.0f : 0.0f;
        else
            a[i] = p[i] > 0.5f ? 1.0f : 0.0f;
    }
}

float dm_gumbel_noise(float u)
{
    /* u = 0 (a possible draw) would give -inf: the smallest positive float
     * step of the generator's grid instead, so g stays finite. */
    double uu = u > 0.0f ? (double)u : 0x1p-25;
    return (float)(log(uu) - log1p(-uu));
}

void dm_gumbel_gate(float *g, float *a, const float *z, const float *noise, size_t N, float tau)
{
    for (size_t i = 0; i < N; i++) {
        double x = ((double)z[i] + (noise ? (double)noise[i] : 0.0)) / (double)tau;
        g[i] = (float)sigmoid(x);
        a[i] = g[i] > 0.5f ? 1.0f : 0.0f;
    }
}

void dm_gumbel_gate_backward(float *dz, const float *dwr, const float *g, size_t N, float tau)
{
    for (size_t i = 0; i < N; i++)
        dz[i] += (float)((double)dwr[i] * (double)g[i] * (1.0 - (double)g[i]) / (double)tau);
}

double dm_policy_log_prob(float z, float a)
{
    return a > 0.5f ? -softplus(-(double)z) : -softplus((double)z);
}

double dm_policy_entropy(float z)
{
    double p = sigmoid(z);
    return p * softplus(-(double)z) + (1.0 - p) * softplus((double)z);
}

int dm_policy_token_rewards(float *r, float *valid, const float *logits, const int32_t *targets,
                            size_t N, size_t V, int32_t ignore_index, dm_error *err)
{
    for (size_t i = 0; i < N; i++) {
        int32_t y = targets[i];
        if (ignore_index >= 0 && y == ignore_index) continue;
        if (y < 0 || (size_t)y >= V)
            return dm_fail(err,
                           "policy.token_rewards: target %" PRId32 " at row %zu is out of range "
                           "for vocabulary size %zu",
                           y, i, V);
    }
    for (size_t i = 0; i < N; i++) {
        int32_t y = targets[i];
        if (ignore_index >= 0 && y == ignore_index) {
            r[i] = 0.0f;
            valid[i] = 0.0f;
            continue;
        }
        const float *li = logits + i * V;
        double m = li[0];
        for (size_t v = 1; v < V; v++)
            if (li[v] > m) m = li[v];
        double s = 0.0;
        for (size_t v = 0; v < V; v++) s += exp((double)li[v] - m);
        r[i] = (float)((double)li[y] - m - log(s));
        valid[i] = 1.0f;
    }
    return 0;
}

void dm_policy_returns(float *G, const float *r, const float *a, const float *valid, size_t B,
                       size_t T, float gamma, float write_cost)
{
    for (size_t b = 0; b < B; b++) {
        const size_t o = b * T;
        double next = 0.0; /* G of the next valid position */
        for (size_t t = T; t-- > 0;) {
            if (valid && valid[o + t] == 0.0f) {
                G[o + t] = 0.0f;
                continue;
            }
            double R = -(double)write_cost * (double)a[o + t];
            if (t + 1 < T && (!valid || valid[o + t + 1] != 0.0f)) R += (double)r[o + t + 1];
            next = R + (double)gamma * next;
            G[o + t] = (float)next;
        }
    }
}

dm_reinforce_config dm_reinforce_config_default(void)
{
    dm_reinforce_config c;
    c.gamma = 0.95f;
    c.write_cost = 0.01f;
    c.alpha = 1.0f;
    c.beta = 0.5f;
    c.eta = 0.01f;
    c.std_decay = 0.99f;
    c.normalize = 1;
    return c;
}

int dm_reinforce_config_check(const dm_reinforce_config *c, dm_error *err)
{
    if (!(c->gamma >= 0.0f && c->gamma <= 1.0f))
        return dm_fail(err, "reinforce: gamma must be in [0, 1], got %g", (double)c->gamma);
    if (!(c->write_cost >= 0.0f && isfinite(c->write_cost)))
        return dm_fail(err, "reinforce: write_cost must be >= 0 and finite, got %g",
                       (double)c->write_cost);
    if (!(c->alpha >= 0.0f && isfinite(c->alpha)))
        return dm_fail(err, "reinforce: alpha must be >= 0 and finite, got %g", (double)c->alpha);
    if (!(c->beta >= 0.0f && isfinite(c->beta)))
        return dm_fail(err, "reinforce: beta must be >= 0 and finite, got %g", (double)c->beta);
    if (!(c->eta >= 0.0f && isfinite(c->eta)))
        return dm_fail(err, "reinforce: eta must be >= 0 and finite, got %g", (double)c->eta);
    if (!(c->std_decay >= 0.0f && c->std_decay < 1.0f))
        return dm_fail(err, "reinforce: std_decay must be in [0, 1), got %g", (double)c->std_decay);
    return 0;
}

int dm_reinforce_backward(dm_reinforce_stats *stats, dm_reinforce_state *state, float *dz, float *dv,
                          const float *z, const float *a, const float *r, const float *valid,
                          const float *v, size_t B, size_t T, const dm_reinforce_config *cfg,
                          float *scratch, dm_error *err)
{
    return dm_reinforce_backward_reduced(stats, state, dz, dv, z, a, r, valid, v, B, T, cfg, scratch,
                                         NULL, err);
}

/* The sums a batch split over processes adds up, in this order. */
enum { RS_NV, RS_A2, RS_A, RS_G, RS_R, RS_WR, RS_H, RS_B, RS_ALOGP, RS_RANKS, RS_N };

int dm_reinforce_backward_reduced(dm_reinforce_stats *stats, dm_reinforce_state *state, float *dz,
                                  float *dv, const float *z, const float *a, const float *r,
                                  const float *valid, const float *v, size_t B, size_t T,
                                  const dm_reinforce_config *cfg, float *scratch,
                                  const dm_reduce *red, dm_error *err)
{
    if (dm_reinforce_config_check(cfg, err) != 0) return -1;
    const int reduced = red && red->fn;
    const size_t N = B * T;
    float *G = scratch, *A = N ? scratch + N : NULL;
    if (N) dm_policy_returns(G, r, a, valid, B, T, cfg->gamma, cfg->write_cost);

    size_t nv = 0;
    double sa2 = 0.0, sA = 0.0, sG = 0.0, sr = 0.0, swr = 0.0, sH = 0.0, sb = 0.0, sal = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (valid && valid[i] == 0.0f) {
            A[i] = 0.0f;
            continue;
        }
        nv++;
        A[i] = G[i] - v[i];
        sa2 += (double)A[i] * (double)A[i];
        sA += A[i];
        sG += G[i];
        sr += r[i];
        swr += a[i];
        sH += dm_policy_entropy(z[i]);
        sb += ((double)v[i] - G[i]) * ((double)v[i] - G[i]);
        if (reduced) sal += (double)A[i] * dm_policy_log_prob(z[i], a[i]);
    }
    /* Across processes: the global batch's sums, and the number of
     * processes, by which the gradient is later averaged. */
    double nvg = (double)nv, ranks = 1.0;
    if (reduced) {
        double sums[RS_N] = {(double)nv, sa2, sA, sG, sr, swr, sH, sb, sal, 1.0};
        if (red->fn(sums, RS_N, red->ctx, err) != 0) return -1;
        nvg = sums[RS_NV], sa2 = sums[RS_A2], sA = sums[RS_A], sG = sums[RS_G], sr = sums[RS_R];
        swr = sums[RS_WR], sH = sums[RS_H], sb = sums[RS_B], sal = sums[RS_ALOGP];
        ranks = sums[RS_RANKS];
    }
    if (stats) memset(stats, 0, sizeof *stats);
    if (nvg < 1.0) return 0;
    const double inv = 1.0 / nvg;

    double sigma = 1.0;
    if (cfg->normalize) {
        const double rho = cfg->std_decay;
        state->second_moment = rho * state->second_moment + (1.0 - rho) * sa2 * inv;
        state->updates++;
        double corr = 1.0 - pow(rho, (double)state->updates);
        double var = corr > 0.0 ? state->second_moment / corr : sa2 * inv;
        sigma = sqrt(var + 1e-8);
    }

    double spg = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (valid && valid[i] == 0.0f) continue;
        const double adv = (double)A[i] / sigma;
        spg += -adv * dm_policy_log_prob(z[i], a[i]);
        if (dz) {
            const double p = sigmoid(z[i]);
            double g = -(double)cfg->alpha * adv * ((double)a[i] - p) * inv +
                       (double)cfg->eta * (double)z[i] * p * (1.0 - p) * inv;
            if (reduced) g *= ranks;
            dz[i] += (float)g;
        }
        if (dv) {
            double g = 2.0 * (double)cfg->beta * ((double)v[i] - G[i]) * inv;
            if (reduced) g *= ranks;
            dv[i] += (float)g;
        }
    }
    if (reduced) spg = -sal / sigma;
    if (stats) {
        stats->count = (size_t)nvg;
        stats->write_rate = swr * inv;
        stats->entropy = sH * inv;
        stats->mean_reward = sr * inv;
        stats->mean_return = sG * inv;
        stats->mean_advantage = sA * inv;
        stats->adv_scale = sigma;
        stats->policy_loss = spg * inv;
        stats->baseline_loss = sb * inv;
    }
    return 0;
}
