/* efb_sha256: SHA-256 (FIPS 180-4), over a message fed in pieces. It digests weight images and
 * updates (PROTOCOL.md §3-§4) and is the hash of efb_hmac. The state is a struct the caller
 * owns (on the stack); the round constants are const, in flash. */
#ifndef EFB_SHA256_H
#define EFB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define EFB_DIGEST_BYTES 32 /* a SHA-256 digest, and an HMAC-SHA256 tag */

typedef struct {
    uint32_t h[8];
    uint64_t len;    /* bytes hashed */
    uint8_t buf[64]; /* a partial block */
    uint32_t n;      /* bytes in buf */
} efb_sha256;

void efb_sha256_init(efb_sha256 *s);

/* Hash n more bytes of the message. */
void efb_sha256_update(efb_sha256 *s, const uint8_t *p, size_t n);

/* The digest of everything fed since init; s must be initialised again before reuse. */
void efb_sha256_final(efb_sha256 *s, uint8_t out[EFB_DIGEST_BYTES]);

/* The digest of p[0, n) in one call. */
void efb_sha256_of(const void *p, size_t n, uint8_t out[EFB_DIGEST_BYTES]);

#endif
