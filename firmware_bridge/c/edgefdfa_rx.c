/* edgefdfa_rx: frames in and out, the session state machine and the atomic slot swap.
 * See edgefdfa_rx.h and firmware_bridge/PROTOCOL.md; firmware_bridge/emulator.py is the same
 * device in Python and the reference for every reply. Every payload field is read and written
 * through its name in efb_wire.h. */
#include "edgefdfa_rx.h"

#include <string.h>

#include "efb_crc32.h"
#include "efb_hmac.h"
#include "efb_le.h"
#include "efb_wire.h"

static const uint8_t CONTEXT[7] = {'E', 'F', 'D', 'F', 'A', '-', '2'}; /* starts every signed request's MAC */

/* ---- the head ---- */

/* The layer table (HELLO's, PROTOCOL.md §2) written at out; returns its bytes. model_id is its CRC-32. */
static size_t layer_table(const efb_rx *rx, uint8_t *out) {
    out[0] = rx->cfg.n_layers;
    for (unsigned l = 0; l < rx->cfg.n_layers; ++l) {
        uint8_t *row = out + 1 + EFB_ROW_BYTES * l;
        efb_wr16(row + EFB_ROW_N_OUT, (uint16_t)rx->head[l].n_out); /* init checked both fit a u16 */
        efb_wr16(row + EFB_ROW_N_IN, (uint16_t)rx->head[l].n_in);
        row[EFB_ROW_ACTIVATION] = rx->head[l].activation;
    }
    return EFB_TABLE_BYTES(rx->cfg.n_layers);
}

/* Point each layer's W and b into the active slot (W0 b0 W1 b1 ..., §3), or on a learning device
 * into the working copy, first copied from the active slot: at init and on every swap, so INFER
 * runs the layers as they are (and LEARN's steps write them: w_learn, bias_learn). */
static void point_head(efb_rx *rx) {
    const efb_learning_config *learn = rx->cfg.learn;
    float *w = rx->cfg.slots[rx->state.active];
    if (learn != NULL) w = memcpy(learn->working, w, rx->cfg.slot_size);
    for (unsigned l = 0; l < rx->cfg.n_layers; ++l) {
        edgefdfa_layer *h = &rx->head[l];
        float *b = w + (size_t)h->n_out * h->n_in;
        h->w_f32 = w;
        h->bias = b;
        h->w_learn = learn != NULL ? w : NULL;
        h->bias_learn = learn != NULL ? b : NULL;
        w = b + h->n_out;
    }
}

/* ---- init and the accessors ---- */

