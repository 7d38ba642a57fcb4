/* edgefdfa_rx: the device side of the firmware bridge (firmware_bridge/PROTOCOL.md, version 2).
 *
 * Freestanding C99: no malloc, no libc beyond memcpy/memset; every buffer is the caller's, sized by
 * the macros below, and the whole receiver state is one struct the caller may allocate statically.
 * Bytes from the UART go into efb_rx_feed; replies leave through the config's write callback. The
 * receiver decodes a verified update into the inactive slot, asks the persist callback to store it,
 * and only then flips the active index (one write), so a reset at any moment leaves either the old
 * weights or the new ones active. INFER runs the active slot through edgefdfa_head_forward.
 * With a key, every state change (BEGIN, COMMIT, UPDATE, ROLLBACK, LEARN, SAVE) must carry an HMAC and
 * a security counter above the device's, which is persisted in the state record (PROTOCOL.md §5).
 * With a learning config (efb_learning.h) the device learns (§8): INFER and LEARN run a working copy
 * of the active slot in RAM, which SAVE (or save_every) writes into the inactive slot and makes
 * active through the same atomic path as a COMMIT; every swap copies the new active slot into it.
 *
 * Little-endian targets only (the wire and the weight image are little-endian float32; init checks).
 * Not reentrant: call feed, forward and the accessors from one context. Build with
 * -ffp-contract=off (GCC's default under -std=c99) on targets with a fused multiply-add, so every
 * decoded weight is one float32 multiply and one float32 add, bit for bit the host's (§4).
 *
 * The receiver is small units, each with its header: efb_le.h (little-endian fields), efb_crc32,
 * efb_f16, efb_sha256, efb_hmac, efb_cobs, efb_wire.h (every message's layout, as named offsets),
 * efb_state (the persistent record), efb_update (the encodings, decoded), efb_code.h (the error codes),
 * efb_learning (LEARN's samples and steps) and edgefdfa_rx.c (frames, replies, the session and the
 * saves); edgefdfa_head.c runs the head, edgefdfa_learn.c learns, edgefdfa_rng.c draws. Build all their .c files
 * (tools/build_firmware.py lists them).
 */
#ifndef EDGEFDFA_RX_H
#define EDGEFDFA_RX_H

#include <stddef.h>
#include <stdint.h>

#include "edgefdfa_head.h"
#include "efb_code.h"
#include "efb_cobs.h"
#include "efb_learning.h"
#include "efb_sha256.h"
#include "efb_state.h"
#include "efb_update.h"

#if defined(__GNUC__) || defined(__clang__)
#define EFB_MUST_CHECK __attribute__((warn_unused_result))
#else
#define EFB_MUST_CHECK
#endif

#define EFB_VERSION 2              /* the protocol version this receiver speaks */
#define EFB_MIN_FRAME 128          /* the range of max_frame (PROTOCOL.md §1) */
#define EFB_MAX_FRAME 4096
#define EFB_NO_ID 0xFFFFFFFFu      /* STATUS previous_id of an empty inactive slot */
#ifndef EFB_MAX_LAYERS
#define EFB_MAX_LAYERS 8           /* layers a head may have; build everything with the same value */
#endif

/* Bytes of each of the two frame buffers (receive and transmit) for a given max_frame: the longest
 * COBS record of a max_frame-byte frame plus its delimiter. */
#define EFB_BUF_SIZE(max_frame) ((max_frame) + EFB_COBS_OVERHEAD(max_frame) + 1u)
/* Floats of forward-pass scratch: the input (n_in of layer 0), the output (n_out of the last
 * layer) and two rows of the widest layer output. */
#define EFB_SCRATCH_LEN(n_in, n_out, widest) ((n_in) + (n_out) + 2u * (widest))
/* Bytes of one weight image (slot_size): 4 x sum over layers of n_out * (n_in + 1). */
#define EFB_LAYER_BYTES(n_out, n_in) (4u * (uint32_t)(n_out) * ((uint32_t)(n_in) + 1u))


