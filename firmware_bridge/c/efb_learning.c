/* efb_learning: samples checked then learned, one kernel step each (see efb_learning.h). */
#include "efb_learning.h"

#include <string.h>

#include "efb_crc32.h"
#include "efb_le.h"
#include "efb_wire.h"

/* The width of every hidden layer, summed (the draws and feedback columns a step needs). */
static size_t sum_hidden(const edgefdfa_layer *layers, size_t n_layers) {
    size_t n = 0;
    for (size_t l = 0; l + 1 < n_layers; ++l) n += layers[l].n_out;
    return n;
}

static uint32_t classes(const edgefdfa_layer *layers, size_t n_layers) { return layers[n_layers - 1].n_out; }

size_t efb_learning_feedback_len(const edgefdfa_layer *layers, size_t n_layers) {
    return EFB_LEARNING_FEEDBACK_LEN((size_t)classes(layers, n_layers), sum_hidden(layers, n_layers));
}

int efb_learning_config_ok(const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers) {
    size_t sum_out = 0;
    for (size_t l = 0; l < n_layers; ++l) sum_out += layers[l].n_out;
    int hidden = n_layers > 1;
    return c->working != NULL && c->workspace != NULL && c->step.rule <= EDGEFDFA_RULE_BP &&
           c->step.loss <= EDGEFDFA_LOSS_MSE && (!hidden || c->step.rule == EDGEFDFA_RULE_BP || c->feedback != NULL) &&
           (!hidden || c->step.rule != EDGEFDFA_RULE_FDFA || c->u != NULL) &&
           c->workspace_len >= EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, (size_t)classes(layers, n_layers));
}

static uint32_t feedback_crc(const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers) {
    size_t n = efb_learning_feedback_len(layers, n_layers);
    return n > 0 && c->feedback != NULL ? efb_crc32((const uint8_t *)c->feedback, 4u * n) : 0u;
}

int efb_learning_start(efb_learning *l, const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers,
                       const efb_rx_state *restored, uint32_t floor) {
    memset(l, 0, sizeof *l);
    l->floor = floor;
    int learned = restored != NULL && (restored->rng[0] | restored->rng[1] | restored->rng[2] | restored->rng[3]) != 0;
    if (!learned) { /* a first boot, or the record of a device that did not learn yet */
        size_t n = efb_learning_feedback_len(layers, n_layers);
        if (n > 0 && c->feedback != NULL) memset(c->feedback, 0, 4u * n);
        edgefdfa_rng_seed(&l->rng, c->seed);
        if (restored != NULL) l->steps = restored->steps;
        return 1;
    }
    if (feedback_crc(c, layers, n_layers) != restored->feedback_crc) return 0;
    l->steps = restored->steps;
    memcpy(l->rng.s, restored->rng, sizeof l->rng.s);
    return 1;
}

void efb_learning_record(const efb_learning *l, const efb_learning_config *c, const edgefdfa_layer *layers,
                         size_t n_layers, efb_rx_state *next) {
    next->steps = l->steps;
    memcpy(next->rng, l->rng.s, sizeof next->rng);
    next->feedback_crc = feedback_crc(c, layers, n_layers);
}

static int targets(const efb_learning_config *c) { return c != NULL && c->step.loss == EDGEFDFA_LOSS_MSE; }

uint32_t efb_learning_sample_bytes(const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers) {
    return 4u * (layers[0].n_in + (targets(c) ? classes(layers, n_layers) : 1u));
}

/* One sample at p into x (n_in) and its label or target (K); scratch is x | target | output. */
static void decode(const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers, const uint8_t *p,
                   float *x, float *target, uint32_t *label) {
    uint32_t n_in = layers[0].n_in;
    for (uint32_t i = 0; i < n_in; ++i) x[i] = efb_f32_of(efb_rd32(p + 4u * i));
    p += 4u * n_in;
    *label = 0;
    if (!targets(c)) *label = efb_rd32(p);
    else for (uint32_t k = 0; k < classes(layers, n_layers); ++k) target[k] = efb_f32_of(efb_rd32(p + 4u * k));
}

efb_code efb_learning_check(const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers,
                            const uint8_t *p, unsigned n, float *scratch) {
    uint32_t n_in = layers[0].n_in, k = classes(layers, n_layers), bytes = efb_learning_sample_bytes(c, layers, n_layers);
    float *x = scratch, *target = x + n_in;
    for (unsigned s = 0; s < n; ++s) {
        uint32_t label;
        decode(c, layers, n_layers, p + (size_t)s * bytes, x, target, &label);
        for (uint32_t i = 0; i < n_in; ++i) {
            if (!efb_finite(x[i])) return EFB_BAD_INPUT;
        }
        for (uint32_t j = 0; targets(c) && j < k; ++j) {
            if (!efb_finite(target[j])) return EFB_BAD_INPUT;
        }
        if (!targets(c) && label >= k) return EFB_BAD_LABEL;
    }
    return EFB_OK;
}

/* LEARNED's status byte: 0 learned, 1 2 3 the kernel's divergence refusals (nothing written). The
 * kernel's other statuses cannot occur: init checked the head and the config, efb_learning_check
 * the labels. */
static uint8_t status_of(edgefdfa_learn_status s) {
    switch (s) {
        case EDGEFDFA_LEARN_OK: return 0;
        case EDGEFDFA_LEARN_DIVERGED_LOSS: return 1;
        case EDGEFDFA_LEARN_DIVERGED_FEEDBACK: return 3;
        default: return 2; /* EDGEFDFA_LEARN_DIVERGED_STEP */
    }
}

void efb_learning_learn(efb_learning *l, const efb_learning_config *c, const edgefdfa_layer *layers, size_t n_layers,
                        const uint8_t *p, unsigned n, float *scratch, uint8_t *entries) {
    uint32_t n_in = layers[0].n_in, k = classes(layers, n_layers), bytes = efb_learning_sample_bytes(c, layers, n_layers);
    size_t hidden = sum_hidden(layers, n_layers);
    int perturbed = hidden > 0 && c->step.rule == EDGEFDFA_RULE_FDFA;
    float *x = scratch, *target = x + n_in, *output = target + k;
    for (unsigned s = 0; s < n; ++s) {
        uint32_t label;
        decode(c, layers, n_layers, p + (size_t)s * bytes, x, target, &label);
        if (perturbed) { /* u = sigma * draws, sum_hidden of them in layer order */
            edgefdfa_rng_fill(&l->rng, c->u, hidden);
            for (size_t i = 0; i < hidden; ++i) c->u[i] = c->step.sigma * c->u[i];
        }
        edgefdfa_learn_result r = {0.0f, 0.0f, 0.0f};
        edgefdfa_learn_status status =
            edgefdfa_learn_step(&c->step, layers, n_layers, c->feedback, x, label, targets(c) ? target : NULL,
                                perturbed ? c->u : NULL, output, NULL, c->workspace, c->workspace_len, &r);
        if (status == EDGEFDFA_LEARN_OK) ++l->steps;
        uint8_t *e = entries + (size_t)s * EFB_ENTRY_BYTES;
        e[EFB_ENTRY_STATUS] = status_of(status);
        efb_wr16(e + EFB_ENTRY_PREDICTED, (uint16_t)edgefdfa_argmax(output, k)); /* init: K fits a u16 */
        efb_wr32(e + EFB_ENTRY_LOSS, efb_bits_of(r.loss));
    }
}
