/* efb_le: little-endian fields and float32 bits, as the wire and the weight image hold them.
 * Header only: each helper is one line and inlines to a load or a store. */
#ifndef EFB_LE_H
#define EFB_LE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t efb_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline uint32_t efb_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void efb_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void efb_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* The float32 with these IEEE bits, and back. */
static inline float efb_f32_of(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint32_t efb_bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* Neither inf nor NaN (the exponent is not all ones), without libm. */
static inline int efb_finite(float f) { return (efb_bits_of(f) & 0x7F800000u) != 0x7F800000u; }

#endif
