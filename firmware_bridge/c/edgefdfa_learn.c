#include "edgefdfa_learn.h"

#include <math.h>

/* A layer's buffers in the workspace: n_out floats each, then the next layer's; e (K) after the last. */
typedef struct {
    float *a;     /* pre-activation W h + b */
    float *h;     /* activity f(a) */
    float *t;     /* FDFA: the activity's tangent */
    float *df;    /* f'(a) */
    float *delta; /* dL/da */
} slots;

static slots slots_of(float *workspace, const edgefdfa_layer *layers, size_t l) {
    size_t offset = 0;
    for (size_t k = 0; k < l; ++k) offset += 5u * layers[k].n_out;
    float *at = workspace + offset;
    size_t n = layers[l].n_out;
    return (slots){at, at + n, at + 2 * n, at + 3 * n, at + 4 * n};
}

/* h = f(a) and f'(a), as edgefdfa/activations.py computes them (sigmoid through tanh: no overflow). */
static void activate(uint8_t activation, float a, float *h, float *df) {
    switch (activation) {
        case EDGEFDFA_RELU: *h = a > 0.0f ? a : 0.0f; *df = *h > 0.0f ? 1.0f : 0.0f; break;
        case EDGEFDFA_TANH: *h = tanhf(a); *df = 1.0f - *h * *h; break;
        case EDGEFDFA_SIGMOID: *h = 0.5f * (1.0f + tanhf(0.5f * a)); *df = (1.0f - *h) * *h; break;
        default: *h = a; *df = 1.0f; break; /* EDGEFDFA_IDENTITY; codes were checked */
    }
}

static float sumsq(const float *v, size_t n) {
    float total = 0.0f;
    for (size_t i = 0; i < n; ++i) total += v[i] * v[i];
    return total;
}

/* EDGEFDFA_LEARN_OK if the arguments describe a step this kernel can take, else why not. */
static edgefdfa_learn_status check(const edgefdfa_learn_config *config, const edgefdfa_layer *layers, size_t n_layers,
                                   const float *feedback, const float *x, uint32_t label, const float *target,
                                   const float *u, const float *workspace, size_t workspace_len) {
    if (config == NULL || layers == NULL || n_layers == 0 || x == NULL || workspace == NULL) {
        return EDGEFDFA_LEARN_BAD_ARGUMENT;
    }
    if (config->rule > EDGEFDFA_RULE_BP || config->loss > EDGEFDFA_LOSS_MSE) return EDGEFDFA_LEARN_BAD_RULE;
    size_t sum_out = 0;
    for (size_t l = 0; l < n_layers; ++l) {
        const edgefdfa_layer *layer = &layers[l];
        if (layer->n_in == 0 || layer->n_out == 0 || (l > 0 && layer->n_in != layers[l - 1].n_out) ||
            layer->w_f32 == NULL || layer->w_i8 != NULL || layer->bias == NULL || layer->w_learn != layer->w_f32 ||
            layer->bias_learn != layer->bias) {
            return EDGEFDFA_LEARN_BAD_ARGUMENT;
        }
        if (layer->activation > EDGEFDFA_SIGMOID) return EDGEFDFA_LEARN_BAD_ACTIVATION;
        sum_out += layer->n_out;
    }
    uint32_t n_classes = layers[n_layers - 1].n_out;
    int hidden = n_layers > 1;
    if ((config->loss == EDGEFDFA_LOSS_MSE && target == NULL) ||
        (hidden && config->rule != EDGEFDFA_RULE_BP && feedback == NULL) ||
        (hidden && config->rule == EDGEFDFA_RULE_FDFA && u == NULL)) {
        return EDGEFDFA_LEARN_BAD_ARGUMENT;
    }
    if (config->loss == EDGEFDFA_LOSS_CE && label >= n_classes) return EDGEFDFA_LEARN_BAD_LABEL;
    if (workspace_len < EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, (size_t)n_classes)) {
        return EDGEFDFA_LEARN_WORKSPACE_TOO_SMALL;
    }
    return EDGEFDFA_LEARN_OK;
}

/* acc[r] = sum_i W[r][i] in[i] for the R rows at row, each summed in index order (as a scalar loop
 * sums it: the same result on every target), the rows' chains independent so they overlap. */
