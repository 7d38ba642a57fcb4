/* efb_hmac: HMAC-SHA256 (RFC 2104) over a message fed in pieces, and the constant-time comparison
 * a tag is checked with. A keyed device signs nothing: it only verifies (PROTOCOL.md §5). */
#ifndef EFB_HMAC_H
#define EFB_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include "efb_sha256.h"

typedef struct {
    efb_sha256 inner; /* SHA-256 of (key ^ ipad) | message so far */
    uint8_t opad[64]; /* key ^ opad, for the outer hash */
} efb_hmac;

/* Start a tag under key[0, key_len) (a key over 64 bytes is hashed first, as RFC 2104 says). */
void efb_hmac_init(efb_hmac *h, const uint8_t *key, size_t key_len);

/* n more bytes of the message. */
void efb_hmac_update(efb_hmac *h, const uint8_t *p, size_t n);

/* The tag of everything fed since init. */
void efb_hmac_final(efb_hmac *h, uint8_t out[EFB_DIGEST_BYTES]);

/* Whether a[0, n) equals b[0, n), in time independent of where they differ (tags, digests). */
int efb_same(const uint8_t *a, const uint8_t *b, size_t n);

#endif
