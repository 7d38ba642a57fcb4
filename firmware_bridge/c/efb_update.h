/* efb_update: an update's bytes decoded into a weight image, in each encoding of PROTOCOL.md §4.
 * firmware_bridge/encoding.py's decode is the same function in Python, and the reference. */
#ifndef EFB_UPDATE_H
#define EFB_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "edgefdfa_head.h"

/* The update encodings; bit e of efb_rx_config.encodings accepts encoding e. */
typedef enum {
    EFB_F32 = 0,          /* every tensor as float32 */
    EFB_F16 = 1,          /* every tensor as IEEE binary16 */
    EFB_INT8_TENSOR = 2,  /* W: one f32 scale, int8 values; b: float32 */
    EFB_INT8_CHANNEL = 3, /* W: one f32 scale per row, int8 values; b: float32 */
    EFB_SPARSE_INT8 = 4   /* per tensor: u32 count, f32 scale, count LEB128 index gaps, count int8 deltas */
} efb_encoding;
#define EFB_ALL_ENCODINGS 0x1Fu

/* Decode update[0, n) in `encoding` into `image`, the weights W0 b0 W1 b1 ... of the head
 * layers[0, n_layers) (only their n_in, n_out are read); a sparse update adds its deltas to what
 * image holds, the base. Returns 1; 0 if a tensor does not parse, bytes are left over, a value is
 * not finite or the encoding is unknown, with image then partly written. Never reads past
 * update[n) or writes past the image. */
int efb_update_decode(const uint8_t *update, uint32_t n, uint8_t encoding, const edgefdfa_layer *layers,
                      size_t n_layers, float *image);

#endif
