/* efb_state: the receiver's persistent record, what a device stores with its two slots so that a
 * reset at any moment comes back to the old weights or the new ones (PROTOCOL.md §6). */
#ifndef EFB_STATE_H
#define EFB_STATE_H

#include <stdint.h>

#include "efb_sha256.h"

#define EFB_STATE_MAGIC 0x74734245u /* "EBst" little-endian */
#define EFB_STATE_VERSION 3

/* Which slot is active and what each slot holds (version 3: 120 bytes, no padding). Store it as its sizeof(efb_rx_state) bytes with
 * the slots; hand it back to efb_rx_init after a reset. */
typedef struct {
    uint32_t magic;                         /* EFB_STATE_MAGIC */
    uint32_t generation;                    /* +1 on every persist: of two stored copies (A/B), the
                                               one that passes efb_rx_state_ok with the larger
                                               generation is current */
    uint32_t ids[2];                        /* update id of each slot's image (0: factory) */
    uint8_t digest[2][EFB_DIGEST_BYTES];    /* SHA-256 of each slot's image, checked at init */
    uint32_t model_id;                      /* CRC-32 of the layer table (HELLO's model_id): init
                                               refuses a record of another head */
    uint32_t counter;                       /* the security counter of the last signed change
                                               (a keyed device; 0 on one without a key) */
    uint8_t active;                         /* index of the active slot, 0 or 1 */
    uint8_t valid;                          /* bit s set: slot s holds a verified image */
    uint8_t version;                        /* EFB_STATE_VERSION */
    uint8_t reserved;                       /* 0 */
    /* what a learning device needs to go on where it was (PROTOCOL.md §8); all 0 on one that does not learn */
    uint32_t steps;                         /* learning steps applied since the factory weights */
    uint32_t rng[4];                        /* the generator's state (edgefdfa_rng) */
    uint32_t feedback_crc;                  /* CRC-32 of the feedback floats persisted with this record,
                                               in the feedback cell generation % 2 */
    uint32_t crc;                           /* CRC-32 of every byte before this field */
} efb_rx_state;

/* Whether a stored record is well formed: magic, version, CRC, active index, active slot valid.
 * Use it to pick the current one of two stored copies; efb_rx_init checks it again. */
int efb_rx_state_ok(const efb_rx_state *state);

/* Set state->crc over the fields before it: the last step of every change to a record. */
void efb_rx_state_seal(efb_rx_state *state);

#endif
