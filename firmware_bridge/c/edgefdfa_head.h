/* edgefdfa_head: the forward pass of a dense head, for firmware.
 *
 * Freestanding C99: no malloc, no libc beyond <stdint.h>/<stddef.h>/<math.h> (expf, tanhf); the
 * caller owns every buffer. A head is L dense layers y = f(W x + b) with W row-major (n_out, n_in),
 * as `edgefdfa export --format c|c-int8` writes them. Int8 weights follow the TFLite quantisation
 * spec (symmetric, zero point 0, one float scale per output channel); activations stay float32.
 */
#ifndef EDGEFDFA_HEAD_H
#define EDGEFDFA_HEAD_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    EDGEFDFA_IDENTITY = 0,
    EDGEFDFA_RELU = 1,
    EDGEFDFA_TANH = 2,
    EDGEFDFA_SIGMOID = 3
} edgefdfa_activation;

typedef enum {
    EDGEFDFA_HEAD_OK = 0,
    EDGEFDFA_HEAD_BAD_ARGUMENT,   /* a NULL pointer or a zero size */
    EDGEFDFA_HEAD_BAD_ACTIVATION, /* an activation code outside edgefdfa_activation */
    EDGEFDFA_HEAD_SCRATCH_TOO_SMALL
} edgefdfa_head_status;

/* One dense layer. Exactly one of w_f32 / w_i8 is non-NULL; w_scale (n_out) goes with w_i8. */
typedef struct {
    uint32_t n_in, n_out;
    const float *w_f32;
    const int8_t *w_i8;
    const float *w_scale;
    const float *bias; /* n_out */
    uint8_t activation; /* edgefdfa_activation */
    /* Where edgefdfa_learn_step writes W and bias: the same memory as w_f32 and bias (a float32 layer
     * that learns), or both NULL (edgefdfa_head_forward ignores them). */
    float *w_learn;
    float *bias_learn;
} edgefdfa_layer;

/* Run the layers on x (layers[0].n_in values) into y (layers[L-1].n_out values).
 * scratch holds 2 * (widest layer output) floats: layers ping-pong between its halves. */
edgefdfa_head_status edgefdfa_head_forward(const edgefdfa_layer *layers, size_t n_layers,
                                           const float *x, float *y, float *scratch, size_t scratch_len);

/* Index of the largest of n values (the predicted class); 0 for n == 0. */
size_t edgefdfa_argmax(const float *v, size_t n);

#endif