/* Why efb_rx_init refused a configuration or a restored state. */
typedef enum {
    EFB_RX_OK = 0,
    EFB_RX_BAD_ARGUMENT,      /* a NULL receiver, config, buffer or write callback */
    EFB_RX_BAD_LAYERS,        /* 0 or > EFB_MAX_LAYERS layers, a size of 0 or over 65535 (HELLO's
                                 u16), n_in != previous n_out, an activation outside
                                 edgefdfa_activation */
    EFB_RX_BAD_MAX_FRAME,     /* max_frame outside 128..4096, or HELLO or OUTPUT would not fit it */
    EFB_RX_BAD_SLOT_SIZE,     /* slot_size is not 4 x the head's parameter count */
    EFB_RX_BAD_ENCODINGS,     /* no encoding accepted, or a bit above EFB_SPARSE_INT8 */
    EFB_RX_SCRATCH_TOO_SMALL, /* scratch_len < EFB_SCRATCH_LEN(...) of the head */
    EFB_RX_BAD_STATE,         /* a restored state record that fails its checks, belongs to another
                                 head (model_id), whose active slot does not hash to its digest, or
                                 (learning) whose feedback does not match its feedback_crc */
    EFB_RX_BIG_ENDIAN,        /* this target is not little-endian */
    EFB_RX_BAD_LEARNING       /* a learning config without its buffers, with an unknown rule or loss,
                                 or a workspace too small (efb_learning_config_ok) */
} efb_rx_status;

/* Send bytes to the host: one call per reply frame (COBS-encoded, with its 0x00 delimiter). */
typedef void (*efb_write_fn)(void *ctx, const uint8_t *bytes, size_t n);

/* Persist `next` (and, if slot >= 0, the image now in slots[slot], slot_size bytes) before the
 * receiver makes it current. Write the image first, then the record, so a reset in between leaves
 * the old record (init then finds that slot's digest stale and treats it as empty). A learning
 * device's callback also writes the config's feedback (efb_learning_feedback_len floats) into the
 * feedback cell next->generation % 2, after the image and before the record: one cell per record
 * copy, so a record and its feedback are current together. Return 0 on success; anything else
 * keeps the old active slot and answers the request with an ERROR. */
typedef int (*efb_persist_fn)(void *ctx, const efb_rx_state *next, int slot);

/* Everything the receiver needs; the pointers must stay valid for the receiver's life. */
typedef struct {
    const edgefdfa_layer *layers; /* (n_layers,) the head: n_in, n_out and activation are read at
                                     init (the weight pointers are not: the slots hold the weights),
                                     so an exported header's table (formats/c_header.py) serves */
    uint8_t n_layers;         /* 1 .. EFB_MAX_LAYERS */
    uint16_t max_frame;       /* 128 .. 4096: the longest decoded frame accepted and sent */
    uint8_t encodings;        /* bit e: efb_encoding e accepted (EFB_ALL_ENCODINGS) */
    const uint8_t *key;       /* pre-shared HMAC key, or NULL: not KEYED */
    size_t key_len;           /* bytes of key; 0 also means not KEYED */
    uint32_t slot_size;       /* bytes of one image: sum of EFB_LAYER_BYTES over the layers */
    float *slots[2];          /* two images, slot_size bytes each (slot 0: factory weights) */
    uint8_t *staging;         /* slot_size bytes: CHUNKs (or an UPDATE's data) land here */
    uint8_t *rx_buf;          /* EFB_BUF_SIZE(max_frame) bytes: the record being received */
    uint8_t *tx_buf;          /* EFB_BUF_SIZE(max_frame) bytes: the reply being sent */
    float *scratch;           /* scratch_len floats for INFER */
    size_t scratch_len;       /* >= EFB_SCRATCH_LEN(layers[0].n_in, layers[L-1].n_out, widest n_out) */
    efb_write_fn write;       /* required */
    efb_persist_fn persist;   /* NULL: nothing to persist (slots in RAM only) */
    void *ctx;                /* passed to write and persist */
    const efb_learning_config *learn; /* NULL: the device does not learn (LEARN, SAVE: NOT_LEARNING) */
} efb_rx_config;