efb_rx_status efb_rx_init(efb_rx *rx, const efb_rx_config *config, const efb_rx_state *restored) {
    const uint32_t one = 1;
    if (rx == NULL || config == NULL) return EFB_RX_BAD_ARGUMENT;
    const efb_rx_config *c = config;
    if (c->layers == NULL || c->slots[0] == NULL || c->slots[1] == NULL || c->staging == NULL || c->rx_buf == NULL ||
        c->tx_buf == NULL || c->scratch == NULL || c->write == NULL || (c->key == NULL && c->key_len != 0)) {
        return EFB_RX_BAD_ARGUMENT;
    }
    if (*(const uint8_t *)&one != 1) return EFB_RX_BIG_ENDIAN;
    if (c->n_layers == 0 || c->n_layers > EFB_MAX_LAYERS) return EFB_RX_BAD_LAYERS;
    uint64_t params = 0;
    uint32_t widest = 0;
    for (unsigned l = 0; l < c->n_layers; ++l) {
        const edgefdfa_layer *y = &c->layers[l];
        if (y->n_out == 0 || y->n_in == 0 || y->n_out > 0xFFFFu || y->n_in > 0xFFFFu ||
            y->activation > EDGEFDFA_SIGMOID || (l > 0 && y->n_in != c->layers[l - 1].n_out)) {
            return EFB_RX_BAD_LAYERS;
        }
        params += (uint64_t)y->n_out * ((uint64_t)y->n_in + 1u);
        if (y->n_out > widest) widest = y->n_out;
    }
    uint32_t n_in = c->layers[0].n_in, n_out = c->layers[c->n_layers - 1].n_out;
    if (c->max_frame < EFB_MIN_FRAME || c->max_frame > EFB_MAX_FRAME ||
        EFB_FRAME_OVERHEAD + EFB_HELLO_TABLE + EFB_TABLE_BYTES(c->n_layers) > c->max_frame ||
        EFB_FRAME_OVERHEAD + 4u * n_out > c->max_frame) {
        return EFB_RX_BAD_MAX_FRAME;
    }
    if (4u * params != c->slot_size) return EFB_RX_BAD_SLOT_SIZE;
    if (c->encodings == 0 || (c->encodings & ~EFB_ALL_ENCODINGS) != 0) return EFB_RX_BAD_ENCODINGS;
    if (c->scratch_len < EFB_SCRATCH_LEN((size_t)n_in, (size_t)n_out, (size_t)widest)) return EFB_RX_SCRATCH_TOO_SMALL;
    if (c->learn != NULL && !efb_learning_config_ok(c->learn, c->layers, c->n_layers)) return EFB_RX_BAD_LEARNING;

    memset(rx, 0, sizeof *rx);
    rx->cfg = *c;
    rx->record_limit = c->max_frame + EFB_COBS_OVERHEAD(c->max_frame);
    for (unsigned l = 0; l < c->n_layers; ++l) { /* the shape; point_head sets the weights */
        const edgefdfa_layer *y = &c->layers[l];
        rx->head[l] = (edgefdfa_layer){.n_in = y->n_in, .n_out = y->n_out, .activation = y->activation};
    }
    uint8_t table[EFB_TABLE_BYTES(EFB_MAX_LAYERS)];
    rx->model_id = efb_crc32(table, layer_table(rx, table));
    if (restored != NULL) {
        uint8_t d[EFB_DIGEST_BYTES];
        if (!efb_rx_state_ok(restored) || restored->model_id != rx->model_id) return EFB_RX_BAD_STATE;
        rx->state = *restored;
        for (unsigned s = 0; s < 2; ++s) {
            if (!(rx->state.valid & (1u << s))) continue;
            efb_sha256_of(c->slots[s], c->slot_size, d);
            if (!efb_same(d, rx->state.digest[s], sizeof d)) {
                if (s == rx->state.active) return EFB_RX_BAD_STATE;
                rx->state.valid = (uint8_t)(rx->state.valid & ~(1u << s)); /* a reset while it was being written */
            }
        }
    } else {
        rx->state.magic = EFB_STATE_MAGIC;
        rx->state.version = EFB_STATE_VERSION;
        rx->state.valid = 1; /* slot 0: the factory weights, id 0 */
        rx->state.model_id = rx->model_id;
        efb_sha256_of(c->slots[0], c->slot_size, rx->state.digest[0]);
    }
    if (c->learn != NULL) {
        if (!efb_learning_start(&rx->learning, c->learn, rx->head, c->n_layers, restored,
                                c->key_len ? rx->state.counter : 0u)) {
            return EFB_RX_BAD_STATE;
        }
        if (restored == NULL) efb_learning_record(&rx->learning, c->learn, rx->head, c->n_layers, &rx->state);
    }
    efb_rx_state_seal(&rx->state);
    point_head(rx);
    return EFB_RX_OK;
}

const float *efb_rx_active_weights(const efb_rx *rx) { return rx->cfg.slots[rx->state.active]; }

uint32_t efb_rx_active_id(const efb_rx *rx) { return rx->state.ids[rx->state.active]; }

const efb_rx_state *efb_rx_state_of(const efb_rx *rx) { return &rx->state; }

uint32_t efb_rx_steps(const efb_rx *rx) { return rx->learning.steps; }

efb_code efb_rx_forward(efb_rx *rx, const float *x, float *y) {
    const edgefdfa_layer *first = &rx->head[0], *last = &rx->head[rx->cfg.n_layers - 1];
    for (uint32_t i = 0; i < first->n_in; ++i) {
        if (!efb_finite(x[i])) return EFB_BAD_INPUT;
    }
    /* ping-pong scratch after the room INFER uses for x and y; cannot fail: init checked the
     * layers and the scratch size */
    size_t reserved = (size_t)first->n_in + last->n_out;
    (void)edgefdfa_head_forward(rx->head, rx->cfg.n_layers, x, y, rx->cfg.scratch + reserved,
                                rx->cfg.scratch_len - reserved);
    return EFB_OK;
}

/* ---- replies ---- */

/* The reply frame is assembled EFB_COBS_OVERHEAD(max_frame) bytes into tx_buf, so that it
 * COBS-encodes in place to tx_buf's start (efb_cobs.h). */
static uint8_t *reply_frame(efb_rx *rx) { return rx->cfg.tx_buf + EFB_COBS_OVERHEAD(rx->cfg.max_frame); }

static uint8_t *reply_payload(efb_rx *rx) { return reply_frame(rx) + EFB_FRAME_HEADER; }

/* Frame the n bytes written at reply_payload (§1), COBS-encode it and hand it to write. */
static void send(efb_rx *rx, uint8_t type, uint16_t seq, size_t n) {
    uint8_t *f = reply_frame(rx);
    f[EFB_FRAME_MAGIC] = 'E';
    f[EFB_FRAME_MAGIC + 1] = 'B';
    f[EFB_FRAME_VERSION] = EFB_VERSION;
    f[EFB_FRAME_TYPE] = type;
    efb_wr16(f + EFB_FRAME_SEQ, seq);
    efb_wr16(f + EFB_FRAME_LENGTH, (uint16_t)n);
    efb_wr32(f + EFB_FRAME_HEADER + n, efb_crc32(f, EFB_FRAME_HEADER + n));
    size_t len = efb_cobs_encode(rx->cfg.tx_buf, f, EFB_FRAME_OVERHEAD + n);
    rx->cfg.write(rx->cfg.ctx, rx->cfg.tx_buf, len);
}

