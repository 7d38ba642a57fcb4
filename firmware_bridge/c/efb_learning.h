/* efb_learning: the device's own learning (PROTOCOL.md §8). A LEARN's samples are checked, all of
 * them before any is learned, then each runs one step of the C kernel (edgefdfa_learn.h) on the
 * working copy, with FDFA's perturbations drawn from edgefdfa_rng.h; the step count, the generator
 * and the feedback are what a state record carries so that learning goes on where it was after a
 * reset. The receiver (edgefdfa_rx.c) owns the frames, the counters and the saves; this unit owns
 * the samples and the steps.
 *
 * Feedback layout (EFB_LEARNING_FEEDBACK_LEN floats): B_l (K, n_l) for each hidden layer l, back
 * to back, as edgefdfa_learn.h has it. Persist it with every record, in the record's cell
 * (generation % 2), and hand back the restored record's cell at init.
 */
#ifndef EFB_LEARNING_H
#define EFB_LEARNING_H

#include <stddef.h>
#include <stdint.h>

#include "edgefdfa_head.h"
#include "edgefdfa_learn.h"
#include "edgefdfa_rng.h"
#include "efb_code.h"
#include "efb_state.h"

/* Floats of feedback and of u for a head whose hidden layers' widths sum to sum_hidden and whose
 * output has n_classes values (the kernel's macros, under the receiver's names). */
#define EFB_LEARNING_FEEDBACK_LEN(n_classes, sum_hidden) EDGEFDFA_LEARN_FEEDBACK_LEN(n_classes, sum_hidden)
#define EFB_LEARNING_U_LEN(sum_hidden) EDGEFDFA_LEARN_U_LEN(sum_hidden)

/* How a device learns, and its buffers (the caller's, valid for the receiver's life). */
typedef struct {
    edgefdfa_learn_config step; /* the kernel's rule (FDFA), loss (CE or MSE: TARGETS), lr, alpha, sigma,
                                   max_sumsq */
    uint32_t seed;              /* the generator's seed on a device without a record of its own */
    uint32_t save_every;        /* save by itself after the LEARN that leaves this many steps unsaved;
                                   0: only on SAVE */
    float *working;             /* slot_size bytes: the working copy INFER and LEARN run */
    float *feedback;            /* EFB_LEARNING_FEEDBACK_LEN(K, sum_hidden) floats (NULL: a one-layer head) */
    float *u;                   /* EFB_LEARNING_U_LEN(sum_hidden) floats (NULL: a one-layer head) */
    float *workspace;           /* workspace_len floats for the kernel */
    size_t workspace_len;       /* >= EDGEFDFA_LEARN_WORKSPACE_LEN(sum of n_out, K) */
} efb_learning_config;

/* What learning carries from step to step (the receiver's, private). */
typedef struct {
    edgefdfa_rng rng; /* draws u */
    uint32_t steps;   /* steps applied since the factory weights */
    uint32_t floor;   /* the counter of the last LEARN taken (0 after a reset without a key; with one,
                         the persisted counter) */
} efb_learning;

/* Whether config suits this head: buffers present, rule and loss known, workspace large enough. */
int efb_learning_config_ok(const efb_learning_config *config, const edgefdfa_layer *layers, size_t n_layers);

/* Floats of feedback this head learns with (0 for a one-layer head). */
size_t efb_learning_feedback_len(const edgefdfa_layer *layers, size_t n_layers);

/* Start learning: from `restored` (its step count and generator; config->feedback must hold its
 * cell, checked against its feedback_crc) or, with NULL or a record of a device that did not learn
 * (its generator all zero), from zero feedback, the seed and step 0. Returns 0 if the feedback does
 * not match the record. */
int efb_learning_start(efb_learning *learning, const efb_learning_config *config, const edgefdfa_layer *layers,
                       size_t n_layers, const efb_rx_state *restored, uint32_t floor);

/* Write learning's step count, generator and feedback CRC into a record about to be persisted. */
void efb_learning_record(const efb_learning *learning, const efb_learning_config *config,
                         const edgefdfa_layer *layers, size_t n_layers, efb_rx_state *next);

/* Bytes of one LEARN sample: n_in floats and a u32 label, or (MSE; config may be NULL: a label) K floats. */
uint32_t efb_learning_sample_bytes(const efb_learning_config *config, const edgefdfa_layer *layers,
                                   size_t n_layers);

/* Check n samples (back to back at p) before any is learned: EFB_OK, EFB_BAD_INPUT (a non-finite
 * input or target) or EFB_BAD_LABEL (a label >= K). scratch: n_in + 3 K floats. */
efb_code efb_learning_check(const efb_learning_config *config, const edgefdfa_layer *layers, size_t n_layers,
                            const uint8_t *p, unsigned n, float *scratch);

/* Learn n checked samples in order, one step each, on the layers (pointed into the working copy,
 * w_learn / bias_learn at their weights), writing one LEARNED entry per sample at entries
 * (EFB_ENTRY_BYTES each: status, the pre-update argmax, the loss). */
void efb_learning_learn(efb_learning *learning, const efb_learning_config *config, const edgefdfa_layer *layers,
                        size_t n_layers, const uint8_t *p, unsigned n, float *scratch, uint8_t *entries);

#endif
