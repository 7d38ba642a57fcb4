/* edgefdfa_rng: xoshiro128** bits, Irwin-Hall normal draws (see edgefdfa_rng.h). */
#include "edgefdfa_rng.h"

/* The centre of a sum of four 16-bit uniforms, and 1 / its standard deviation sqrt((65536^2 - 1) / 3),
 * rounded to float32 (written in hex so no compiler rounds it differently). */
#define EDGEFDFA_RNG_CENTRE 131070
#define EDGEFDFA_RNG_SCALE 0x1.bb67aep-16f

static uint32_t rotl(uint32_t x, unsigned k) { return (x << k) | (x >> (32u - k)); }

/* splitmix32's step: spreads one seed over the state words. */
static uint32_t splitmix32(uint32_t *z) {
    uint32_t x = (*z += 0x9e3779b9u);
    x = (x ^ (x >> 16)) * 0x85ebca6bu;
    x = (x ^ (x >> 13)) * 0xc2b2ae35u;
    return x ^ (x >> 16);
}

void edgefdfa_rng_seed(edgefdfa_rng *rng, uint32_t seed) {
    for (size_t i = 0; i < 4; ++i) rng->s[i] = splitmix32(&seed);
}

uint32_t edgefdfa_rng_next(edgefdfa_rng *rng) {
    uint32_t *s = rng->s;
    uint32_t result = rotl(s[1] * 5u, 7) * 9u, t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
}

float edgefdfa_rng_normal(edgefdfa_rng *rng) {
    uint32_t a = edgefdfa_rng_next(rng), b = edgefdfa_rng_next(rng);
    int32_t sum = (int32_t)((a & 0xffffu) + (a >> 16) + (b & 0xffffu) + (b >> 16)) - EDGEFDFA_RNG_CENTRE;
    return (float)sum * EDGEFDFA_RNG_SCALE;
}

void edgefdfa_rng_fill(edgefdfa_rng *rng, float *u, size_t n) {
    for (size_t i = 0; i < n; ++i) u[i] = edgefdfa_rng_normal(rng);
}