static void send_error(efb_rx *rx, uint16_t seq, efb_code code, uint8_t about) {
    uint8_t *p = reply_payload(rx);
    p[EFB_ERROR_CODE] = (uint8_t)code;
    p[EFB_ERROR_ABOUT] = about;
    rx->last_error = (uint8_t)code;
    send(rx, EFB_ERROR, seq, EFB_ERROR_BYTES);
}

static void send_ack(efb_rx *rx, uint16_t seq) {
    efb_wr32(reply_payload(rx) + EFB_ACK_HAVE, rx->have);
    send(rx, EFB_ACK, seq, EFB_ACK_BYTES);
}

static void send_nack(efb_rx *rx, uint16_t seq, efb_code code) {
    uint8_t *p = reply_payload(rx);
    efb_wr32(p + EFB_NACK_HAVE, rx->have);
    p[EFB_NACK_CODE] = (uint8_t)code;
    rx->last_error = (uint8_t)code;
    send(rx, EFB_NACK, seq, EFB_NACK_BYTES);
}

static void send_active(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    efb_wr32(p + EFB_COMMIT_ID, efb_rx_active_id(rx));
    memcpy(p + EFB_COMMIT_DIGEST, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES);
    send(rx, EFB_ACTIVE, seq, EFB_COMMIT_BYTES);
}

/* HELLO's counter: a keyed device takes a new state change only with a counter above it, and a
 * learning device a new LEARN: the largest of the persisted one, the session's (keyed) and the last
 * LEARN's (0 on a device that has not learned since its reset). */
static uint32_t floor_of(const efb_rx *rx) {
    uint32_t floor = rx->state.counter;
    if (rx->cfg.key_len && rx->in_session && rx->session.counter > floor) floor = rx->session.counter;
    return rx->learning.floor > floor ? rx->learning.floor : floor;
}

static void send_hello(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    efb_wr16(p + EFB_HELLO_MAX_FRAME, rx->cfg.max_frame);
    p[EFB_HELLO_ENCODINGS] = rx->cfg.encodings;
    const efb_learning_config *learn = rx->cfg.learn;
    p[EFB_HELLO_FLAGS] = (uint8_t)((rx->cfg.key_len ? EFB_KEYED : 0) | (learn != NULL ? EFB_LEARNS : 0) |
                                   (learn != NULL && learn->step.loss == EDGEFDFA_LOSS_MSE ? EFB_TARGETS : 0));
    efb_wr32(p + EFB_HELLO_SLOT_SIZE, rx->cfg.slot_size);
    efb_wr32(p + EFB_HELLO_MODEL_ID, rx->model_id);
    efb_wr32(p + EFB_HELLO_ACTIVE_ID, efb_rx_active_id(rx));
    efb_wr32(p + EFB_HELLO_COUNTER, floor_of(rx));
    send(rx, EFB_HELLO, seq, EFB_HELLO_TABLE + layer_table(rx, p + EFB_HELLO_TABLE));
}

static void send_status(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    unsigned other = 1u - rx->state.active;
    p[EFB_STATUS_STATE] = rx->in_session;
    efb_wr32(p + EFB_STATUS_ACTIVE_ID, efb_rx_active_id(rx));
    efb_wr32(p + EFB_STATUS_PREVIOUS_ID, ((unsigned)rx->state.valid >> other) & 1u ? rx->state.ids[other] : EFB_NO_ID);
    efb_wr32(p + EFB_STATUS_STAGED_ID, rx->in_session ? rx->session.update_id : 0);
    efb_wr32(p + EFB_STATUS_HAVE, rx->have);
    efb_wr32(p + EFB_STATUS_TOTAL, rx->in_session ? rx->session.total : 0);
    efb_wr16(p + EFB_STATUS_DROPPED, rx->dropped);
    p[EFB_STATUS_LAST_ERROR] = rx->last_error;
    send(rx, EFB_STATUS, seq, EFB_STATUS_BYTES);
}

/* ---- requests (PROTOCOL.md §5, §6) ---- */

/* On a keyed device, whether a request is signed (UNSIGNED if tag is NULL) and its HMAC over
 * context | type | model_id | a | b verifies (BAD_SIGNATURE); EFB_OK without a key. */
