/* efb_cobs: Consistent Overhead Byte Stuffing, the framing of every record on the wire
 * (PROTOCOL.md §1): a frame is COBS-encoded so that it holds no 0x00, and a 0x00 ends it.
 * Both directions work in place in the caller's buffer. */
#ifndef EFB_COBS_H
#define EFB_COBS_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes COBS adds to n bytes: one code byte to start and one per further 254. */
#define EFB_COBS_OVERHEAD(n) ((n) / 254u + 1u)

/* Decode the record buf[0, len) (without its 0x00) in place; the decoded length, or -1 if it is
 * not valid COBS (a zero code byte, or a code that runs past the end). */
long efb_cobs_decode(uint8_t *buf, size_t len);

/* Encode in[0, len) into out, then a 0x00 delimiter; returns the bytes written (at most
 * len + EFB_COBS_OVERHEAD(len) + 1). out may overlap in if out + EFB_COBS_OVERHEAD(len) <= in:
 * the encoder never gets further ahead of its input than that, so a frame assembled
 * EFB_COBS_OVERHEAD bytes into a buffer is encoded to the buffer's start. */
size_t efb_cobs_encode(uint8_t *out, const uint8_t *in, size_t len);

#endif
