/* edgefdfa_rx: frames, the session state machine, update decoding and the atomic slot swap.
 * See edgefdfa_rx.h and firmware_bridge/PROTOCOL.md; firmware_bridge/emulator.py is the same
 * device in Python and the reference for every reply. */
#include "edgefdfa_rx.h"

#include <string.h>

enum { /* message types (PROTOCOL.md §2) */
    T_HELLO_REQ = 0x01, T_BEGIN = 0x02, T_CHUNK = 0x03, T_COMMIT = 0x04, T_STATUS_REQ = 0x05,
    T_ROLLBACK = 0x06, T_INFER = 0x07, T_UPDATE = 0x08,
    T_HELLO = 0x81, T_ACK = 0x82, T_NACK = 0x83, T_ACTIVE = 0x84, T_STATUS = 0x85, T_OUTPUT = 0x86,
    T_ERROR = 0x88
};
enum {
    HEADER = 8, OVERHEAD = 12,  /* magic, version, type, seq, length | payload | crc */
    SIGNED = 0x01, KEYED = 0x01, /* BEGIN flags bit0, HELLO flags bit0 */
    BEGIN_BYTES = 18 + EFB_DIGEST_BYTES,  /* BEGIN's bytes before its hmac: fields, update hash */
    COMMIT_BYTES = 4 + EFB_DIGEST_BYTES, STATUS_BYTES = 24, ROLLBACK_BYTES = 8,
    UPDATE_FIELDS = 14 + EFB_DIGEST_BYTES, /* UPDATE's bytes before its hmac */
    HELLO_FIXED = 21                       /* HELLO's bytes before its layer table */
};
static const uint8_t CONTEXT[7] = {'E', 'F', 'D', 'F', 'A', '-', '2'}; /* of every signed request */

/* ---- little-endian fields and float bits ---- */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static float f32_of(uint32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static uint32_t bits_of(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static int finite(float f) { return (bits_of(f) & 0x7F800000u) != 0x7F800000u; }

/* IEEE binary16 to float32, exactly (subnormals normalised; inf and NaN kept). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) return f32_of(sign | 0x7F800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0) return f32_of(sign);
        exp = 113; /* 127 - 14: a subnormal is mant x 2^-24; one less per shift below */
        while (!(mant & 0x400u)) { mant <<= 1; --exp; }
        return f32_of(sign | exp << 23 | (mant & 0x3FFu) << 13);
    }
    return f32_of(sign | (exp + 112) << 23 | mant << 13);
}

/* ---- CRC-32 (IEEE, reflected 0xEDB88320, as zlib.crc32), a nibble at a time ---- */

static uint32_t crc32(const uint8_t *p, size_t n) {
    static const uint32_t t[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        c = (c >> 4) ^ t[c & 15u];
        c = (c >> 4) ^ t[c & 15u];
    }
    return ~c;
}

/* ---- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) ---- */

typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes hashed */
    uint8_t buf[64];
    uint32_t n; /* bytes in buf */
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

static uint32_t ror(uint32_t x, unsigned r) { return x >> r | x << (32u - r); }

