/* efb_wire: the frame header and every payload of PROTOCOL.md §1-§2 as named byte offsets, each
 * layout written once here; the receiver reads and writes fields only through these names.
 * All fields are little-endian (efb_le.h). */
#ifndef EFB_WIRE_H
#define EFB_WIRE_H

#include "efb_sha256.h"

/* Message types (§2): host -> device 0x01..0x0A, device -> host 0x81..0x88. */
typedef enum {
    EFB_HELLO_REQ = 0x01, EFB_BEGIN = 0x02, EFB_CHUNK = 0x03, EFB_COMMIT = 0x04, EFB_STATUS_REQ = 0x05,
    EFB_ROLLBACK = 0x06, EFB_INFER = 0x07, EFB_UPDATE = 0x08, EFB_LEARN = 0x09, EFB_SAVE = 0x0A,
    EFB_HELLO = 0x81, EFB_ACK = 0x82, EFB_NACK = 0x83, EFB_ACTIVE = 0x84, EFB_STATUS = 0x85, EFB_OUTPUT = 0x86,
    EFB_LEARNED = 0x87, EFB_ERROR = 0x88
} efb_type;

enum {
    EFB_SIGNED = 0x01,  /* BEGIN, UPDATE, LEARN and SAVE flags bit 0: an HMAC follows the fields */
    EFB_KEYED = 0x01,   /* HELLO flags bit 0: the device takes only signed state changes */
    EFB_LEARNS = 0x02,  /* HELLO flags bit 1: the device takes LEARN and SAVE (§8) */
    EFB_TARGETS = 0x04  /* HELLO flags bit 2: its loss is MSE, a sample carries K float targets */
};

/* A frame (§1): magic "EB" | u8 version | u8 type | u16 seq | u16 length | payload | u32 crc. */
enum {
    EFB_FRAME_MAGIC = 0, EFB_FRAME_VERSION = 2, EFB_FRAME_TYPE = 3, EFB_FRAME_SEQ = 4, EFB_FRAME_LENGTH = 6,
    EFB_FRAME_HEADER = 8,                                    /* the payload starts here */
    EFB_FRAME_CRC_BYTES = 4,                                 /* CRC-32 of everything before it */
    EFB_FRAME_OVERHEAD = EFB_FRAME_HEADER + EFB_FRAME_CRC_BYTES /* 12 */
};

/* BEGIN: the fields a session is, then [hmac iff flags & EFB_SIGNED]. */
enum {
    EFB_BEGIN_UPDATE_ID = 0, EFB_BEGIN_BASE_ID = 4, EFB_BEGIN_TOTAL = 8, EFB_BEGIN_ENCODING = 12,
    EFB_BEGIN_FLAGS = 13, EFB_BEGIN_COUNTER = 14, EFB_BEGIN_HASH = 18,
    EFB_BEGIN_BYTES = EFB_BEGIN_HASH + EFB_DIGEST_BYTES /* 50: what a COMMIT's HMAC is bound to */
};

/* CHUNK: u32 offset, then the data. */
enum { EFB_CHUNK_OFFSET = 0, EFB_CHUNK_DATA = 4 };

/* COMMIT, and the ACTIVE reply in the same layout: u32 update id, 32 B digest [, hmac]. */
enum { EFB_COMMIT_ID = 0, EFB_COMMIT_DIGEST = 4, EFB_COMMIT_BYTES = EFB_COMMIT_DIGEST + EFB_DIGEST_BYTES };

/* ROLLBACK: u32 to_id, u32 counter [, hmac]. */
enum { EFB_ROLLBACK_TO_ID = 0, EFB_ROLLBACK_COUNTER = 4, EFB_ROLLBACK_BYTES = 8 };

/* UPDATE: a whole session in one frame; the fields, [hmac iff flags & EFB_SIGNED], then the data. */
enum {
    EFB_UPDATE_ID = 0, EFB_UPDATE_BASE_ID = 4, EFB_UPDATE_ENCODING = 8, EFB_UPDATE_FLAGS = 9,
    EFB_UPDATE_COUNTER = 10, EFB_UPDATE_DIGEST = 14,
    EFB_UPDATE_FIELDS = EFB_UPDATE_DIGEST + EFB_DIGEST_BYTES /* 46: the bytes before its hmac */
};

/* LEARN (§8): u8 flags, u32 counter, u8 n, [hmac iff flags & EFB_SIGNED], then n samples, each
 * n_in x f32 and a u32 label (cross-entropy) or K x f32 targets (TARGETS). */
enum { EFB_LEARN_FLAGS = 0, EFB_LEARN_COUNTER = 1, EFB_LEARN_N = 5, EFB_LEARN_FIELDS = 6 /* before the hmac */ };

/* SAVE (§8): u8 flags, u32 counter, [hmac iff flags & EFB_SIGNED]. */
enum { EFB_SAVE_FLAGS = 0, EFB_SAVE_COUNTER = 1, EFB_SAVE_FIELDS = 5 };

/* LEARNED (§8): u32 steps, u32 saved_steps, u8 n, then n entries of u8 status, u16 predicted, f32 loss. */
enum { EFB_LEARNED_STEPS = 0, EFB_LEARNED_SAVED = 4, EFB_LEARNED_N = 8, EFB_LEARNED_FIELDS = 9 };
enum { EFB_ENTRY_STATUS = 0, EFB_ENTRY_PREDICTED = 1, EFB_ENTRY_LOSS = 3, EFB_ENTRY_BYTES = 7 };

/* HELLO: the fixed fields, then the layer table (u8 n_layers, then one row per layer). */
enum {
    EFB_HELLO_MAX_FRAME = 0, EFB_HELLO_ENCODINGS = 2, EFB_HELLO_FLAGS = 3, EFB_HELLO_SLOT_SIZE = 4,
    EFB_HELLO_MODEL_ID = 8, EFB_HELLO_ACTIVE_ID = 12, EFB_HELLO_COUNTER = 16,
    EFB_HELLO_TABLE = 20 /* the layer table: model_id is its CRC-32 */
};
/* One row of the layer table: u16 n_out, u16 n_in, u8 activation. */
enum { EFB_ROW_N_OUT = 0, EFB_ROW_N_IN = 2, EFB_ROW_ACTIVATION = 4, EFB_ROW_BYTES = 5 };
#define EFB_TABLE_BYTES(n_layers) (1u + EFB_ROW_BYTES * (unsigned)(n_layers))

/* STATUS, 24 bytes. */
enum {
    EFB_STATUS_STATE = 0, EFB_STATUS_ACTIVE_ID = 1, EFB_STATUS_PREVIOUS_ID = 5, EFB_STATUS_STAGED_ID = 9,
    EFB_STATUS_HAVE = 13, EFB_STATUS_TOTAL = 17, EFB_STATUS_DROPPED = 21, EFB_STATUS_LAST_ERROR = 23,
    EFB_STATUS_BYTES = 24
};

/* ACK: u32 have. NACK: u32 have, u8 code. ERROR: u8 code, u8 about (the type answered). */
enum { EFB_ACK_HAVE = 0, EFB_ACK_BYTES = 4 };
enum { EFB_NACK_HAVE = 0, EFB_NACK_CODE = 4, EFB_NACK_BYTES = 5 };
enum { EFB_ERROR_CODE = 0, EFB_ERROR_ABOUT = 1, EFB_ERROR_BYTES = 2 };

#endif
