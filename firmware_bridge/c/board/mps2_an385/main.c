/* The bridge receiver on the MPS2 AN385: UART0 bytes in, efb_rx_feed, replies out on UART0, slots
 * persisted in the emulated flash (flash.h). The board learns (PROTOCOL.md §8; build with
 * -DBOARD_LEARNS=0 for one that does not): FDFA, cross-entropy, lr 0.05, alpha 0.003, sigma 1,
 * max_sumsq 1e30, seed 0, saving only on SAVE (-DBOARD_SAVE_EVERY=N: also every N steps).
 *
 * The factory weights are the head in factory_head.h (written by tools/build_firmware.py from the
 * shipped model with formats/c_header.py), and FACTORY_HEAD_IMAGE_BYTES is the slot size. At boot
 * the flash's current record and slots are restored (or the record before it, if the receiver
 * refuses the current one); a first boot, or a flash whose records it refuses, starts from the
 * factory weights and formats the flash. board_key.h (also written by build_firmware.py, with
 * --key) holds the pre-shared key of a KEYED device, or none.
 */
#include <string.h>

#include "board_key.h"
#include "edgefdfa_rx.h"
#include "factory_head.h"
#include "flash.h"
#include "semihost.h"
#include "uart.h"

#define MAX_FRAME 512u
#define BAUD 115200u
#define FLASH_FILE "flash.bin" /* in QEMU's working directory */
#define SLOT_FLOATS (FACTORY_HEAD_IMAGE_BYTES / 4u)
#define WIDEST (FACTORY_HEAD_SCRATCH_LEN / 2u) /* the widest layer output */
#ifndef BOARD_LEARNS
#define BOARD_LEARNS 1
#endif
#ifndef BOARD_SAVE_EVERY
#define BOARD_SAVE_EVERY 0u
#endif
/* FACTORY_HEAD_SUM_OUT, _SUM_HIDDEN: written into factory_head.h by tools/build_firmware.py */
#define FEEDBACK_LEN EFB_LEARNING_FEEDBACK_LEN(FACTORY_HEAD_N_OUTPUTS, FACTORY_HEAD_SUM_HIDDEN)
#define FEEDBACK_BYTES (BOARD_LEARNS ? 4u * FEEDBACK_LEN : 0u)

static float slots[2][SLOT_FLOATS];
static uint8_t staging[FACTORY_HEAD_IMAGE_BYTES];
static uint8_t rx_buf[EFB_BUF_SIZE(MAX_FRAME)], tx_buf[EFB_BUF_SIZE(MAX_FRAME)];
static float scratch[EFB_SCRATCH_LEN(FACTORY_HEAD_N_INPUTS, FACTORY_HEAD_N_OUTPUTS, WIDEST)];
static efb_rx rx;
#if BOARD_LEARNS
static float working[SLOT_FLOATS];
static float feedback[FEEDBACK_LEN + 1]; /* + 1: never a zero-length array (a one-layer head) */
static float u[EFB_LEARNING_U_LEN(FACTORY_HEAD_SUM_HIDDEN) + 1];
static float workspace[EDGEFDFA_LEARN_WORKSPACE_LEN(FACTORY_HEAD_SUM_OUT, FACTORY_HEAD_N_OUTPUTS)];
static const efb_learning_config learning = {
    .step = {.rule = EDGEFDFA_RULE_FDFA, .loss = EDGEFDFA_LOSS_CE, .lr = 0.05f, .alpha = 0.003f, .sigma = 1.0f,
             .max_sumsq = 1e30f},
    .seed = 0, .save_every = BOARD_SAVE_EVERY, .working = working, .feedback = feedback, .u = u,
    .workspace = workspace, .workspace_len = sizeof workspace / sizeof workspace[0],
};
#define LEARNING (&learning)
#define FEEDBACK feedback
#else
#define LEARNING NULL
#define FEEDBACK NULL
#endif

static void write_uart(void *ctx, const uint8_t *bytes, size_t n) {
    (void)ctx;
    uart_write(bytes, n);
}