static void sha256_block(sha256 *s, const uint8_t *p) {
    uint32_t w[16], v[8];
    for (unsigned i = 0; i < 16; ++i) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                                             (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    memcpy(v, s->h, sizeof v);
    for (unsigned i = 0; i < 64; ++i) {
        if (i >= 16) { /* the message schedule, 16 words rolling */
            uint32_t a = w[(i + 1) & 15], b = w[(i + 14) & 15];
            w[i & 15] += (ror(a, 7) ^ ror(a, 18) ^ a >> 3) + w[(i + 9) & 15] + (ror(b, 17) ^ ror(b, 19) ^ b >> 10);
        }
        uint32_t t1 = v[7] + (ror(v[4], 6) ^ ror(v[4], 11) ^ ror(v[4], 25)) + ((v[4] & v[5]) ^ (~v[4] & v[6])) +
                      K256[i] + w[i & 15];
        uint32_t t2 = (ror(v[0], 2) ^ ror(v[0], 13) ^ ror(v[0], 22)) + ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (unsigned i = 0; i < 8; ++i) s->h[i] += v[i];
}

static void sha256_init(sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

static void sha256_update(sha256 *s, const uint8_t *p, size_t n) {
    s->len += n;
    while (n > 0) {
        if (s->n == 0 && n >= 64) {
            sha256_block(s, p);
            p += 64;
            n -= 64;
            continue;
        }
        size_t k = 64u - s->n < n ? 64u - s->n : n;
        memcpy(s->buf + s->n, p, k);
        s->n += (uint32_t)k;
        p += k;
        n -= k;
        if (s->n == 64) {
            sha256_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha256_final(sha256 *s, uint8_t out[EFB_DIGEST_BYTES]) {
    uint64_t bits = s->len * 8u;
    uint8_t pad[72] = {0x80};
    size_t k = (s->n < 56 ? 56u : 120u) - s->n;
    for (unsigned i = 0; i < 8; ++i) pad[k + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, k + 8);
    for (unsigned i = 0; i < 8; ++i) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void sha256_of(const void *p, size_t n, uint8_t out[EFB_DIGEST_BYTES]) {
    sha256 s;
    sha256_init(&s);
    sha256_update(&s, (const uint8_t *)p, n);
    sha256_final(&s, out);
}

/* HMAC-SHA256 over a message fed in pieces: hmac_init, sha256_update(&h.inner, ...), hmac_final. */
typedef struct {
    sha256 inner;
    uint8_t opad[64];
} hmac;

static void hmac_init(hmac *h, const uint8_t *key, size_t key_len) {
    uint8_t pad[64] = {0};
    if (key_len > sizeof pad) sha256_of(key, key_len, pad); /* long keys are hashed first */
    else memcpy(pad, key, key_len);
    for (unsigned i = 0; i < 64; ++i) {
        h->opad[i] = (uint8_t)(pad[i] ^ 0x5C);
        pad[i] ^= 0x36;
    }
    sha256_init(&h->inner);
    sha256_update(&h->inner, pad, sizeof pad);
}

static void hmac_final(hmac *h, uint8_t out[EFB_DIGEST_BYTES]) {
    uint8_t inner[EFB_DIGEST_BYTES];
    sha256 s;
    sha256_final(&h->inner, inner);
    sha256_init(&s);
    sha256_update(&s, h->opad, sizeof h->opad);
    sha256_update(&s, inner, sizeof inner);
    sha256_final(&s, out);
}

/* Whether two byte strings are equal, in time independent of where they differ. */
static int same(const uint8_t *a, const uint8_t *b, size_t n) {
    uint8_t d = 0;
    for (size_t i = 0; i < n; ++i) d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- the persistent record ---- */

static void seal(efb_rx_state *s) { s->crc = crc32((const uint8_t *)s, offsetof(efb_rx_state, crc)); }

int efb_rx_state_ok(const efb_rx_state *s) {
    return s != NULL && s->magic == EFB_STATE_MAGIC && s->version == EFB_STATE_VERSION && s->active <= 1 &&
           (s->valid & (1u << s->active)) && (s->valid & ~3u) == 0 &&
           s->crc == crc32((const uint8_t *)s, offsetof(efb_rx_state, crc));
}

/* ---- init ---- */

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
        const efb_layer *y = &c->layers[l];
        if (y->n_out == 0 || y->n_in == 0 || y->activation > EDGEFDFA_SIGMOID ||
            (l > 0 && y->n_in != c->layers[l - 1].n_out)) {
            return EFB_RX_BAD_LAYERS;
        }
        params += (uint64_t)y->n_out * ((uint64_t)y->n_in + 1u);
        if (y->n_out > widest) widest = y->n_out;
    }
    uint32_t n_in = c->layers[0].n_in, n_out = c->layers[c->n_layers - 1].n_out;
    if (c->max_frame < EFB_MIN_FRAME || c->max_frame > EFB_MAX_FRAME ||
        OVERHEAD + HELLO_FIXED + 5u * c->n_layers > c->max_frame || OVERHEAD + 4u * n_out > c->max_frame) {
        return EFB_RX_BAD_MAX_FRAME;
    }
    if (4u * params != c->slot_size) return EFB_RX_BAD_SLOT_SIZE;
    if (c->encodings == 0 || (c->encodings & ~EFB_ALL_ENCODINGS) != 0) return EFB_RX_BAD_ENCODINGS;
    if (c->scratch_len < EFB_SCRATCH_LEN((size_t)n_in, (size_t)n_out, (size_t)widest)) return EFB_RX_SCRATCH_TOO_SMALL;

    memset(rx, 0, sizeof *rx);
    rx->cfg = *c;
    rx->record_limit = c->max_frame + c->max_frame / 254u + 1u;
    uint8_t table[1 + 5 * EFB_MAX_LAYERS];
    table[0] = c->n_layers;
    for (unsigned l = 0; l < c->n_layers; ++l) {
        wr16(table + 1 + 5 * l, c->layers[l].n_out);
        wr16(table + 3 + 5 * l, c->layers[l].n_in);
        table[5 + 5 * l] = c->layers[l].activation;
    }
    rx->model_id = crc32(table, 1u + 5u * c->n_layers);
    if (restored != NULL) {
        uint8_t d[EFB_DIGEST_BYTES];
        if (!efb_rx_state_ok(restored) || restored->model_id != rx->model_id) return EFB_RX_BAD_STATE;
        rx->state = *restored;
        for (unsigned s = 0; s < 2; ++s) {
            if (!(rx->state.valid & (1u << s))) continue;
            sha256_of(c->slots[s], c->slot_size, d);
            if (!same(d, rx->state.digest[s], sizeof d)) {
                if (s == rx->state.active) return EFB_RX_BAD_STATE;
                rx->state.valid = (uint8_t)(rx->state.valid & ~(1u << s)); /* a reset while it was being written */
            }
        }
    } else {
        rx->state.magic = EFB_STATE_MAGIC;
        rx->state.version = EFB_STATE_VERSION;
        rx->state.valid = 1; /* slot 0: the factory weights, id 0 */
        rx->state.model_id = rx->model_id;
        sha256_of(c->slots[0], c->slot_size, rx->state.digest[0]);
    }
    seal(&rx->state);
    return EFB_RX_OK;
}

/* ---- accessors and the forward pass ---- */

const float *efb_rx_active_weights(const efb_rx *rx) { return rx->cfg.slots[rx->state.active]; }

uint32_t efb_rx_active_id(const efb_rx *rx) { return rx->state.ids[rx->state.active]; }

const efb_rx_state *efb_rx_state_of(const efb_rx *rx) { return &rx->state; }

efb_code efb_rx_forward(efb_rx *rx, const float *x, float *y) {
    const efb_layer *first = &rx->cfg.layers[0], *last = &rx->cfg.layers[rx->cfg.n_layers - 1];
    for (unsigned i = 0; i < first->n_in; ++i) {
        if (!finite(x[i])) return EFB_BAD_INPUT;
    }
    const float *w = efb_rx_active_weights(rx);
    for (unsigned l = 0; l < rx->cfg.n_layers; ++l) { /* point the layers into the active slot */
        const efb_layer *a = &rx->cfg.layers[l];
        edgefdfa_layer *h = &rx->head[l];
        h->n_in = a->n_in;
        h->n_out = a->n_out;
        h->w_f32 = w;
        h->w_i8 = NULL;
        h->w_scale = NULL;
        h->bias = w + (size_t)a->n_out * a->n_in;
        h->activation = a->activation;
        w = h->bias + a->n_out;
    }
    /* ping-pong scratch after the room INFER uses for x and y; cannot fail: init checked the
     * layers and the scratch size */
    size_t reserved = (size_t)first->n_in + last->n_out;
    (void)edgefdfa_head_forward(rx->head, rx->cfg.n_layers, x, y, rx->cfg.scratch + reserved,
                                rx->cfg.scratch_len - reserved);
    return EFB_OK;
}

/* ---- replies ---- */

/* The raw reply frame sits at tx_buf + cobs_room so that it can be COBS-encoded in place into
 * tx_buf: the encoder's output never overtakes its input by more than one byte per 254. */
static size_t cobs_room(const efb_rx *rx) { return rx->cfg.max_frame / 254u + 1u; }

static uint8_t *reply_payload(efb_rx *rx) { return rx->cfg.tx_buf + cobs_room(rx) + HEADER; }

static void send(efb_rx *rx, uint8_t type, uint16_t seq, size_t n) {
    uint8_t *raw = rx->cfg.tx_buf + cobs_room(rx), *out = rx->cfg.tx_buf;
    raw[0] = 'E';
    raw[1] = 'B';
    raw[2] = EFB_VERSION;
    raw[3] = type;
    wr16(raw + 4, seq);
    wr16(raw + 6, (uint16_t)n);
    wr32(raw + HEADER + n, crc32(raw, HEADER + n));
    size_t len = OVERHEAD + n, code_at = 0, at = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; ++i) {
        uint8_t b = raw[i]; /* read before anything is written at or after its position */
        if (code == 0xFF) {
            out[code_at] = code;
            code_at = at++;
            code = 1;
        }
        if (b == 0) {
            out[code_at] = code;
            code_at = at++;
            code = 1;
        } else {
            out[at++] = b;
            ++code;
        }
    }
    out[code_at] = code;
    out[at++] = 0;
    rx->cfg.write(rx->cfg.ctx, out, at);
}

static void send_error(efb_rx *rx, uint16_t seq, efb_code code, uint8_t about) {
    uint8_t *p = reply_payload(rx);
    p[0] = (uint8_t)code;
    p[1] = about;
    rx->last_error = (uint8_t)code;
    send(rx, T_ERROR, seq, 2);
}

static void send_ack(efb_rx *rx, uint16_t seq) {
    wr32(reply_payload(rx), rx->have);
    send(rx, T_ACK, seq, 4);
}

static void send_active(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    wr32(p, efb_rx_active_id(rx));
    memcpy(p + 4, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES);
    send(rx, T_ACTIVE, seq, COMMIT_BYTES);
}

/* HELLO's counter: a keyed device takes a new state change only with a counter above it (the
 * persisted one, or the session's if higher). */
static uint32_t floor_of(const efb_rx *rx) {
    if (rx->cfg.key_len && rx->in_session && rx->counter > rx->state.counter) return rx->counter;
    return rx->state.counter;
}

static void send_hello(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    wr16(p, rx->cfg.max_frame);
    p[2] = rx->cfg.encodings;
    p[3] = rx->cfg.key_len ? KEYED : 0;
    wr32(p + 4, rx->cfg.slot_size);
    wr32(p + 8, rx->model_id);
    wr32(p + 12, efb_rx_active_id(rx));
    wr32(p + 16, floor_of(rx));
    p[20] = rx->cfg.n_layers;
    for (unsigned l = 0; l < rx->cfg.n_layers; ++l) {
        wr16(p + 21 + 5 * l, rx->cfg.layers[l].n_out);
        wr16(p + 23 + 5 * l, rx->cfg.layers[l].n_in);
        p[25 + 5 * l] = rx->cfg.layers[l].activation;
    }
    send(rx, T_HELLO, seq, HELLO_FIXED + 5u * rx->cfg.n_layers);
}

static void send_status(efb_rx *rx, uint16_t seq) {
    uint8_t *p = reply_payload(rx);
    unsigned other = 1u - rx->state.active;
    p[0] = rx->in_session;
    wr32(p + 1, efb_rx_active_id(rx));
    wr32(p + 5, ((unsigned)rx->state.valid >> other) & 1u ? rx->state.ids[other] : EFB_NO_ID);
    wr32(p + 9, rx->in_session ? rx->update_id : 0);
    wr32(p + 13, rx->have);
    wr32(p + 17, rx->in_session ? rx->total : 0);
    wr16(p + 21, rx->dropped);
    p[23] = rx->last_error;
    send(rx, T_STATUS, seq, STATUS_BYTES);
}

/* ---- decoding an update into the inactive slot (PROTOCOL.md §4) ---- */

typedef struct {
    const uint8_t *p;
    uint32_t at, end;
} reader;

/* The next n bytes, or NULL (and nothing consumed) if fewer are left. */
static const uint8_t *take(reader *r, uint64_t n) {
    if (n > r->end - r->at) return NULL;
    const uint8_t *q = r->p + r->at;
    r->at += (uint32_t)n;
    return q;
}

/* One unsigned LEB128 gap (at most 5 bytes, < 2^32) into *v; 0 if it does not parse. */
static int varint(reader *r, uint32_t *v) {
    uint64_t x = 0;
    for (unsigned k = 0; k < 5; ++k) {
        const uint8_t *b = take(r, 1);
        if (b == NULL) return 0;
        x |= (uint64_t)(*b & 0x7Fu) << (7 * k);
        if (!(*b & 0x80u)) {
            *v = (uint32_t)x;
            return x <= 0xFFFFFFFFu;
        }
    }
    return 0;
}

/* A sparse block: base (already in t) + (float)q * scale at the listed indices of n elements. */
static int sparse_block(reader *r, float *t, uint32_t n) {
    const uint8_t *head = take(r, 8);
    if (head == NULL) return 0;
    uint32_t count = rd32(head);
    float scale = f32_of(rd32(head + 4));
    if (count > n) return 0;
    reader gaps = *r; /* first pass: the gaps parse and every index is < n */
    uint64_t index = 0;
    for (uint32_t j = 0; j < count; ++j) {
        uint32_t gap;
        if (!varint(r, &gap)) return 0;
        index = (j == 0 ? 0u : index + 1u) + gap;
        if (index >= n) return 0;
    }
    const uint8_t *q = take(r, count);
    if (q == NULL) return 0;
    index = 0;
    for (uint32_t j = 0; j < count; ++j) { /* second pass: apply */
        uint32_t gap;
        (void)varint(&gaps, &gap);
        index = (j == 0 ? 0u : index + 1u) + gap;
        float delta = (float)(int8_t)q[j] * scale;
        t[index] = t[index] + delta;
    }
    return 1;
}

/* W (rows, cols) of an int8 encoding: per-tensor or per-row scales, then rows*cols int8. */
static int int8_block(reader *r, float *t, uint32_t rows, uint32_t cols, int per_row) {
    const uint8_t *scales = take(r, 4u * (per_row ? rows : 1u)), *q;
    if (scales == NULL || (q = take(r, (uint64_t)rows * cols)) == NULL) return 0;
    for (uint32_t i = 0; i < rows; ++i) {
        float scale = f32_of(rd32(scales + (per_row ? 4u * i : 0u)));
        for (uint32_t j = 0; j < cols; ++j) {
            size_t k = (size_t)i * cols + j;
            t[k] = (float)(int8_t)q[k] * scale;
        }
    }
    return 1;
}

static int f32_block(reader *r, float *t, uint32_t n) {
    const uint8_t *v = take(r, 4u * (uint64_t)n);
    if (v == NULL) return 0;
    for (uint32_t k = 0; k < n; ++k) t[k] = f32_of(rd32(v + 4u * k));
    return 1;
}

/* Decode staging[0, total) in `encoding` into out (the inactive slot); sparse starts from the
 * active image. 0 (BAD_UPDATE) if any block does not parse, bytes are left over or a value is not
 * finite. Writes only out[0, slot_size / 4). */
static int decode_update(efb_rx *rx, float *out) {
    reader r = {rx->cfg.staging, 0, rx->total};
    uint8_t e = rx->encoding;
    if (e == EFB_SPARSE_INT8) memcpy(out, efb_rx_active_weights(rx), rx->cfg.slot_size);
    float *t = out;
    for (unsigned l = 0; l < rx->cfg.n_layers; ++l) {
        uint32_t rows = rx->cfg.layers[l].n_out, cols = rx->cfg.layers[l].n_in, n = rows * cols;
        int ok;
        if (e == EFB_F32) ok = f32_block(&r, t, n) && f32_block(&r, t + n, rows);
        else if (e == EFB_INT8_TENSOR || e == EFB_INT8_CHANNEL)
            ok = int8_block(&r, t, rows, cols, e == EFB_INT8_CHANNEL) && f32_block(&r, t + n, rows);
        else if (e == EFB_SPARSE_INT8) ok = sparse_block(&r, t, n) && sparse_block(&r, t + n, rows);
        else { /* F16: BEGIN accepted only the five encodings */
            const uint8_t *v = take(&r, 2u * ((uint64_t)n + rows));
            ok = v != NULL;
            for (uint32_t k = 0; ok && k < n + rows; ++k) t[k] = f16_to_f32(rd16(v + 2u * k));
        }
        if (!ok) return 0;
        t += n + rows;
    }
    if (r.at != r.end) return 0;
    for (uint32_t k = 0; k < rx->cfg.slot_size / 4u; ++k) {
        if (!finite(out[k])) return 0;
    }
    return 1;
}

/* ---- messages (PROTOCOL.md §6) ---- */

/* On a keyed device, whether a request is signed (UNSIGNED if tag is NULL) and its HMAC over
 * context | type | model_id | a | b verifies (BAD_SIGNATURE); EFB_OK without a key. */
static efb_code authentic(const efb_rx *rx, uint8_t type, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                          const uint8_t *tag) {
    if (!rx->cfg.key_len) return EFB_OK;
    if (tag == NULL) return EFB_UNSIGNED;
    uint8_t head[sizeof CONTEXT + 5], mac[EFB_DIGEST_BYTES];
    memcpy(head, CONTEXT, sizeof CONTEXT);
    head[sizeof CONTEXT] = type;
    wr32(head + sizeof CONTEXT + 1, rx->model_id);
    hmac h;
    hmac_init(&h, rx->cfg.key, rx->cfg.key_len);
    sha256_update(&h.inner, head, sizeof head);
    sha256_update(&h.inner, a, na);
    if (nb > 0) sha256_update(&h.inner, b, nb);
    hmac_final(&h, mac);
    return same(mac, tag, EFB_DIGEST_BYTES) ? EFB_OK : EFB_BAD_SIGNATURE;
}

/* The session's BEGIN without its hmac (BEGIN_BYTES): what a COMMIT's HMAC is bound to. */
static void session_body(const efb_rx *rx, uint8_t out[BEGIN_BYTES]) {
    wr32(out, rx->update_id);
    wr32(out + 4, rx->base_id);
    wr32(out + 8, rx->total);
    out[12] = rx->encoding;
    out[13] = rx->flags;
    wr32(out + 14, rx->counter);
    memcpy(out + 18, rx->update_hash, EFB_DIGEST_BYTES);
}

/* BEGIN's checks on its body b (BEGIN_BYTES), authenticated as the request of `type` over a | c
 * with `tag` (a BEGIN's own, or an UPDATE's), then its session: a new one, or the same update
 * resumed. EFB_OK or the refusal; a refusal changes nothing. */
static efb_code begin(efb_rx *rx, const uint8_t *b, uint8_t type, const uint8_t *a, size_t na, const uint8_t *c,
                      size_t nc, const uint8_t *tag) {
    uint32_t id = rd32(b), base = rd32(b + 4), total = rd32(b + 8), counter = rd32(b + 14);
    uint8_t encoding = b[12], flags = b[13];
    if (id == 0 || (flags & ~SIGNED) != 0) return EFB_BAD_FLAGS;
    if (encoding >= 8 || !(((unsigned)rx->cfg.encodings >> encoding) & 1u)) return EFB_BAD_ENCODING;
    if (total > rx->cfg.slot_size) return EFB_TOO_LARGE;
    efb_code code = authentic(rx, type, a, na, c, nc, tag);
    if (code != EFB_OK) return code;
    int same_update = rx->in_session && rx->update_id == id && rx->base_id == base && rx->total == total &&
                      rx->encoding == encoding && rx->flags == flags &&
                      same(rx->update_hash, b + 18, EFB_DIGEST_BYTES);
    int resume = same_update && (!rx->cfg.key_len || (counter > rx->state.counter && counter >= rx->counter));
    if (!resume && rx->cfg.key_len && counter <= floor_of(rx)) return EFB_STALE;
    if (encoding == EFB_SPARSE_INT8 && base != efb_rx_active_id(rx)) return EFB_BASE_MISMATCH;
    if (!resume) {
        rx->have = 0;
        rx->nacked = 0;
    }
    rx->in_session = 1;
    rx->update_id = id;
    rx->base_id = base;
    rx->total = total;
    rx->encoding = encoding;
    rx->flags = flags;
    rx->counter = counter;
    memcpy(rx->update_hash, b + 18, EFB_DIGEST_BYTES);
    return EFB_OK;
}

static void on_begin(efb_rx *rx, uint16_t seq, const uint8_t *p) {
    efb_code code = begin(rx, p, T_BEGIN, p, BEGIN_BYTES, NULL, 0, (p[13] & SIGNED) ? p + BEGIN_BYTES : NULL);
    if (code == EFB_OK) send_ack(rx, seq);
    else send_error(rx, seq, code, T_BEGIN);
}

static void on_chunk(efb_rx *rx, uint16_t seq, const uint8_t *p, uint32_t n) {
    uint32_t offset = rd32(p), len = n - 4;
    if (!rx->in_session) {
        send_error(rx, seq, EFB_NOT_IN_SESSION, T_CHUNK);
    } else if (len > rx->total || offset > rx->total - len) {
        send_error(rx, seq, EFB_OUT_OF_BOUNDS, T_CHUNK);
    } else if (offset > rx->have) { /* a gap: NACK it once, then wait for have to move */
        if (rx->nacked && rx->nacked_at == rx->have) return;
        rx->nacked = 1;
        rx->nacked_at = rx->have;
        rx->last_error = EFB_GAP;
        uint8_t *r = reply_payload(rx);
        wr32(r, rx->have);
        r[4] = EFB_GAP;
        send(rx, T_NACK, seq, 5);
    } else {
        if (offset == rx->have) { /* below have: a duplicate, nothing written */
            memcpy(rx->cfg.staging + offset, p + 4, len);
            rx->have += len;
        }
        send_ack(rx, seq);
    }
}

/* Persist `next` (slot: the image that changed, or -1) and make it current; 0 if persisting failed. */
static int install(efb_rx *rx, efb_rx_state *next, int slot) {
    next->generation += 1;
    seal(next);
    if (rx->cfg.persist != NULL && rx->cfg.persist(rx->cfg.ctx, next, slot) != 0) return 0;
    rx->state = *next; /* the swap: from here on INFER runs next->active */
    return 1;
}

/* COMMIT (p, n bytes); `authenticated`: an UPDATE whose own hmac was verified by begin(). */
static efb_code commit(efb_rx *rx, const uint8_t *p, uint32_t n, int authenticated) {
    uint32_t id = rd32(p);
    const uint8_t *digest = p + 4;
    if (!rx->in_session) {
        if (id == efb_rx_active_id(rx) && same(digest, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES)) {
            return EFB_OK; /* a resent COMMIT of what is already active */
        }
        return EFB_NOT_IN_SESSION;
    }
    if (id != rx->update_id) return EFB_BAD_DIGEST;
    if (rx->have < rx->total) return EFB_INCOMPLETE;
    if (!authenticated) {
        uint8_t body[BEGIN_BYTES];
        int has_mac = n == COMMIT_BYTES + EFB_DIGEST_BYTES;
        if (((rx->flags & SIGNED) != 0) != has_mac) return EFB_BAD_LENGTH;
        session_body(rx, body);
        efb_code code = authentic(rx, T_COMMIT, body, sizeof body, p, COMMIT_BYTES, has_mac ? p + COMMIT_BYTES : NULL);
        if (code != EFB_OK) return code;
    }
    if (rx->cfg.key_len && rx->counter <= rx->state.counter) return EFB_STALE; /* a ROLLBACK came after BEGIN */
    rx->in_session = 0; /* from here on, any failure drops the staged update */
    uint8_t d[EFB_DIGEST_BYTES];
    sha256_of(rx->cfg.staging, rx->total, d);
    if (!same(d, rx->update_hash, EFB_DIGEST_BYTES)) return EFB_BAD_DIGEST; /* CHUNKs that BEGIN did not sign */
    if (rx->encoding == EFB_SPARSE_INT8 && rx->base_id != efb_rx_active_id(rx)) return EFB_BASE_MISMATCH;
    unsigned inactive = 1u - rx->state.active;
    rx->state.valid = (uint8_t)(rx->state.valid & ~(1u << inactive)); /* it is being overwritten */
    seal(&rx->state);
    float *slot = rx->cfg.slots[inactive];
    if (!decode_update(rx, slot)) return EFB_BAD_UPDATE;
    efb_rx_state next = rx->state;
    sha256_of(slot, rx->cfg.slot_size, next.digest[inactive]);
    if (!same(next.digest[inactive], digest, EFB_DIGEST_BYTES)) return EFB_BAD_DIGEST;
    next.ids[inactive] = rx->update_id;
    next.valid = (uint8_t)(next.valid | 1u << inactive);
    next.active = (uint8_t)inactive;
    if (rx->cfg.key_len) next.counter = rx->counter;
    return install(rx, &next, (int)inactive) ? EFB_OK : EFB_STORAGE;
}

/* UPDATE: BEGIN (total = the data's length, update hash = its SHA-256), CHUNK(0, data) and COMMIT
 * in one frame of n bytes, authenticated by its own hmac over everything but the hmac. */
static efb_code update(efb_rx *rx, const uint8_t *p, uint32_t n) {
    int is_signed = (p[9] & SIGNED) != 0;
    uint32_t fields = UPDATE_FIELDS + (is_signed ? EFB_DIGEST_BYTES : 0u);
    if (n <= fields) return EFB_BAD_LENGTH;
    const uint8_t *digest = p + 14, *data = p + fields;
    uint32_t len = n - fields;
    if (rd32(p) == efb_rx_active_id(rx) && same(digest, rx->state.digest[rx->state.active], EFB_DIGEST_BYTES)) {
        return EFB_OK; /* a resent UPDATE of what is already active: nothing changes */
    }
    uint8_t b[BEGIN_BYTES], c[COMMIT_BYTES];
    memcpy(b, p, 8); /* update_id, base_id */
    wr32(b + 8, len);
    b[12] = p[8];
    b[13] = p[9];
    memcpy(b + 14, p + 10, 4); /* counter */
    sha256_of(data, len, b + 18);
    efb_code code = begin(rx, b, T_UPDATE, p, UPDATE_FIELDS, data, len, is_signed ? p + UPDATE_FIELDS : NULL);
    if (code != EFB_OK) return code;
    memcpy(rx->cfg.staging, data, len); /* fits: begin checked total <= slot_size */
    rx->have = rx->total;
    memcpy(c, p, 4);
    memcpy(c + 4, digest, EFB_DIGEST_BYTES);
    return commit(rx, c, COMMIT_BYTES, 1);
}

/* ROLLBACK (p, n bytes: to_id, counter [, hmac]). */
static efb_code rollback(efb_rx *rx, const uint8_t *p, uint32_t n) {
    uint32_t to_id = rd32(p), counter = rd32(p + 4);
    efb_code code = authentic(rx, T_ROLLBACK, p, ROLLBACK_BYTES, NULL, 0, n > ROLLBACK_BYTES ? p + ROLLBACK_BYTES : NULL);
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

static void on_infer(efb_rx *rx, uint16_t seq, const uint8_t *p, uint32_t n) {
    uint32_t n_in = rx->cfg.layers[0].n_in, n_out = rx->cfg.layers[rx->cfg.n_layers - 1].n_out;
    float *x = rx->cfg.scratch, *y = x + n_in;
    if (n % 4u) {
        send_error(rx, seq, EFB_BAD_LENGTH, T_INFER);
        return;
    }
    if (n / 4u != n_in) {
        send_error(rx, seq, EFB_BAD_INPUT, T_INFER);
        return;
    }
    for (uint32_t i = 0; i < n_in; ++i) x[i] = f32_of(rd32(p + 4u * i));
    if (efb_rx_forward(rx, x, y) != EFB_OK) {
        send_error(rx, seq, EFB_BAD_INPUT, T_INFER);
        return;
    }
    uint8_t *r = reply_payload(rx);
    for (uint32_t j = 0; j < n_out; ++j) wr32(r + 4u * j, bits_of(y[j]));
    send(rx, T_OUTPUT, seq, 4u * n_out);
}

/* One message with a trusted header: check its payload length for the type, then act. */
static void dispatch(efb_rx *rx, uint8_t type, uint16_t seq, const uint8_t *p, uint32_t n) {
    int length_ok;
    switch (type) {
        case T_HELLO_REQ: case T_STATUS_REQ: length_ok = n == 0; break;
        case T_BEGIN: length_ok = n >= BEGIN_BYTES && n == BEGIN_BYTES + ((p[13] & SIGNED) ? EFB_DIGEST_BYTES : 0u); break;
        case T_CHUNK: length_ok = n >= 5; break;
        case T_COMMIT: length_ok = n == COMMIT_BYTES || n == COMMIT_BYTES + EFB_DIGEST_BYTES; break;
        case T_ROLLBACK: length_ok = n == ROLLBACK_BYTES || n == ROLLBACK_BYTES + EFB_DIGEST_BYTES; break;
        case T_INFER: length_ok = 1; break; /* checked by on_infer: BAD_LENGTH, then BAD_INPUT */
        case T_UPDATE: length_ok = n > UPDATE_FIELDS; break; /* and by update(), once the flags are read */
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
        case T_HELLO_REQ: send_hello(rx, seq); return;
        case T_STATUS_REQ: send_status(rx, seq); return;
        case T_BEGIN: on_begin(rx, seq, p); return;
        case T_CHUNK: on_chunk(rx, seq, p, n); return;
        case T_INFER: on_infer(rx, seq, p, n); return;
        case T_COMMIT: code = commit(rx, p, n, 0); break;
        case T_UPDATE: code = update(rx, p, n); break;
        default: code = rollback(rx, p, n); break;
    }
    if (code == EFB_OK) send_active(rx, seq);
    else send_error(rx, seq, code, type);
}

/* ---- frames (PROTOCOL.md §1) ---- */

static void drop(efb_rx *rx) {
    if (rx->dropped < 0xFFFFu) ++rx->dropped;
}

/* COBS-decode buf[0, len) in place; the decoded length, or -1 if it is not valid COBS. */
static long cobs_decode(uint8_t *buf, size_t len) {
    size_t in = 0, out = 0;
    while (in < len) {
        uint8_t code = buf[in++];
        if (code == 0 || (size_t)(code - 1u) > len - in) return -1;
        for (unsigned k = 1; k < code; ++k) buf[out++] = buf[in++]; /* out < in: moves down only */
        if (code != 0xFF && in < len) buf[out++] = 0;
    }
    return (long)out;
}

/* A complete record: checks in the order of §1; noise is dropped and counted, a trusted header
 * with a bad magic, version or length is answered with ERROR. */
static void on_record(efb_rx *rx) {
    uint8_t *f = rx->cfg.rx_buf;
    long decoded = cobs_decode(f, rx->record_len);
    if (decoded < OVERHEAD || decoded > (long)rx->cfg.max_frame) {
        drop(rx); /* BAD_COBS, BAD_LENGTH or TOO_LONG */
        return;
    }
    uint32_t len = (uint32_t)decoded;
    if (crc32(f, len - 4u) != rd32(f + len - 4u)) {
        drop(rx);
        return;
    }
    uint8_t type = f[3];
    uint16_t seq = rd16(f + 4);
    if (f[0] != 'E' || f[1] != 'B') send_error(rx, seq, EFB_BAD_MAGIC, type);
    else if (f[2] != EFB_VERSION) send_error(rx, seq, EFB_BAD_VERSION, type);
    else if (OVERHEAD + (uint32_t)rd16(f + 6) != len) send_error(rx, seq, EFB_BAD_LENGTH, type);
    else dispatch(rx, type, seq, f + HEADER, len - OVERHEAD);
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