static efb_code authentic(const efb_rx *rx, uint8_t type, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                          const uint8_t *tag) {
    if (!rx->cfg.key_len) return EFB_OK;
    if (tag == NULL) return EFB_UNSIGNED;
    uint8_t head[sizeof CONTEXT + 5], mac[EFB_DIGEST_BYTES];
    memcpy(head, CONTEXT, sizeof CONTEXT);
    head[sizeof CONTEXT] = type;
    efb_wr32(head + sizeof CONTEXT + 1, rx->model_id);
    efb_hmac h;
    efb_hmac_init(&h, rx->cfg.key, rx->cfg.key_len);
    efb_hmac_update(&h, head, sizeof head);
    efb_hmac_update(&h, a, na);
    if (nb > 0) efb_hmac_update(&h, b, nb);
    efb_hmac_final(&h, mac);
    return efb_same(mac, tag, EFB_DIGEST_BYTES) ? EFB_OK : EFB_BAD_SIGNATURE;
}

/* A BEGIN payload's fields. */
static efb_begin begin_of(const uint8_t *p) {
    efb_begin b;
    b.update_id = efb_rd32(p + EFB_BEGIN_UPDATE_ID);
    b.base_id = efb_rd32(p + EFB_BEGIN_BASE_ID);
    b.total = efb_rd32(p + EFB_BEGIN_TOTAL);
    b.encoding = p[EFB_BEGIN_ENCODING];
    b.flags = p[EFB_BEGIN_FLAGS];
    b.counter = efb_rd32(p + EFB_BEGIN_COUNTER);
    memcpy(b.update_hash, p + EFB_BEGIN_HASH, EFB_DIGEST_BYTES);
    return b;
}

/* The BEGIN payload of b without its hmac: what the session's COMMIT is signed over. */
static void begin_bytes(const efb_begin *b, uint8_t out[EFB_BEGIN_BYTES]) {
    efb_wr32(out + EFB_BEGIN_UPDATE_ID, b->update_id);
    efb_wr32(out + EFB_BEGIN_BASE_ID, b->base_id);
    efb_wr32(out + EFB_BEGIN_TOTAL, b->total);
    out[EFB_BEGIN_ENCODING] = b->encoding;
    out[EFB_BEGIN_FLAGS] = b->flags;
    efb_wr32(out + EFB_BEGIN_COUNTER, b->counter);
    memcpy(out + EFB_BEGIN_HASH, b->update_hash, EFB_DIGEST_BYTES);
}

/* Whether two BEGINs name the same update (their counters may differ: a resend is signed anew). */
static int same_update(const efb_begin *a, const efb_begin *b) {
    return a->update_id == b->update_id && a->base_id == b->base_id && a->total == b->total &&
           a->encoding == b->encoding && a->flags == b->flags && efb_same(a->update_hash, b->update_hash, EFB_DIGEST_BYTES);
}

/* BEGIN's checks on b, authenticated as the request of `type` over a | c with `tag` (a BEGIN's
 * own, or an UPDATE's), then its session: a new one, or the same update resumed. EFB_OK or the
 * refusal; a refusal changes nothing. */
static efb_code begin(efb_rx *rx, const efb_begin *b, uint8_t type, const uint8_t *a, size_t na, const uint8_t *c,
                      size_t nc, const uint8_t *tag) {
    if (b->update_id == 0 || (b->flags & ~EFB_SIGNED) != 0) return EFB_BAD_FLAGS;
    if (b->encoding >= 8 || !(((unsigned)rx->cfg.encodings >> b->encoding) & 1u)) return EFB_BAD_ENCODING;
    if (b->total > rx->cfg.slot_size) return EFB_TOO_LARGE;
    efb_code code = authentic(rx, type, a, na, c, nc, tag);
    if (code != EFB_OK) return code;
    int resume = rx->in_session && same_update(&rx->session, b) &&
                 (!rx->cfg.key_len || (b->counter > rx->state.counter && b->counter >= rx->session.counter));
    if (!resume && rx->cfg.key_len && b->counter <= floor_of(rx)) return EFB_STALE;
    if (b->encoding == EFB_SPARSE_INT8 && b->base_id != efb_rx_active_id(rx)) return EFB_BASE_MISMATCH;
    if (!resume) {
        rx->have = 0;
        rx->nacked = 0;
    }
    rx->in_session = 1;
    rx->session = *b;
    return EFB_OK;
}

static void on_begin(efb_rx *rx, uint16_t seq, const uint8_t *p) {
    efb_begin b = begin_of(p);
    const uint8_t *tag = (b.flags & EFB_SIGNED) ? p + EFB_BEGIN_BYTES : NULL;
    efb_code code = begin(rx, &b, EFB_BEGIN, p, EFB_BEGIN_BYTES, NULL, 0, tag);
    if (code == EFB_OK) send_ack(rx, seq);
    else send_error(rx, seq, code, EFB_BEGIN);
}

