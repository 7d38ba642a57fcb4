/* The board's flash, emulated on a host file over semihosting (QEMU keeps no flash across runs).
 *
 * Layout of the file: two copies (A, B) of the receiver's state record, each in a FLASH_RECORD_SPAN
 * byte cell, then slot 0 and slot 1 (slot_size bytes each), then two feedback cells (A, B: the
 * learning device's feedback, feedback_bytes each). A record goes to the copy its generation selects
 * (generation % 2), and its feedback to the feedback cell of the same parity, so the other copy, the
 * previous state, survives a write cut short; at boot the copy that passes efb_rx_state_ok with the
 * larger generation is current, and the other one is what the board falls back to if the receiver
 * refuses the current one.
 */
#ifndef BOARD_FLASH_H
#define BOARD_FLASH_H

#include <stdint.h>

#include "edgefdfa_rx.h"

#define FLASH_RECORD_SPAN 128u /* bytes per record copy; sizeof(efb_rx_state) fits */

typedef enum {
    FLASH_OK = 0,
    FLASH_NO_FILE,    /* the host file could not be opened or created */
    FLASH_IO,         /* a seek, read or write moved fewer bytes than asked */
    FLASH_NO_RECORD   /* no copy of the record passes efb_rx_state_ok (a new or erased flash) */
} flash_status;

/* Open (or create) the file at `path` for images of slot_size bytes and feedback of feedback_bytes. */
EFB_MUST_CHECK flash_status flash_open(const char *path, uint32_t slot_size, uint32_t feedback_bytes);

/* A record into *state (age 0: the current one; 1: the one before it), both slots' stored images
 * into slots (missing bytes read as zero, which init then finds stale) and that record's feedback
 * cell into feedback; FLASH_NO_RECORD if there is no well-formed copy of that age. */
EFB_MUST_CHECK flash_status flash_load(efb_rx_state *state, float *const slots[2], float *feedback, unsigned age);

/* Erase both record copies, then store `factory` as slot 0: the state of a first boot. */
EFB_MUST_CHECK flash_status flash_format(const float *factory);

/* Store one slot's image, then the feedback in the cell of the record's generation, then (a separate
 * call, after them) the record that names them. */
EFB_MUST_CHECK flash_status flash_store_slot(int slot, const float *image);
EFB_MUST_CHECK flash_status flash_store_feedback(uint32_t generation, const float *feedback);
EFB_MUST_CHECK flash_status flash_store_state(const efb_rx_state *state);

#endif
