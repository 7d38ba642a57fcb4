#include "efb_update.h"

#include "efb_f16.h"
#include "efb_le.h"

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

/* A sparse tensor of n elements: t (the base) + (float)q * scale at the listed indices. Nothing
 * is written unless every gap parses and every index is < n. */
static int sparse(reader *r, float *t, uint32_t n) {
    const uint8_t *head = take(r, 8);
    if (head == NULL) return 0;
    uint32_t count = efb_rd32(head);
    float scale = efb_f32_of(efb_rd32(head + 4));
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

/* W (rows, cols) in int8: per-tensor or per-row float32 scales, then rows * cols int8 values. */
static int int8(reader *r, float *t, uint32_t rows, uint32_t cols, int per_row) {
    const uint8_t *scales = take(r, 4u * (per_row ? rows : 1u)), *q;
    if (scales == NULL || (q = take(r, (uint64_t)rows * cols)) == NULL) return 0;
    for (uint32_t i = 0; i < rows; ++i) {
        float scale = efb_f32_of(efb_rd32(scales + (per_row ? 4u * i : 0u)));
        for (uint32_t j = 0; j < cols; ++j) {
            size_t k = (size_t)i * cols + j;
            t[k] = (float)(int8_t)q[k] * scale;
        }
    }
    return 1;
}

static int f32(reader *r, float *t, uint32_t n) {
    const uint8_t *v = take(r, 4u * (uint64_t)n);
    if (v == NULL) return 0;
    for (uint32_t k = 0; k < n; ++k) t[k] = efb_f32_of(efb_rd32(v + 4u * k));
    return 1;
}

static int f16(reader *r, float *t, uint32_t n) {
    const uint8_t *v = take(r, 2u * (uint64_t)n);
    if (v == NULL) return 0;
    for (uint32_t k = 0; k < n; ++k) t[k] = efb_f16_to_f32(efb_rd16(v + 2u * k));
    return 1;
}

/* Layer l's W (rows, cols) at t and b (rows) at t + rows * cols. */
static int layer(reader *r, uint8_t encoding, float *t, uint32_t rows, uint32_t cols) {
    uint32_t n = rows * cols;
    switch (encoding) {
        case EFB_F32: return f32(r, t, n) && f32(r, t + n, rows);
        case EFB_F16: return f16(r, t, n + rows); /* W and b back to back, as in the image */
        case EFB_INT8_TENSOR:
        case EFB_INT8_CHANNEL: return int8(r, t, rows, cols, encoding == EFB_INT8_CHANNEL) && f32(r, t + n, rows);
        case EFB_SPARSE_INT8: return sparse(r, t, n) && sparse(r, t + n, rows);
        default: return 0;
    }
}

int efb_update_decode(const uint8_t *update, uint32_t n, uint8_t encoding, const edgefdfa_layer *layers,
                      size_t n_layers, float *image) {
    reader r = {update, 0, n};
    float *t = image;
    for (size_t l = 0; l < n_layers; ++l) {
        uint32_t rows = layers[l].n_out, cols = layers[l].n_in;
        if (!layer(&r, encoding, t, rows, cols)) return 0;
        t += (size_t)rows * cols + rows;
    }
    if (r.at != r.end) return 0;
    for (const float *v = image; v < t; ++v) {
        if (!efb_finite(*v)) return 0;
    }
    return 1;
}