/* A session: the fields of its BEGIN (PROTOCOL.md §2), or of an UPDATE taken as one. */
typedef struct {
    uint32_t update_id, base_id, total;
    uint8_t encoding, flags;
    uint32_t counter;                      /* its security counter */
    uint8_t update_hash[EFB_DIGEST_BYTES]; /* SHA-256 the staged update must have at COMMIT */
} efb_begin;

/* The receiver. Fields are private: read them through the accessors. */
typedef struct {
    efb_rx_config cfg;
    efb_rx_state state;              /* what the slots hold now */
    edgefdfa_layer head[EFB_MAX_LAYERS]; /* the config's layers, pointed into the active slot (learning:
                                            into the working copy) */
    efb_learning learning;           /* steps, generator and LEARN's floor, with config.learn */
    uint32_t model_id;               /* CRC-32 of the layer table */
    uint32_t record_len;             /* bytes of the record in rx_buf */
    uint32_t record_limit;           /* longest record kept: max_frame + floor(max_frame/254) + 1 */
    uint8_t overlong;                /* the record passed record_limit: dropped at its 0x00 */
    uint8_t in_session;              /* RECEIVING */
    uint8_t nacked;                  /* a GAP NACK was sent at have == nacked_at */
    uint8_t last_error;              /* efb_code of the last ERROR or NACK sent */
    efb_begin session;               /* the session's BEGIN, while in_session */
    uint16_t dropped;                /* frames dropped silently, saturating */
    uint32_t have;                   /* bytes [0, have) of the update are in staging */
    uint32_t nacked_at;
} efb_rx;

/* Set up a receiver. config is copied (the buffers it points to are not). restored is the state
 * record stored by the persist callback, or NULL on first boot: then slots[0] must hold the factory
 * weights (id 0) and slot 1 is empty. A restored record must pass efb_rx_state_ok, name this
 * head's model_id, and its active slot must hash to its digest; an inactive slot whose image no
 * longer matches its digest (a reset while it was being written) is treated as empty. A learning
 * device's config.learn->feedback must hold the restored record's feedback cell (generation % 2);
 * init checks it and restores the step count and the generator, and copies the active slot into
 * the working copy (without a record: zero feedback, the config's seed, step 0). Returns
 * EFB_RX_OK or the first problem found; a receiver whose init failed must not be fed. */
EFB_MUST_CHECK efb_rx_status efb_rx_init(efb_rx *rx, const efb_rx_config *config, const efb_rx_state *restored);

/* Consume n received bytes in any split: complete frames are checked (PROTOCOL.md §1), handled
 * (§6) and answered through config.write before this returns. Never reads or writes outside the
 * configured buffers, whatever the bytes. */
void efb_rx_feed(efb_rx *rx, const uint8_t *bytes, size_t n);

/* Run the head on x (layers[0].n_in floats) with the active weights (learning: the working copy) into y (last n_out floats),
 * using the config's scratch. Returns EFB_OK or EFB_BAD_INPUT (a non-finite input). */
EFB_MUST_CHECK efb_code efb_rx_forward(efb_rx *rx, const float *x, float *y);

/* The active image (slot_size / 4 floats, W0 b0 W1 b1 ... as PROTOCOL.md §3) and its update id
 * (0: the factory weights): the last saved or pushed, not a learning device's working copy. */
const float *efb_rx_active_weights(const efb_rx *rx);
uint32_t efb_rx_active_id(const efb_rx *rx);

/* The record of what the slots hold now: the one last persisted, except that a slot a failed
 * COMMIT overwrote is already marked empty here (persisted with the next swap or rollback). */
const efb_rx_state *efb_rx_state_of(const efb_rx *rx);

/* A learning device's steps applied since the factory weights (0 on one that does not learn). */
uint32_t efb_rx_steps(const efb_rx *rx);

#endif
