/* edgefdfa_learn: one learning step of a dense head at batch 1 with SGD, for firmware and for the
 * Pi's compiled path (edgefdfa/_head.c), so both compute the same step.
 *
 * Freestanding C99: no malloc, no libc beyond <math.h> (expf, logf, tanhf); the caller owns every
 * buffer. The head is L float32 edgefdfa_layer layers (edgefdfa_head.h) whose w_learn / bias_learn
 * point at their own w_f32 / bias. A step is:
 *   1. the forward pass, with a tangent beside each activity for FDFA: the hidden layer l's tangent
 *      gets u_l added after its activation, so the output tangent d is dy along u;
 *   2. the loss (softmax cross-entropy over logits, or mean squared error) and e = dL/dy;
 *   3. each layer's delta: the output layer's exact one; hidden layers' (e B_l) * f'(a_l) for FDFA and
 *      DFA (B_l: feedback, (K, n_l)), the backward pass for BP;
 *   4. the divergence check: a non-finite loss, or |gradient|^2 or FDFA's bound on |feedback change|^2
 *      over config->max_sumsq, returns an EDGEFDFA_LEARN_DIVERGED_* status with nothing written;
 *   5. W_l -= lr delta_l h_l^T, b_l -= lr delta_l; FDFA: B_l <- (1 - alpha) B_l + (alpha / sigma^2) d u_l^T.
 * The perturbations u are an input: the caller chooses the generator (N(0, sigma^2) draws).
 */
#ifndef EDGEFDFA_LEARN_H
#define EDGEFDFA_LEARN_H

#include <stddef.h>
#include <stdint.h>

#include "edgefdfa_head.h"

typedef enum { EDGEFDFA_RULE_FDFA = 0, EDGEFDFA_RULE_DFA = 1, EDGEFDFA_RULE_BP = 2 } edgefdfa_rule;

typedef enum { EDGEFDFA_LOSS_CE = 0, EDGEFDFA_LOSS_MSE = 1 } edgefdfa_loss;

typedef enum {
    EDGEFDFA_LEARN_OK = 0,
    EDGEFDFA_LEARN_BAD_ARGUMENT,       /* a NULL pointer, a zero size, layers that do not chain, a layer
                                          that is int8 or whose w_learn / bias_learn are not its weights */
    EDGEFDFA_LEARN_BAD_ACTIVATION,     /* an activation code outside edgefdfa_activation */
    EDGEFDFA_LEARN_BAD_RULE,           /* a rule or loss code outside edgefdfa_rule / edgefdfa_loss */
    EDGEFDFA_LEARN_BAD_LABEL,          /* a cross-entropy label >= K */
    EDGEFDFA_LEARN_WORKSPACE_TOO_SMALL,
    EDGEFDFA_LEARN_DIVERGED_LOSS,      /* the loss is not finite: nothing was written */
    EDGEFDFA_LEARN_DIVERGED_STEP,      /* |gradient|^2 is over max_sumsq (or not finite): nothing was written */
    EDGEFDFA_LEARN_DIVERGED_FEEDBACK   /* FDFA's |feedback change|^2 bound is over max_sumsq: nothing was written */
} edgefdfa_learn_status;

/* Floats of workspace a step needs: sum_out is the sum of every layer's n_out, n_classes the last's. */
#define EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, n_classes) (5u * (sum_out) + (n_classes))
/* Floats of feedback (FDFA, DFA: B_l (K, n_l) for each hidden layer, back to back) and of u (FDFA:
 * u_l (n_l) for each hidden layer, back to back); sum_hidden is the sum of the hidden widths. */
#define EDGEFDFA_LEARN_FEEDBACK_LEN(n_classes, sum_hidden) ((n_classes) * (sum_hidden))
#define EDGEFDFA_LEARN_U_LEN(sum_hidden) (sum_hidden)

typedef struct {
    uint8_t rule; /* edgefdfa_rule */
    uint8_t loss; /* edgefdfa_loss */
    float lr;
    float alpha;     /* FDFA: the feedback's momentum, in (0, 1] */
    float sigma;     /* FDFA: the std the u draws have (J~ = d u^T / sigma^2) */
    float max_sumsq; /* the divergence bound on |gradient|^2 and on the feedback change's bound */
} edgefdfa_learn_config;

typedef struct {
    float loss;           /* of the sample, before the update */
    float step_sumsq;     /* |gradient|^2 = sum_l |delta_l|^2 (|h_l|^2 + 1), h_l the layer's input */
    float feedback_sumsq; /* FDFA: (alpha / sigma^2)^2 |d|^2 sum_l |u_l|^2 >= |B change|^2; else 0 */
} edgefdfa_learn_result;

/* One step on sample x (layers[0].n_in values) with label (cross-entropy) or target (mse: K values;
 * NULL for cross-entropy). u: FDFA's perturbations (NULL otherwise, or for a one-layer head).
 * feedback: B (NULL for BP or a one-layer head). output (K, may be NULL): the raw output before the
 * update, the prediction, written even when the step diverged. ranges (L x 4, may be NULL): widened to
 * [min a, max a, min h, max h] of each layer's pre- and post-activation values on an applied step.
 * result (may be NULL): the loss and the two checked sums. */
edgefdfa_learn_status edgefdfa_learn_step(const edgefdfa_learn_config *config, const edgefdfa_layer *layers,
                                          size_t n_layers, float *feedback, const float *x, uint32_t label,
                                          const float *target, const float *u, float *output, float *ranges,
                                          float *workspace, size_t workspace_len, edgefdfa_learn_result *result);

#endif