#define ROWS 4
static void dots(const float *row, uint32_t n_in, uint32_t rows, const float *in, float *acc) {
    float a[ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (rows == ROWS) {
        const float *r0 = row, *r1 = row + n_in, *r2 = row + 2 * (size_t)n_in, *r3 = row + 3 * (size_t)n_in;
        for (uint32_t i = 0; i < n_in; ++i) {
            a[0] += r0[i] * in[i];
            a[1] += r1[i] * in[i];
            a[2] += r2[i] * in[i];
            a[3] += r3[i] * in[i];
        }
    } else {
        for (uint32_t r = 0; r < rows; ++r) {
            for (uint32_t i = 0; i < n_in; ++i) a[r] += row[(size_t)r * n_in + i] * in[i];
        }
    }
    for (uint32_t r = 0; r < rows; ++r) acc[r] = a[r];
}

/* a, h, f'(a) of every layer, and with tangents (FDFA) each tangent t, u_l added after hidden layer l. */
static void forward(const edgefdfa_layer *layers, size_t n_layers, const float *x, const float *u, int tangents,
                    float *workspace) {
    const float *in = x, *t_in = NULL; /* the input's tangent is 0 */
    for (size_t l = 0; l < n_layers; ++l) {
        const edgefdfa_layer *layer = &layers[l];
        slots s = slots_of(workspace, layers, l);
        int perturbed = tangents && l + 1 < n_layers;
        for (uint32_t j = 0; j < layer->n_out; j += ROWS) {
            uint32_t rows = layer->n_out - j < ROWS ? layer->n_out - j : ROWS;
            const float *row = layer->w_f32 + (size_t)j * layer->n_in;
            float acc[ROWS], t_acc[ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
            dots(row, layer->n_in, rows, in, acc);
            if (t_in != NULL) dots(row, layer->n_in, rows, t_in, t_acc);
            for (uint32_t r = 0; r < rows; ++r) {
                uint32_t k = j + r;
                s.a[k] = acc[r] + layer->bias[k];
                activate(layer->activation, s.a[k], &s.h[k], &s.df[k]);
                if (tangents) s.t[k] = (t_in != NULL ? s.df[k] * t_acc[r] : 0.0f) + (perturbed ? u[k] : 0.0f);
            }
        }
        if (perturbed) u += layer->n_out;
        in = s.h;
        t_in = tangents ? s.t : NULL;
    }
}

/* e = dL/dy into e (K); returns the loss. */
static float loss_and_error(uint8_t loss, const float *y, uint32_t n_classes, uint32_t label, const float *target,
                            float *e) {
    if (loss == EDGEFDFA_LOSS_MSE) {
        float total = 0.0f;
        for (uint32_t k = 0; k < n_classes; ++k) {
            e[k] = y[k] - target[k];
            total += e[k] * e[k];
        }
        float scale = 2.0f / (float)n_classes;
        for (uint32_t k = 0; k < n_classes; ++k) e[k] *= scale;
        return total / (float)n_classes;
    }
    float top = y[0], total = 0.0f; /* softmax cross-entropy: log sum exp(y - top) - (y_t - top) */
    for (uint32_t k = 1; k < n_classes; ++k) top = y[k] > top ? y[k] : top;
    for (uint32_t k = 0; k < n_classes; ++k) {
        e[k] = expf(y[k] - top);
        total += e[k];
    }
    for (uint32_t k = 0; k < n_classes; ++k) e[k] /= total;
    e[label] -= 1.0f; /* e = p - onehot */
    return logf(total) - (y[label] - top);
}

/* Every layer's delta; the hidden ones through the feedback (FDFA, DFA) or the weights (BP). */
static void deltas(uint8_t rule, const edgefdfa_layer *layers, size_t n_layers, const float *feedback, const float *e,
                   float *workspace) {
    size_t last = n_layers - 1;
    uint32_t n_classes = layers[last].n_out;
    slots out = slots_of(workspace, layers, last);
    for (uint32_t k = 0; k < n_classes; ++k) out.delta[k] = e[k] * out.df[k];
    if (rule == EDGEFDFA_RULE_BP) {
        for (size_t l = last; l > 0; --l) {
            const edgefdfa_layer *layer = &layers[l];
            slots s = slots_of(workspace, layers, l), below = slots_of(workspace, layers, l - 1);
            for (uint32_t i = 0; i < layer->n_in; ++i) below.delta[i] = 0.0f;
            for (uint32_t j = 0; j < layer->n_out; ++j) {
                const float *row = layer->w_f32 + (size_t)j * layer->n_in;
                for (uint32_t i = 0; i < layer->n_in; ++i) below.delta[i] += s.delta[j] * row[i];
            }
            for (uint32_t i = 0; i < layer->n_in; ++i) below.delta[i] *= below.df[i];
        }
        return;
    }
    const float *B = feedback;
    for (size_t l = 0; l < last; ++l) { /* delta_l = (e B_l) * f'(a_l), B_l (K, n_l) */
        uint32_t n = layers[l].n_out;
        slots s = slots_of(workspace, layers, l);
        for (uint32_t j = 0; j < n; ++j) s.delta[j] = 0.0f;
        for (uint32_t k = 0; k < n_classes; ++k) {
            for (uint32_t j = 0; j < n; ++j) s.delta[j] += e[k] * B[(size_t)k * n + j];
        }
        for (uint32_t j = 0; j < n; ++j) s.delta[j] *= s.df[j];
        B += (size_t)n_classes * n;
    }
}

/* W_l -= lr delta_l h_l^T, b_l -= lr delta_l, for every layer. */
static void sgd(const edgefdfa_layer *layers, size_t n_layers, const float *x, float lr, float *workspace) {
    const float *in = x;
    for (size_t l = 0; l < n_layers; ++l) {
        const edgefdfa_layer *layer = &layers[l];
        slots s = slots_of(workspace, layers, l);
        for (uint32_t j = 0; j < layer->n_out; ++j) {
            float step = -lr * s.delta[j];
            float *row = layer->w_learn + (size_t)j * layer->n_in;
            for (uint32_t i = 0; i < layer->n_in; ++i) row[i] += step * in[i];
            layer->bias_learn[j] += step;
        }
        in = s.h;
    }
}

/* FDFA: B_l <- (1 - alpha) B_l + c d u_l^T, c = alpha / sigma^2. */
static void update_feedback(const edgefdfa_learn_config *config, const edgefdfa_layer *layers, size_t n_layers,
                            float *feedback, const float *d, const float *u) {
    uint32_t n_classes = layers[n_layers - 1].n_out;
    float keep = 1.0f - config->alpha, c = config->alpha / (config->sigma * config->sigma);
    for (size_t l = 0; l + 1 < n_layers; ++l) {
        uint32_t n = layers[l].n_out;
        for (uint32_t k = 0; k < n_classes; ++k) {
            float cd = c * d[k];
            float *row = feedback + (size_t)k * n;
            for (uint32_t j = 0; j < n; ++j) row[j] = keep * row[j] + cd * u[j];
        }
        feedback += (size_t)n_classes * n;
        u += n;
    }
}

static void widen_ranges(const edgefdfa_layer *layers, size_t n_layers, float *workspace, float *ranges) {
    for (size_t l = 0; l < n_layers; ++l) {
        slots s = slots_of(workspace, layers, l);
        float *r = ranges + 4 * l;
        for (uint32_t j = 0; j < layers[l].n_out; ++j) {
            r[0] = s.a[j] < r[0] ? s.a[j] : r[0];
            r[1] = s.a[j] > r[1] ? s.a[j] : r[1];
            r[2] = s.h[j] < r[2] ? s.h[j] : r[2];
            r[3] = s.h[j] > r[3] ? s.h[j] : r[3];
        }
    }
}

edgefdfa_learn_status edgefdfa_learn_step(const edgefdfa_learn_config *config, const edgefdfa_layer *layers,
                                          size_t n_layers, float *feedback, const float *x, uint32_t label,
                                          const float *target, const float *u, float *output, float *ranges,
                                          float *workspace, size_t workspace_len, edgefdfa_learn_result *result) {
    edgefdfa_learn_status status = check(config, layers, n_layers, feedback, x, label, target, u, workspace,
                                         workspace_len);
    if (status != EDGEFDFA_LEARN_OK) return status;
    size_t last = n_layers - 1;
    uint32_t n_classes = layers[last].n_out;
    int fdfa = config->rule == EDGEFDFA_RULE_FDFA && n_layers > 1;
    forward(layers, n_layers, x, u, fdfa, workspace);
    slots out = slots_of(workspace, layers, last);
    float *e = out.delta + n_classes;
    if (output != NULL) {
        for (uint32_t k = 0; k < n_classes; ++k) output[k] = out.h[k];
    }
    float loss = loss_and_error(config->loss, out.h, n_classes, label, target, e);
    deltas(config->rule, layers, n_layers, feedback, e, workspace);

    float step = 0.0f, change = 0.0f;
    const float *in = x;
    for (size_t l = 0; l < n_layers; ++l) {
        slots s = slots_of(workspace, layers, l);
        step += sumsq(s.delta, layers[l].n_out) * (sumsq(in, layers[l].n_in) + 1.0f);
        in = s.h;
    }
    if (fdfa) {
        size_t n_u = 0;
        for (size_t l = 0; l < last; ++l) n_u += layers[l].n_out;
        float c = config->alpha / (config->sigma * config->sigma);
        change = c * c * sumsq(out.t, n_classes) * sumsq(u, n_u);
    }
    if (result != NULL) *result = (edgefdfa_learn_result){loss, step, change};
    if (!isfinite(loss)) return EDGEFDFA_LEARN_DIVERGED_LOSS;
    if (!(step <= config->max_sumsq)) return EDGEFDFA_LEARN_DIVERGED_STEP; /* NaN compares false: refused */
    if (!(change <= config->max_sumsq)) return EDGEFDFA_LEARN_DIVERGED_FEEDBACK;

    sgd(layers, n_layers, x, config->lr, workspace);
    if (fdfa) update_feedback(config, layers, n_layers, feedback, out.t, u);
    if (ranges != NULL) widen_ranges(layers, n_layers, workspace, ranges);
    return EDGEFDFA_LEARN_OK;
}
