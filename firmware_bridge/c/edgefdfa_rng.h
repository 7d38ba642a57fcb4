/* edgefdfa_rng: the seeded normal draws a device learns with (the perturbations u of edgefdfa_learn).
 *
 * Freestanding C99, integer arithmetic and one float multiply per draw, so every IEEE-754 target (an
 * FPU, soft-float, x86-64's SSE) produces the same bits, and firmware_bridge/rng.py reproduces them
 * in Python: the Python device and the C device learn identically from the same seed.
 *
 * Uniform bits: xoshiro128** 1.1 (Blackman & Vigna), 32-bit words, seeded from one 32-bit seed by
 * splitmix32, so no seed gives the all-zero state. A normal draw is the Irwin-Hall sum of four 16-bit
 * uniforms (the halves of two outputs), centred and scaled to unit variance: mean exactly 0, variance
 * 1 to float32 rounding, bounded at about +-3.46 (sqrt 12). Forward gradients need draws of
 * zero mean and identity covariance, not Gaussian tails; this costs two outputs and no libm.
 */
#ifndef EDGEFDFA_RNG_H
#define EDGEFDFA_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t s[4];
} edgefdfa_rng;

/* Seed the generator (any seed, 0 included). */
void edgefdfa_rng_seed(edgefdfa_rng *rng, uint32_t seed);

/* The next 32 uniform bits. */
uint32_t edgefdfa_rng_next(edgefdfa_rng *rng);

/* The next draw of zero mean and unit variance. */
float edgefdfa_rng_normal(edgefdfa_rng *rng);

/* Fill u[0 .. n) with normal draws, in index order. */
void edgefdfa_rng_fill(edgefdfa_rng *rng, float *u, size_t n);

#endif
