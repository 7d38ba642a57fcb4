#include "edgefdfa_head.h"

#include <math.h>

/* y_j = f(sum_i W_ji x_i + b_j), with W float32 or int8 times a per-row scale. */
static edgefdfa_head_status dense(const edgefdfa_layer *layer, const float *x, float *y) {
    for (uint32_t j = 0; j < layer->n_out; ++j) {
        float acc = 0.0f;
        if (layer->w_f32 != NULL) {
            const float *row = layer->w_f32 + (size_t)j * layer->n_in;
            for (uint32_t i = 0; i < layer->n_in; ++i) acc += row[i] * x[i];
        } else {
            const int8_t *row = layer->w_i8 + (size_t)j * layer->n_in;
            for (uint32_t i = 0; i < layer->n_in; ++i) acc += (float)row[i] * x[i];
            acc *= layer->w_scale[j];
        }
        acc += layer->bias[j];
        switch (layer->activation) {
            case EDGEFDFA_IDENTITY: break;
            case EDGEFDFA_RELU: acc = acc > 0.0f ? acc : 0.0f; break;
            case EDGEFDFA_TANH: acc = tanhf(acc); break;
            case EDGEFDFA_SIGMOID: acc = 1.0f / (1.0f + expf(-acc)); break;
            default: return EDGEFDFA_HEAD_BAD_ACTIVATION;
        }
        y[j] = acc;
    }
    return EDGEFDFA_HEAD_OK;
}

edgefdfa_head_status edgefdfa_head_forward(const edgefdfa_layer *layers, size_t n_layers,
                                           const float *x, float *y, float *scratch, size_t scratch_len) {
    if (layers == NULL || n_layers == 0 || x == NULL || y == NULL || scratch == NULL) {
        return EDGEFDFA_HEAD_BAD_ARGUMENT;
    }
    size_t widest = 0;
    for (size_t l = 0; l < n_layers; ++l) {
        const edgefdfa_layer *layer = &layers[l];
        if (layer->n_in == 0 || layer->n_out == 0 || layer->bias == NULL ||
            (layer->w_f32 == NULL) == (layer->w_i8 == NULL) || (layer->w_i8 != NULL && layer->w_scale == NULL)) {
            return EDGEFDFA_HEAD_BAD_ARGUMENT;
        }
        if (layer->n_out > widest) widest = layer->n_out;
    }
    if (scratch_len < 2 * widest) return EDGEFDFA_HEAD_SCRATCH_TOO_SMALL;
    const float *in = x;
    for (size_t l = 0; l < n_layers; ++l) {
        float *out = (l + 1 == n_layers) ? y : scratch + (l % 2) * widest;
        edgefdfa_head_status status = dense(&layers[l], in, out);
        if (status != EDGEFDFA_HEAD_OK) return status;
        in = out;
    }
    return EDGEFDFA_HEAD_OK;
}

size_t edgefdfa_argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i) {
        if (v[i] > v[best]) best = i;
    }
    return best;
}
