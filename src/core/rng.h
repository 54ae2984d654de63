/* rng.h: the one random generator of drlmem.
 *
 * xoshiro256** (Blackman and Vigna, 2018) seeded through splitmix64, so a
 * 64-bit seed fixes every draw: initialisation, dropout masks, data split
 * and batch order. dm.manual_seed(n) seeds the global generator; its state
 * (four 64-bit words) can be read and restored for resumable checkpoints.
 * Derived draws are documented so that they repeat across platforms:
 *   uniform  = (next() >> 40) * 2^-24            (float in [0,1))
 *   uniform_double = (next() >> 11) * 2^-53      (double in [0,1))
 *   normal   = Box-Muller on two uniform_double draws, one value per call
 *   below(n) = Lemire's unbiased multiply-shift rejection */
#ifndef DM_RNG_H
#define DM_RNG_H

#include <stdint.h>

typedef struct dm_rng {
    uint64_t s[4];
} dm_rng;

void dm_rng_seed(dm_rng *r, uint64_t seed);
uint64_t dm_rng_next(dm_rng *r);
float dm_rng_uniform(dm_rng *r);
double dm_rng_uniform_double(dm_rng *r);
float dm_rng_normal(dm_rng *r);
uint64_t dm_rng_below(dm_rng *r, uint64_t n);

/* The generator that dm.manual_seed sets and that every random operation
 * uses unless it is handed another. Seeded with 0 at start-up. */
extern dm_rng dm_rng_global;

#endif
