#include "efb_hmac.h"

#include <string.h>

void efb_hmac_init(efb_hmac *h, const uint8_t *key, size_t key_len) {
    uint8_t pad[64] = {0};
    if (key_len > sizeof pad) efb_sha256_of(key, key_len, pad);
    else memcpy(pad, key, key_len);
    for (unsigned i = 0; i < 64; ++i) {
        h->opad[i] = (uint8_t)(pad[i] ^ 0x5C);
        pad[i] ^= 0x36;
    }
    efb_sha256_init(&h->inner);
    efb_sha256_update(&h->inner, pad, sizeof pad);
}

void efb_hmac_update(efb_hmac *h, const uint8_t *p, size_t n) { efb_sha256_update(&h->inner, p, n); }

void efb_hmac_final(efb_hmac *h, uint8_t out[EFB_DIGEST_BYTES]) {
    uint8_t inner[EFB_DIGEST_BYTES];
    efb_sha256 s;
    efb_sha256_final(&h->inner, inner);
    efb_sha256_init(&s);
    efb_sha256_update(&s, h->opad, sizeof h->opad);
    efb_sha256_update(&s, inner, sizeof inner);
    efb_sha256_final(&s, out);
}

int efb_same(const uint8_t *a, const uint8_t *b, size_t n) {
    uint8_t d = 0;
    for (size_t i = 0; i < n; ++i) d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}