static void on_chunk(efb_rx *rx, uint16_t seq, const uint8_t *p, uint32_t n) {
    uint32_t offset = efb_rd32(p + EFB_CHUNK_OFFSET), len = n - EFB_CHUNK_DATA;
    if (!rx->in_session) {
        send_error(rx, seq, EFB_NOT_IN_SESSION, EFB_CHUNK);
    } else if (len > rx->session.total || offset > rx->session.total - len) {
        send_error(rx, seq, EFB_OUT_OF_BOUNDS, EFB_CHUNK);
    } else if (offset > rx->have) { /* a gap: NACK it once, then wait for have to move */
        if (rx->nacked && rx->nacked_at == rx->have) return;
        rx->nacked = 1;
        rx->nacked_at = rx->have;
        send_nack(rx, seq, EFB_GAP);
    } else {
        if (offset == rx->have) { /* below have: a duplicate, nothing written */
            memcpy(rx->cfg.staging + offset, p + EFB_CHUNK_DATA, len);
            rx->have += len;
        }
        send_ack(rx, seq);
    }
}

/* Persist `next` (slot: the image that changed, or -1) and make it current; 0 if persisting failed.
 * Every record carries learning's state as it is now, and a keyed device's never lowers the floor
 * LEARNs raised. */
static int install(efb_rx *rx, efb_rx_state *next, int slot) {
    if (rx->cfg.learn != NULL) efb_learning_record(&rx->learning, rx->cfg.learn, rx->head, rx->cfg.n_layers, next);
    if (rx->cfg.key_len && rx->learning.floor > next->counter) next->counter = rx->learning.floor;
    next->generation += 1;
    efb_rx_state_seal(next);
    if (rx->cfg.persist != NULL && rx->cfg.persist(rx->cfg.ctx, next, slot) != 0) return 0;
    rx->state = *next; /* the swap: from here on INFER runs next->active */
    point_head(rx);
    return 1;
}

/* COMMIT (p, n bytes); `authenticated`: an UPDATE whose own hmac was verified by begin(). */
static efb_code commit(efb_rx *rx, const uint8_t *p, uint32_t n, int authenticated) {
    uint32_t id = efb_rd32(p + EFB_COMMIT_ID);
    const uint8_t *digest = p + EFB_COMMIT_DIGEST;
    const efb_begin *s = &rx->session;
    if (!rx->in_session) {
        if (id == efb_rx_active_id(rx) && efb_same(digest, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES)) {
            return EFB_OK; /* a resent COMMIT of what is already active */
        }
        return EFB_NOT_IN_SESSION;
    }
    if (id != s->update_id) return EFB_BAD_DIGEST;
    if (rx->have < s->total) return EFB_INCOMPLETE;
    if (!authenticated) {
        uint8_t body[EFB_BEGIN_BYTES];
        int has_mac = n == EFB_COMMIT_BYTES + EFB_DIGEST_BYTES;
        if (((s->flags & EFB_SIGNED) != 0) != has_mac) return EFB_BAD_LENGTH;
        begin_bytes(s, body);
        efb_code code = authentic(rx, EFB_COMMIT, body, sizeof body, p, EFB_COMMIT_BYTES,
                                  has_mac ? p + EFB_COMMIT_BYTES : NULL);
        if (code != EFB_OK) return code;
    }
    if (rx->cfg.key_len && s->counter <= rx->state.counter) return EFB_STALE; /* a ROLLBACK came after BEGIN */
    rx->in_session = 0; /* from here on, any failure drops the staged update */
    uint8_t d[EFB_DIGEST_BYTES];
    efb_sha256_of(rx->cfg.staging, s->total, d);
    if (!efb_same(d, s->update_hash, EFB_DIGEST_BYTES)) return EFB_BAD_DIGEST; /* CHUNKs that BEGIN did not sign */
    if (s->encoding == EFB_SPARSE_INT8 && s->base_id != efb_rx_active_id(rx)) return EFB_BASE_MISMATCH;
    unsigned inactive = 1u - rx->state.active;
    rx->state.valid = (uint8_t)(rx->state.valid & ~(1u << inactive)); /* it is being overwritten */
    efb_rx_state_seal(&rx->state);
    float *slot = rx->cfg.slots[inactive];
    if (s->encoding == EFB_SPARSE_INT8) memcpy(slot, efb_rx_active_weights(rx), rx->cfg.slot_size); /* the base */
    if (!efb_update_decode(rx->cfg.staging, s->total, s->encoding, rx->head, rx->cfg.n_layers, slot)) {
        return EFB_BAD_UPDATE;
    }
    efb_rx_state next = rx->state;
    efb_sha256_of(slot, rx->cfg.slot_size, next.digest[inactive]);
    if (!efb_same(next.digest[inactive], digest, EFB_DIGEST_BYTES)) return EFB_BAD_DIGEST;
    next.ids[inactive] = s->update_id;
    next.valid = (uint8_t)(next.valid | 1u << inactive);
    next.active = (uint8_t)inactive;
    if (rx->cfg.key_len) next.counter = s->counter;
    return install(rx, &next, (int)inactive) ? EFB_OK : EFB_STORAGE;
}

