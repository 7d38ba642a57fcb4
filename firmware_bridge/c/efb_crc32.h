/* efb_crc32: CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the value zlib.crc32 gives.
 * It checks every frame (PROTOCOL.md §1), names a head's shape (HELLO's model_id) and seals the
 * state record. A 16-entry table, a nibble at a time: 64 bytes of flash, no RAM. */
#ifndef EFB_CRC32_H
#define EFB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of p[0, n). */
uint32_t efb_crc32(const uint8_t *p, size_t n);

#endif
