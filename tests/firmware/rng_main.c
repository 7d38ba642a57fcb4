/* rng_main SEED N: write N normal draws of edgefdfa_rng seeded with SEED to stdout as float32, then
 * the generator's next 32-bit word (so a test also sees the state it ended in). */
#include <stdio.h>
#include <stdlib.h>

#include "edgefdfa_rng.h"

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    edgefdfa_rng rng;
    edgefdfa_rng_seed(&rng, (uint32_t)strtoul(argv[1], NULL, 10));
    size_t n = (size_t)strtoul(argv[2], NULL, 10);
    float u[256];
    while (n > 0) {
        size_t k = n < 256 ? n : 256;
        edgefdfa_rng_fill(&rng, u, k);
        if (fwrite(u, sizeof u[0], k, stdout) != k) return 1;
        n -= k;
    }
    uint32_t last = edgefdfa_rng_next(&rng);
    return fwrite(&last, sizeof last, 1, stdout) == 1 ? 0 : 1;
}