/* The image first, then the feedback (its record's cell), the record last: a reset in between
 * leaves the old record current, with its own feedback cell. */
static int persist(void *ctx, const efb_rx_state *next, int slot) {
    (void)ctx;
    if (slot >= 0 && flash_store_slot(slot, slots[slot]) != FLASH_OK) return 1;
    if (flash_store_feedback(next->generation, FEEDBACK) != FLASH_OK) return 1;
    return flash_store_state(next) != FLASH_OK;
}

/* The factory head's image (W0 b0 W1 b1 ...) into slot 0. */
static void load_factory(void) {
    float *at = slots[0];
    for (uint32_t l = 0; l < FACTORY_HEAD_N_LAYERS; ++l) {
        const edgefdfa_layer *f = &factory_head_layers[l];
        memcpy(at, f->w_f32, sizeof(float) * f->n_out * f->n_in);
        at += f->n_out * f->n_in;
        memcpy(at, f->bias, sizeof(float) * f->n_out);
        at += f->n_out;
    }
}

static void log_hex(const char *what, uint32_t v) {
    char line[48];
    size_t n = strlen(what);
    memcpy(line, what, n);
    for (int i = 7; i >= 0; --i) line[n++] = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
    line[n++] = '\n';
    line[n] = '\0';
    semihost_puts(line);
}

/* Start the receiver from the flash's current record and slots if it accepts them, else from the
 * record before it (the current one's active slot damaged), else from the factory weights on a
 * freshly formatted flash (or, without a flash file, in RAM only). */
static efb_rx_status boot(efb_rx_config *config) {
    load_factory();
    if (flash_open(FLASH_FILE, FACTORY_HEAD_IMAGE_BYTES, FEEDBACK_BYTES) != FLASH_OK) {
        semihost_puts("board: cannot open " FLASH_FILE "; weights will not survive a reset\n");
        config->persist = NULL;
        return efb_rx_init(&rx, config, NULL);
    }
    efb_rx_state restored;
    for (unsigned age = 0; age < 2; ++age) {
        if (flash_load(&restored, config->slots, FEEDBACK, age) == FLASH_OK &&
            efb_rx_init(&rx, config, &restored) == EFB_RX_OK) {
            log_hex(age == 0 ? "board: restored update " : "board: current record refused; restored update ",
                    efb_rx_active_id(&rx));
            return EFB_RX_OK;
        }
    }
    load_factory(); /* flash_load overwrote the slots */
    if (flash_format(slots[0]) != FLASH_OK) {
        semihost_puts("board: cannot write " FLASH_FILE "\n");
        semihost_exit(1);
    }
    semihost_puts("board: factory weights\n");
    return efb_rx_init(&rx, config, NULL);
}

int main(void) {
    efb_rx_config config = {
        .layers = factory_head_layers, .n_layers = FACTORY_HEAD_N_LAYERS, .max_frame = MAX_FRAME,
        .encodings = EFB_ALL_ENCODINGS, .key = BOARD_KEY_LEN ? board_key : NULL, .key_len = BOARD_KEY_LEN,
        .slot_size = FACTORY_HEAD_IMAGE_BYTES,
        .slots = {slots[0], slots[1]}, .staging = staging, .rx_buf = rx_buf, .tx_buf = tx_buf,
        .scratch = scratch, .scratch_len = sizeof scratch / sizeof scratch[0],
        .write = write_uart, .persist = persist, .ctx = NULL, .learn = LEARNING,
    };
    efb_rx_status status = boot(&config);
    if (status != EFB_RX_OK) {
        log_hex("board: the receiver refused its configuration: efb_rx_status ", (uint32_t)status);
        semihost_exit(1);
    }
    uart_init(BAUD);
    for (;;) {
        uint8_t bytes[64];
        size_t n = uart_read(bytes, sizeof bytes);
        if (n > 0) {
            efb_rx_feed(&rx, bytes, n);
        } else {
            uart_wait();
        }
    }
}
