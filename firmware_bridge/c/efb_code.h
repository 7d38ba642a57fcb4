/* efb_code: the protocol's error codes (PROTOCOL.md §7), shared by the receiver's units. */
#ifndef EFB_CODE_H
#define EFB_CODE_H

/* The protocol's error codes (PROTOCOL.md §7), one byte on the wire in ERROR, NACK and STATUS. */
typedef enum {
    EFB_OK = 0,
    EFB_BAD_COBS = 1,        /* the record is not valid COBS */
    EFB_BAD_CRC = 2,         /* CRC-32 mismatch */
    EFB_BAD_MAGIC = 3,       /* the first two bytes are not "EB" */
    EFB_BAD_VERSION = 4,     /* a protocol version this side does not speak */
    EFB_BAD_LENGTH = 5,      /* a frame or payload length that does not match its header or type */
    EFB_BAD_TYPE = 6,        /* an unknown message type, or one the receiver never accepts */
    EFB_TOO_LONG = 7,        /* a frame longer than max_frame */
    EFB_NOT_IN_SESSION = 8,  /* CHUNK or COMMIT with no matching BEGIN */
    EFB_OUT_OF_BOUNDS = 9,   /* a chunk reaching past total */
    EFB_TOO_LARGE = 10,      /* BEGIN total (or UPDATE data) over slot_size */
    EFB_BAD_ENCODING = 11,   /* an encoding the device does not accept */
    EFB_INCOMPLETE = 12,     /* COMMIT before all total bytes arrived */
    EFB_BAD_DIGEST = 13,     /* the decoded image's SHA-256 is not COMMIT's, or another update_id */
    EFB_BAD_SIGNATURE = 14,  /* the HMAC does not verify */
    EFB_UNSIGNED = 15,       /* a KEYED device got an update without a signature */
    EFB_BASE_MISMATCH = 16,  /* a sparse delta against weights the device does not hold */
    EFB_BAD_UPDATE = 17,     /* the update does not parse in its encoding */
    EFB_NO_PREVIOUS = 18,    /* ROLLBACK to weights the inactive slot does not hold */
    EFB_BAD_INPUT = 19,      /* INFER input of the wrong size or not finite */
    EFB_GAP = 20,            /* (NACK) a chunk arrived past have */
    EFB_BAD_FLAGS = 21,      /* unknown flag bits, or update_id 0 */
    EFB_MODEL_MISMATCH = 22, /* (host only) */
    EFB_TIMEOUT = 23,        /* (host only) */
    EFB_STORAGE = 24,        /* the persist callback failed: the old weights stay active */
    EFB_STALE = 25,          /* a keyed device got a security counter not above its own (a replay), or a
                                learning device a LEARN counter not above its last one's */
    EFB_BAD_LABEL = 26,      /* a LEARN sample's class label is not below K */
    EFB_NOT_LEARNING = 27    /* LEARN or SAVE to a device that does not learn */
} efb_code;

#endif
