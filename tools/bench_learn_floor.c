/* The C learning step's own floor: edgefdfa_learn_step in a loop with no Python, for
 * tools/bench_engine.py. FDFA, relu hidden layers, identity output, softmax CE, SGD at lr 0.01, on
 * the rows and labels it reads from stdin; u drawn in advance (the cost of the draws is Python's
 * side). Prints the median of 15 blocks' microseconds per step.
 *
 *     bench_learn_floor STEPS N_IN H1 [H2 ...] K < rows(float32 N_IN each) labels(int32 each)
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>

#include "edgefdfa_learn.h"

enum { MAX_LAYERS = 8, BLOCKS = 15 };

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5 || argc - 2 > MAX_LAYERS + 1) {
        fprintf(stderr, "usage: %s STEPS N_IN H1 [H2 ...] K < rows labels\n", argv[0]);
        return 2;
    }
    long steps = atol(argv[1]);
    size_t n_widths = (size_t)(argc - 2), n_layers = n_widths - 1, sum_out = 0, hidden = 0, n_params = 0;
    uint32_t width[MAX_LAYERS + 1];
    for (size_t l = 0; l < n_widths; ++l) width[l] = (uint32_t)atol(argv[l + 2]);
    for (size_t l = 0; l < n_layers; ++l) {
        sum_out += width[l + 1];
        hidden += l + 1 < n_layers ? width[l + 1] : 0;
        n_params += (size_t)width[l + 1] * (width[l] + 1);
    }
    uint32_t K = width[n_layers];
    /* the rows and labels: read until EOF, rows then labels */
    size_t cap = 1 << 20, have = 0;
    unsigned char *raw = malloc(cap);
    for (size_t got; (got = fread(raw + have, 1, cap - have, stdin)) > 0;) {
        have += got;
        if (have == cap) raw = realloc(raw, cap *= 2);
    }
    size_t n_rows = have / (sizeof(float) * width[0] + sizeof(int32_t));
    const float *rows = (const float *)raw;
    const int32_t *labels = (const int32_t *)(rows + n_rows * width[0]);

    float *params = calloc(n_params, sizeof(float)), *feedback = calloc((size_t)K * hidden, sizeof(float));
    size_t ws_len = EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, (size_t)K);
    float *workspace = calloc(ws_len, sizeof(float)), *output = calloc(K, sizeof(float));
    size_t n_u = 4096 * (hidden ? hidden : 1);
    float *u = malloc(n_u * sizeof(float));
    srand(0);
    for (size_t i = 0; i < n_u; ++i) { /* roughly N(0, 1): a sum of 12 uniforms, centred */
        float s = 0.0f;
        for (int k = 0; k < 12; ++k) s += (float)rand() / (float)RAND_MAX;
        u[i] = s - 6.0f;
    }
    edgefdfa_layer layers[MAX_LAYERS];
    float *at = params;
    for (size_t l = 0; l < n_layers; ++l) { /* He-uniform, as the engine starts relu layers */
        float bound = sqrtf(6.0f / (float)width[l]);
        for (size_t i = 0; i < (size_t)width[l + 1] * width[l]; ++i) at[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 2.0f * bound;
        layers[l] = (edgefdfa_layer){width[l], width[l + 1], at, NULL, NULL, at + (size_t)width[l + 1] * width[l],
                                     (uint8_t)(l + 1 < n_layers ? EDGEFDFA_RELU : EDGEFDFA_IDENTITY), NULL, NULL};
        layers[l].w_learn = at;
        layers[l].bias_learn = at + (size_t)width[l + 1] * width[l];
        at += (size_t)width[l + 1] * (width[l] + 1);
    }
    edgefdfa_learn_config config = {EDGEFDFA_RULE_FDFA, EDGEFDFA_LOSS_CE, 0.01f, 0.003f, 1.0f, 1e30f};
    double block[BLOCKS];
    long per_block = steps / BLOCKS > 0 ? steps / BLOCKS : 1, i = 0, refused = 0;
    for (int b = -1; b < BLOCKS; ++b) { /* block -1 warms up */
        double t0 = now_us();
        for (long s = 0; s < per_block; ++s, ++i) {
            size_t r = (size_t)i % n_rows;
            const float *ui = hidden ? u + ((size_t)i % 4096) * hidden : NULL;
            refused += edgefdfa_learn_step(&config, layers, n_layers, hidden ? feedback : NULL, rows + r * width[0],
                                           (uint32_t)labels[r], NULL, ui, output, NULL, workspace, ws_len,
                                           NULL) != EDGEFDFA_LEARN_OK;
        }
        if (b >= 0) block[b] = (now_us() - t0) / (double)per_block;
    }
    qsort(block, BLOCKS, sizeof block[0], by_value);
    printf("{\"median_us\": %.4f, \"steps\": %ld, \"refused\": %ld}\n", block[BLOCKS / 2], per_block * BLOCKS, refused);
    return 0;
}
