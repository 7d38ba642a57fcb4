#include "efb_sha256.h"

#include <string.h>

static const uint32_t K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

static uint32_t ror(uint32_t x, unsigned r) { return x >> r | x << (32u - r); }

/* One 64-byte block into the state: the compression function, its schedule 16 words rolling. */
static void block(efb_sha256 *s, const uint8_t *p) {
    uint32_t w[16], v[8];
    for (unsigned i = 0; i < 16; ++i) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                                             (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    memcpy(v, s->h, sizeof v);
    for (unsigned i = 0; i < 64; ++i) {
        if (i >= 16) {
            uint32_t a = w[(i + 1) & 15], b = w[(i + 14) & 15];
            w[i & 15] += (ror(a, 7) ^ ror(a, 18) ^ a >> 3) + w[(i + 9) & 15] + (ror(b, 17) ^ ror(b, 19) ^ b >> 10);
        }
        uint32_t t1 = v[7] + (ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25)) + ((v[4] & v[5]) ^ (~v[4] & v[6])) +
                      K256[i] + w[i & 15];
        uint32_t t2 = (ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22)) + ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (unsigned i = 0; i < 8; ++i) s->h[i] += v[i];
}

void efb_sha256_init(efb_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

void efb_sha256_update(efb_sha256 *s, const uint8_t *p, size_t n) {
    s->len += n;
    while (n > 0) {
        if (s->n == 0 && n >= 64) { /* whole blocks straight from the input */
            block(s, p);
            p += 64;
            n -= 64;
            continue;
        }
        size_t k = 64u - s->n < n ? 64u - s->n : n;
        memcpy(s->buf + s->n, p, k);
        s->n += (uint32_t)k;
        p += k;
        n -= k;
        if (s->n == 64) {
            block(s, s->buf);
            s->n = 0;
        }
    }
}

void efb_sha256_final(efb_sha256 *s, uint8_t out[EFB_DIGEST_BYTES]) {
    uint64_t bits = s->len * 8u;
    uint8_t pad[72] = {0x80}; /* 0x80, zeros to 56 mod 64, the message length in bits (big-endian) */
    size_t k = (s->n < 56 ? 56u : 120u) - s->n;
    for (unsigned i = 0; i < 8; ++i) pad[k + i] = (uint8_t)(bits >> (56 - 8 * i));
    efb_sha256_update(s, pad, k + 8);
    for (unsigned i = 0; i < 8; ++i) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void efb_sha256_of(const void *p, size_t n, uint8_t out[EFB_DIGEST_BYTES]) {
    efb_sha256 s;
    efb_sha256_init(&s);
    efb_sha256_update(&s, (const uint8_t *)p, n);
    efb_sha256_final(&s, out);
}