/* UPDATE: BEGIN (total = the data's length, update hash = its SHA-256), CHUNK(0, data) and COMMIT
 * in one frame of n bytes, authenticated by its own hmac over everything but the hmac. */
static efb_code update(efb_rx *rx, const uint8_t *p, uint32_t n) {
    int is_signed = (p[EFB_UPDATE_FLAGS] & EFB_SIGNED) != 0;
    uint32_t fields = EFB_UPDATE_FIELDS + (is_signed ? EFB_DIGEST_BYTES : 0u);
    if (n <= fields) return EFB_BAD_LENGTH;
    const uint8_t *digest = p + EFB_UPDATE_DIGEST, *data = p + fields;
    uint32_t len = n - fields;
    efb_begin b;
    b.update_id = efb_rd32(p + EFB_UPDATE_ID);
    if (b.update_id == efb_rx_active_id(rx) && efb_same(digest, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES)) {
        return EFB_OK; /* a resent UPDATE of what is already active: nothing changes */
    }
    b.base_id = efb_rd32(p + EFB_UPDATE_BASE_ID);
    b.total = len;
    b.encoding = p[EFB_UPDATE_ENCODING];
    b.flags = p[EFB_UPDATE_FLAGS];
    b.counter = efb_rd32(p + EFB_UPDATE_COUNTER);
    efb_sha256_of(data, len, b.update_hash);
    efb_code code = begin(rx, &b, EFB_UPDATE, p, EFB_UPDATE_FIELDS, data, len, is_signed ? p + EFB_UPDATE_FIELDS : NULL);
    if (code != EFB_OK) return code;
    memcpy(rx->cfg.staging, data, len); /* fits: begin checked total <= slot_size */
    rx->have = len;
    uint8_t c[EFB_COMMIT_BYTES];
    efb_wr32(c + EFB_COMMIT_ID, b.update_id);
    memcpy(c + EFB_COMMIT_DIGEST, digest, EFB_DIGEST_BYTES);
    return commit(rx, c, EFB_COMMIT_BYTES, 1);
}

/* ROLLBACK (p, n bytes: to_id, counter [, hmac]). */
static efb_code rollback(efb_rx *rx, const uint8_t *p, uint32_t n) {
    uint32_t to_id = efb_rd32(p + EFB_ROLLBACK_TO_ID), counter = efb_rd32(p + EFB_ROLLBACK_COUNTER);
    efb_code code = authentic(rx, EFB_ROLLBACK, p, EFB_ROLLBACK_BYTES, NULL, 0,
                              n > EFB_ROLLBACK_BYTES ? p + EFB_ROLLBACK_BYTES : NULL);
    if (code != EFB_OK) return code;
    unsigned other = 1u - rx->state.active;
    if (efb_rx_active_id(rx) == to_id) return EFB_OK; /* a resent ROLLBACK already done */
    if (!(((unsigned)rx->state.valid >> other) & 1u) || rx->state.ids[other] != to_id) return EFB_NO_PREVIOUS;
    if (rx->cfg.key_len && counter <= floor_of(rx)) return EFB_STALE;
    efb_rx_state next = rx->state;
    next.active = (uint8_t)other;
    if (rx->cfg.key_len) next.counter = counter;
    return install(rx, &next, -1) ? EFB_OK : EFB_STORAGE;
}

/* ---- learning (PROTOCOL.md §8) ---- */

/* Write the working copy into the inactive slot and make it active with `counter` (a keyed
 * device's; install raises it to LEARN's floor), as a COMMIT does. EFB_OK or EFB_STORAGE (the old
 * weights stay active, the working copy is kept). */
static efb_code save_working(efb_rx *rx, uint32_t counter) {
    unsigned inactive = 1u - rx->state.active;
    rx->state.valid = (uint8_t)(rx->state.valid & ~(1u << inactive)); /* it is being overwritten */
    efb_rx_state_seal(&rx->state);
    float *slot = rx->cfg.slots[inactive];
    memcpy(slot, rx->cfg.learn->working, rx->cfg.slot_size);
    efb_rx_state next = rx->state;
    efb_sha256_of(slot, rx->cfg.slot_size, next.digest[inactive]);
    uint32_t id = efb_rd32(next.digest[inactive]); /* the image's own id: the first 4 bytes of its digest */
    next.ids[inactive] = id != 0 ? id : 1u;
    next.valid = (uint8_t)(next.valid | 1u << inactive);
    next.active = (uint8_t)inactive;
    if (rx->cfg.key_len) next.counter = counter;
    return install(rx, &next, (int)inactive) ? EFB_OK : EFB_STORAGE;
}

/* LEARN (p, n >= EFB_LEARN_FIELDS bytes): every check before anything changes, then the steps
 * (efb_learning), the save save_every asks for, and LEARNED. */
