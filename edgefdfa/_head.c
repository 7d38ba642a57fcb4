/* _head: the engine's dense head run outside the TFLite interpreter, for EdgeModel's fast path.
 *
 * A plain shared library (no Python.h), loaded with ctypes by edgefdfa/native.py. The forward pass is
 * the firmware's (firmware_bridge/c/edgefdfa_head.c); this file only binds it once to the buffers a
 * sample flows through, so a call per sample passes one pointer and nothing is copied:
 *
 *     sample  (n_sample)    the backbone interpreter's input buffer, checked finite here
 *     features              the backbone's output buffer (the sample itself when there is no backbone)
 *     output  (n_out)       head(features), softmaxed when the file ends in Softmax
 *
 * The caller owns the edgefdfa_bound_head (edgefdfa_bound_head_size() bytes), the layers array, the
 * weights (read in place, so updates made there are seen at the next run) and every buffer.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgefdfa_head.h"

/* Beyond edgefdfa_head_status: the sample holds NaN or Inf (the caller says where). */
enum { EDGEFDFA_SAMPLE_NOT_FINITE = 16 };

typedef struct {
    const edgefdfa_layer *layers;
    size_t n_layers;
    const float *sample; /* (n_sample) */
    size_t n_sample;
    const float *features; /* (layers[0].n_in) */
    float *output;         /* (layers[n_layers - 1].n_out) */
    float *scratch;        /* (scratch_len): 2 * the widest layer */
    size_t scratch_len;
    int softmax;
} edgefdfa_bound_head;

size_t edgefdfa_bound_head_size(void) { return sizeof(edgefdfa_bound_head); }

/* Store the pointers in *head; EDGEFDFA_HEAD_BAD_ARGUMENT if one is NULL or a size is zero. */
int edgefdfa_bind(edgefdfa_bound_head *head, const edgefdfa_layer *layers, size_t n_layers, const float *sample,
                  size_t n_sample, const float *features, float *output, float *scratch, size_t scratch_len,
                  int softmax) {
    if (head == NULL || layers == NULL || n_layers == 0 || sample == NULL || n_sample == 0 || features == NULL ||
        output == NULL || scratch == NULL) {
        return EDGEFDFA_HEAD_BAD_ARGUMENT;
    }
    *head = (edgefdfa_bound_head){layers, n_layers, sample, n_sample, features, output, scratch, scratch_len, softmax};
    return EDGEFDFA_HEAD_OK;
}

/* Whether x holds NaN or Inf: exponent bits all set. Integer compares OR-ed, so it vectorizes (SSE2 too). */
static int not_finite(const float *x, size_t n) {
    int32_t found = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        found |= (int32_t)(bits & 0x7fffffffu) > 0x7f7fffff;
    }
    return found != 0;
}

/* v = exp(v - max v) / sum: the max subtracted so no exp overflows. */
static void softmax(float *v, size_t n) {
    float largest = v[0], total = 0.0f;
    for (size_t j = 1; j < n; ++j) largest = v[j] > largest ? v[j] : largest;
    for (size_t j = 0; j < n; ++j) {
        v[j] = expf(v[j] - largest);
        total += v[j];
    }
    for (size_t j = 0; j < n; ++j) v[j] /= total;
}

/* Check the sample, run the head on the features into the output: EDGEFDFA_HEAD_OK,
 * EDGEFDFA_SAMPLE_NOT_FINITE (output untouched) or edgefdfa_head_forward's failure. */
int edgefdfa_run(const edgefdfa_bound_head *head) {
    if (not_finite(head->sample, head->n_sample)) return EDGEFDFA_SAMPLE_NOT_FINITE;
    edgefdfa_head_status status = edgefdfa_head_forward(head->layers, head->n_layers, head->features, head->output,
                                                        head->scratch, head->scratch_len);
    if (status == EDGEFDFA_HEAD_OK && head->softmax) softmax(head->output, head->layers[head->n_layers - 1].n_out);
    return (int)status;
}
