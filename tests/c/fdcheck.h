/* fdcheck.h: the finite-difference gradient check the C test suites share
 * (test_layers.c, test_policy.c), and the small helpers around it: uniform
 * random vectors, zeroed buffers and a double-precision dot product.
 * check_grad perturbs every element of x by +-eps, runs the float32 forward
 * f(ctx) twice, and requires max |fd - analytic| <= FD_RTOL times the
 * largest analytic entry (at least 1e-3), and a gradient that is not all
 * zero, which would prove nothing. Header-only; include after cmocka.h. */
#ifndef DM_TEST_FDCHECK_H
#define DM_TEST_FDCHECK_H

#include <math.h>
#include <stdlib.h>

#include "core/rng.h"

#define FD_RTOL 5e-4

static inline float *randv(size_t n, float scale, dm_rng *r)
{
    float *x = calloc(n ? n : 1, sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * dm_rng_uniform(r) - 1.0f) * scale;
    return x;
}

static inline float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static inline double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of f over every element of x against an. */
static inline void check_grad(const char *what, float *x, size_t n, const float *an, loss_fn f, void *ctx,
                       float eps)
{
    double maxerr = 0, maxabs = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        float xp = save + eps, xm = save - eps;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = save;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double e = fabs(fd - (double)an[i]);
        if (e > maxerr) {
            maxerr = e;
            worst = i;
        }
        if (fabs(an[i]) > maxabs) maxabs = fabs(an[i]);
    }
    double tol = FD_RTOL * (maxabs > 1e-3 ? maxabs : 1e-3);
    if (maxerr > tol || maxabs == 0)
        print_message("%s: max |fd - analytic| = %g at %zu (analytic %g), scale %g, tol %g\n", what,
                      maxerr, worst, (double)an[worst], maxabs, tol);
    assert_true(maxabs > 0); /* a zero gradient would prove nothing */
    assert_true(maxerr <= tol);
}

#endif
