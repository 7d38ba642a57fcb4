#include "efb_cobs.h"

long efb_cobs_decode(uint8_t *buf, size_t len) {
    size_t in = 0, out = 0;
    while (in < len) {
        uint8_t code = buf[in++];
        if (code == 0 || (size_t)(code - 1u) > len - in) return -1;
        for (unsigned k = 1; k < code; ++k) buf[out++] = buf[in++]; /* out < in: moves down only */
        if (code != 0xFF && in < len) buf[out++] = 0;
    }
    return (long)out;
}

size_t efb_cobs_encode(uint8_t *out, const uint8_t *in, size_t len) {
    size_t code_at = 0, at = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; ++i) {
        uint8_t b = in[i]; /* read before anything is written at or after its position */
        if (code == 0xFF) {
            out[code_at] = code;
            code_at = at++;
            code = 1;
        }
        if (b == 0) {
            out[code_at] = code;
            code_at = at++;
            code = 1;
        } else {
            out[at++] = b;
            ++code;
        }
    }
    out[code_at] = code;
    out[at++] = 0;
    return at;
}
