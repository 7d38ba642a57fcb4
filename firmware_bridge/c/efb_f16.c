#include "efb_f16.h"

#include "efb_le.h"

float efb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) return efb_f32_of(sign | 0x7F800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0) return efb_f32_of(sign);
        exp = 113; /* 127 - 14: a subnormal is mant x 2^-24; one less per shift below */
        while (!(mant & 0x400u)) {
            mant <<= 1;
            --exp;
        }
        return efb_f32_of(sign | exp << 23 | (mant & 0x3FFu) << 13);
    }
    return efb_f32_of(sign | (exp + 112) << 23 | mant << 13);
}