static void on_learn(efb_rx *rx, uint16_t seq, const uint8_t *p, uint32_t n) {
    const efb_learning_config *learn = rx->cfg.learn;
    uint8_t flags = p[EFB_LEARN_FLAGS], count = p[EFB_LEARN_N];
    uint32_t head = EFB_LEARN_FIELDS + ((flags & EFB_SIGNED) ? EFB_DIGEST_BYTES : 0u);
    uint32_t counter = efb_rd32(p + EFB_LEARN_COUNTER);
    efb_code code = EFB_OK;
    if ((flags & ~EFB_SIGNED) != 0) code = EFB_BAD_FLAGS;
    else if (n < head) code = EFB_BAD_LENGTH;
    else if (learn == NULL) code = EFB_NOT_LEARNING; /* it does not know a sample's layout */
    else if (count == 0 || n != head + count * efb_learning_sample_bytes(learn, rx->head, rx->cfg.n_layers)) {
        code = EFB_BAD_LENGTH;
    } else code = authentic(rx, EFB_LEARN, p, EFB_LEARN_FIELDS, p + head, n - head,
                          (flags & EFB_SIGNED) ? p + EFB_LEARN_FIELDS : NULL);
    if (code == EFB_OK && counter <= floor_of(rx)) code = EFB_STALE; /* a resent LEARN: learned already */
    if (code == EFB_OK) code = efb_learning_check(learn, rx->head, rx->cfg.n_layers, p + head, count, rx->cfg.scratch);
    if (code != EFB_OK) {
        send_error(rx, seq, code, EFB_LEARN);
        return;
    }
    rx->learning.floor = counter;
    uint8_t *r = reply_payload(rx);
    efb_learning_learn(&rx->learning, learn, rx->head, rx->cfg.n_layers, p + head, count, rx->cfg.scratch,
                       r + EFB_LEARNED_FIELDS);
    if (learn->save_every > 0 && rx->learning.steps - rx->state.steps >= learn->save_every &&
        save_working(rx, rx->state.counter) != EFB_OK) {
        rx->last_error = EFB_STORAGE; /* LEARNED's saved_steps stays behind */
    }
    efb_wr32(r + EFB_LEARNED_STEPS, rx->learning.steps);
    efb_wr32(r + EFB_LEARNED_SAVED, rx->state.steps);
    r[EFB_LEARNED_N] = count;
    send(rx, EFB_LEARNED, seq, EFB_LEARNED_FIELDS + (size_t)EFB_ENTRY_BYTES * count);
}

/* SAVE (p, n = EFB_SAVE_FIELDS [+ hmac] bytes): the working copy made the active slot. */
static efb_code save(efb_rx *rx, const uint8_t *p, uint32_t n) {
    uint8_t flags = p[EFB_SAVE_FLAGS];
    int is_signed = (flags & EFB_SIGNED) != 0;
    if ((flags & ~EFB_SIGNED) != 0) return EFB_BAD_FLAGS;
    if (is_signed != (n > EFB_SAVE_FIELDS)) return EFB_BAD_LENGTH;
    if (rx->cfg.learn == NULL) return EFB_NOT_LEARNING;
    efb_code code = authentic(rx, EFB_SAVE, p, EFB_SAVE_FIELDS, NULL, 0, is_signed ? p + EFB_SAVE_FIELDS : NULL);
    if (code != EFB_OK) return code;
    if (rx->learning.steps == rx->state.steps) return EFB_OK; /* nothing learned since the last save or swap */
    uint32_t counter = efb_rd32(p + EFB_SAVE_COUNTER);
    if (rx->cfg.key_len && counter <= floor_of(rx)) return EFB_STALE;
    return save_working(rx, counter);
}

static void on_infer(efb_rx *rx, uint16_t seq, const uint8_t *p, uint32_t n) {
    uint32_t n_in = rx->head[0].n_in, n_out = rx->head[rx->cfg.n_layers - 1].n_out;
    float *x = rx->cfg.scratch, *y = x + n_in;
    if (n % 4u) {
        send_error(rx, seq, EFB_BAD_LENGTH, EFB_INFER);
        return;
    }
    if (n / 4u != n_in) {
        send_error(rx, seq, EFB_BAD_INPUT, EFB_INFER);
        return;
    }
    for (uint32_t i = 0; i < n_in; ++i) x[i] = efb_f32_of(efb_rd32(p + 4u * i));
    if (efb_rx_forward(rx, x, y) != EFB_OK) {
        send_error(rx, seq, EFB_BAD_INPUT, EFB_INFER);
        return;
    }
    uint8_t *r = reply_payload(rx);
    for (uint32_t j = 0; j < n_out; ++j) efb_wr32(r + 4u * j, efb_bits_of(y[j]));
    send(rx, EFB_OUTPUT, seq, 4u * n_out);
}

