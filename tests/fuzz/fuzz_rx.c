/* libFuzzer harness for the C receiver (firmware_bridge/c/edgefdfa_rx.c): arbitrary bytes fed to
 * a device with or without a key, persisted through the hooks into an emulated flash, restarted
 * from it partway through the stream. Built with -fsanitize=fuzzer,address,undefined (tests/fuzz).
 *
 * Input: byte 0 picks the configuration (bit 0 keyed, bit 1 persist fails, bits 2-3 max_frame
 * 128/256/512/1024, bit 4 the device learns: FDFA, CE, its feedback persisted with each record), byte 1 where the stream restarts (the receiver is initialised again from what
 * it persisted, as after a reset), then the wire bytes. Beyond ASan and UBSan, the harness aborts on
 * a broken invariant:
 *   - every reply is one COBS record: no 0x00 but its last byte, at most EFB_BUF_SIZE(max_frame);
 *   - every persisted record passes efb_rx_state_ok, names this head, and its generation is the
 *     previous one + 1;
 *   - keyed: every persisted record has a security counter above the one before (no state change
 *     without a fresh counter); without a key the counter stays 0;
 *   - the receiver accepts at init what it persisted itself, and comes back with the same active id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgefdfa_rx.h"

#define N_LAYERS 2
#define SLOT_FLOATS (3 * 4 + 3 + 2 * 3 + 2) /* the small head of tests/firmware/test_receiver.py */
#define MAX_FRAME_CAP 1024u

static const edgefdfa_layer LAYERS[N_LAYERS] = {{.n_in = 4, .n_out = 3, .activation = EDGEFDFA_RELU},
                                                {.n_in = 3, .n_out = 2, .activation = EDGEFDFA_IDENTITY}};
static const uint8_t KEY[16] = {'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k', 'k'};

static float slots[2][SLOT_FLOATS], flash_slots[2][SLOT_FLOATS];
static uint8_t staging[4 * SLOT_FLOATS];
static uint8_t rx_buf[EFB_BUF_SIZE(MAX_FRAME_CAP)], tx_buf[EFB_BUF_SIZE(MAX_FRAME_CAP)];
static float scratch[EFB_SCRATCH_LEN(4, 2, 3)];
/* learning: the working copy, the feedback (K 2 x hidden 3), u and the kernel's workspace */
static float working[SLOT_FLOATS], feedback[EFB_LEARNING_FEEDBACK_LEN(2, 3)], flash_feedback[2][6], u[3];
static float workspace[EDGEFDFA_LEARN_WORKSPACE_LEN(5, 2)];
static const efb_learning_config LEARN = {{EDGEFDFA_RULE_FDFA, EDGEFDFA_LOSS_CE, 0.1f, 0.003f, 1.0f, 1e30f}, 0, 3,
                                          working, feedback, u, workspace, sizeof workspace / sizeof workspace[0]};

typedef struct {
    uint16_t max_frame;
    int keyed, fail, learns;
    int stored;               /* a record has been persisted */
    efb_rx_state record;      /* the flash: the last persisted record and slots */
} flash;

static void check(int ok) {
    if (!ok) abort();
}

static void on_reply(void *ctx, const uint8_t *bytes, size_t n) {
    const flash *f = ctx;
    check(n >= 2 && n <= EFB_BUF_SIZE((size_t)f->max_frame) && bytes[n - 1] == 0);
    check(memchr(bytes, 0, n - 1) == NULL);
}

static int on_persist(void *ctx, const efb_rx_state *next, int slot) {
    flash *f = ctx;
    check(efb_rx_state_ok(next));
    check(slot >= -1 && slot <= 1);
    if (f->stored) {
        check(next->generation == f->record.generation + 1u && next->model_id == f->record.model_id);
        check(f->keyed ? next->counter > f->record.counter : next->counter == 0);
    } else {
        check(next->generation == 1u && (f->keyed ? next->counter > 0 : next->counter == 0));
    }
    if (f->fail) return 1;
    if (slot >= 0) memcpy(flash_slots[slot], slots[slot], sizeof slots[slot]);
    if (f->learns) memcpy(flash_feedback[next->generation % 2u], feedback, sizeof feedback);
    f->record = *next;
    f->stored = 1;
    return 0;
}

/* The first boot: the factory weights in slot 0 (in RAM and on the flash), slot 1 empty. */
static void factory(void) {
    for (unsigned i = 0; i < SLOT_FLOATS; ++i) slots[0][i] = (float)i / 10.0f;
    memset(slots[1], 0, sizeof slots[1]);
    memcpy(flash_slots, slots, sizeof slots);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    static const uint16_t frames[4] = {128, 256, 512, 1024};
    flash f;
    memset(&f, 0, sizeof f);
    f.keyed = data[0] & 1;
    f.fail = (data[0] >> 1) & 1;
    f.max_frame = frames[(data[0] >> 2) & 3];
    f.learns = (data[0] >> 4) & 1;
    size_t n = size - 2, cut = n * data[1] / 255u;
    const uint8_t *wire = data + 2;

    efb_rx_config cfg = {LAYERS, N_LAYERS, f.max_frame, EFB_ALL_ENCODINGS, f.keyed ? KEY : NULL,
                         f.keyed ? sizeof KEY : 0, 4 * SLOT_FLOATS, {slots[0], slots[1]}, staging, rx_buf, tx_buf,
                         scratch, sizeof scratch / sizeof scratch[0], on_reply, on_persist, &f, f.learns ? &LEARN : NULL};
    static efb_rx rx;
    factory();
    check(efb_rx_init(&rx, &cfg, NULL) == EFB_RX_OK);
    efb_rx_feed(&rx, wire, cut);
    check(efb_rx_state_ok(efb_rx_state_of(&rx)));

    /* a reset: RAM is lost, the receiver starts again from the flash */
    uint32_t active = efb_rx_active_id(&rx);
    if (f.stored) {
        memcpy(slots, flash_slots, sizeof slots);
        memcpy(feedback, flash_feedback[f.record.generation % 2u], sizeof feedback);
        check(efb_rx_init(&rx, &cfg, &f.record) == EFB_RX_OK);
        check(efb_rx_active_id(&rx) == active);
    } else {
        factory();
        check(efb_rx_init(&rx, &cfg, NULL) == EFB_RX_OK && active == 0);
    }
    efb_rx_feed(&rx, wire + cut, n - cut);
    check(efb_rx_state_ok(efb_rx_state_of(&rx)));
    return 0;
}
