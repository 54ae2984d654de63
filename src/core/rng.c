/* rng.c: xoshiro256** with splitmix64 seeding; see rng.h for the documented
 * derived draws that make runs repeat exactly. */
#include "core/rng.h"

#include <math.h>

dm_rng dm_rng_global = {{0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL,
                          0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL}};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void dm_rng_seed(dm_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t dm_rng_next(dm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float dm_rng_uniform(dm_rng *r) { return (float)(dm_rng_next(r) >> 40) * 0x1.0p-24f; }

double dm_rng_uniform_double(dm_rng *r) { return (double)(dm_rng_next(r) >> 11) * 0x1.0p-53; }

float dm_rng_normal(dm_rng *r)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - dm_rng_uniform_double(r);
    double u2 = dm_rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t dm_rng_below(dm_rng *r, uint64_t n)
{
    if (n == 0) return 0;
    /* Lemire (2019): multiply-shift with rejection of the biased low range. */
    uint64_t x = dm_rng_next(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            x = dm_rng_next(r);
            m = (__uint128_t)x * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}