/* One message with a trusted header: check its payload length for the type, then act. */
static void dispatch(efb_rx *rx, uint8_t type, uint16_t seq, const uint8_t *p, uint32_t n) {
    int length_ok;
    switch (type) {
        case EFB_HELLO_REQ: case EFB_STATUS_REQ: length_ok = n == 0; break;
        case EFB_BEGIN:
            length_ok = n >= EFB_BEGIN_BYTES &&
                        n == EFB_BEGIN_BYTES + ((p[EFB_BEGIN_FLAGS] & EFB_SIGNED) ? EFB_DIGEST_BYTES : 0u);
            break;
        case EFB_CHUNK: length_ok = n > EFB_CHUNK_DATA; break;
        case EFB_COMMIT: length_ok = n == EFB_COMMIT_BYTES || n == EFB_COMMIT_BYTES + EFB_DIGEST_BYTES; break;
        case EFB_ROLLBACK: length_ok = n == EFB_ROLLBACK_BYTES || n == EFB_ROLLBACK_BYTES + EFB_DIGEST_BYTES; break;
        case EFB_INFER: length_ok = 1; break; /* checked by on_infer: BAD_LENGTH, then BAD_INPUT */
        case EFB_UPDATE: length_ok = n > EFB_UPDATE_FIELDS; break; /* and by update(), once the flags are read */
        case EFB_LEARN: length_ok = n >= EFB_LEARN_FIELDS; break; /* and by on_learn(), after the flags */
        case EFB_SAVE: length_ok = n == EFB_SAVE_FIELDS || n == EFB_SAVE_FIELDS + EFB_DIGEST_BYTES; break;
        default: /* unknown, or a device -> host type the device never accepts */
            send_error(rx, seq, EFB_BAD_TYPE, type);
            return;
    }
    if (!length_ok) {
        send_error(rx, seq, EFB_BAD_LENGTH, type);
        return;
    }
    efb_code code;
    switch (type) {
        case EFB_HELLO_REQ: send_hello(rx, seq); return;
        case EFB_STATUS_REQ: send_status(rx, seq); return;
        case EFB_BEGIN: on_begin(rx, seq, p); return;
        case EFB_CHUNK: on_chunk(rx, seq, p, n); return;
        case EFB_INFER: on_infer(rx, seq, p, n); return;
        case EFB_LEARN: on_learn(rx, seq, p, n); return;
        case EFB_COMMIT: code = commit(rx, p, n, 0); break;
        case EFB_UPDATE: code = update(rx, p, n); break;
        case EFB_SAVE: code = save(rx, p, n); break;
        default: code = rollback(rx, p, n); break;
    }
    if (code == EFB_OK) send_active(rx, seq);
    else send_error(rx, seq, code, type);
}

/* ---- frames in (PROTOCOL.md §1) ---- */

static void drop(efb_rx *rx) {
    if (rx->dropped < 0xFFFFu) ++rx->dropped;
}

/* A complete record: checks in the order of §1; noise is dropped and counted, a trusted header
 * with a bad magic, version or length is answered with ERROR. */
static void on_record(efb_rx *rx) {
    uint8_t *f = rx->cfg.rx_buf;
    long decoded = efb_cobs_decode(f, rx->record_len);
    if (decoded < EFB_FRAME_OVERHEAD || decoded > (long)rx->cfg.max_frame) {
        drop(rx); /* BAD_COBS, BAD_LENGTH or TOO_LONG */
        return;
    }
    uint32_t len = (uint32_t)decoded, body = len - EFB_FRAME_CRC_BYTES;
    if (efb_crc32(f, body) != efb_rd32(f + body)) {
        drop(rx);
        return;
    }
    uint8_t type = f[EFB_FRAME_TYPE];
    uint16_t seq = efb_rd16(f + EFB_FRAME_SEQ);
    if (f[EFB_FRAME_MAGIC] != 'E' || f[EFB_FRAME_MAGIC + 1] != 'B') send_error(rx, seq, EFB_BAD_MAGIC, type);
    else if (f[EFB_FRAME_VERSION] != EFB_VERSION) send_error(rx, seq, EFB_BAD_VERSION, type);
    else if (EFB_FRAME_OVERHEAD + (uint32_t)efb_rd16(f + EFB_FRAME_LENGTH) != len) send_error(rx, seq, EFB_BAD_LENGTH, type);
    else dispatch(rx, type, seq, f + EFB_FRAME_HEADER, len - EFB_FRAME_OVERHEAD);
}

void efb_rx_feed(efb_rx *rx, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint8_t b = bytes[i];
        if (b == 0) {
            if (rx->overlong) drop(rx); /* TOO_LONG */
            else if (rx->record_len > 0) on_record(rx);
            rx->overlong = 0;
            rx->record_len = 0;
        } else if (!rx->overlong) {
            if (rx->record_len == rx->record_limit) rx->overlong = 1;
            else rx->cfg.rx_buf[rx->record_len++] = b;
        }
    }
}
