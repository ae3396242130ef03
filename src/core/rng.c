/*
 * rng.c - splitmix64 with explicit state (no globals), plus a stateless hash for parallel loops.
 *
 * splitmix64 (Steele, Lea, Flood 2014) passes BigCrush, needs 8 bytes of state and is trivially
 * seekable, which is all a training loop needs. cnn_rng_hash_uniform(seed, i) gives the i-th
 * number of a stream without sequential state, so OpenMP loops draw the same numbers whatever
 * the thread count.
 */
#include <math.h>

#include "internal.h"


void cnn_rng_seed(struct cnn_rng *r, uint64_t seed) {
    r->s = seed;
}

uint64_t cnn_rng_u64(struct cnn_rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return cnn_mix64(r->s);
}

/* 24 random bits scaled to [0,1): exactly representable in a float. */
float cnn_rng_uniform(struct cnn_rng *r) {
    return (float)(cnn_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

/* Box-Muller; u1 is kept away from 0 so log() stays finite. */
float cnn_rng_normal(struct cnn_rng *r) {
    const double u1 = ((double)(cnn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    const double u2 = (double)(cnn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

float cnn_rng_hash_uniform(uint64_t seed, uint64_t i) {
    return (float)(cnn_hash64(seed, i) >> 40) * (1.0f / 16777216.0f);
}
