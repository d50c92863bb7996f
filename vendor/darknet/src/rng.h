#ifndef DN_RNG_H
#define DN_RNG_H

#include <stdint.h>

/* splitmix64: small, fast and reproducible across platforms; one per network. */
typedef struct { uint64_t state; } dn_rng;

static inline uint64_t dn_rng_next(dn_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline float dn_rng_uniform(dn_rng *rng)
{
    return (float)(dn_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n). */
static inline int dn_rng_below(dn_rng *rng, int n)
{
    return (int)(dn_rng_next(rng) % (uint64_t)n);
}

#endif
