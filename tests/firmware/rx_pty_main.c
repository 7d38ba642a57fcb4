/* Test device: the C receiver (firmware_bridge/c/edgefdfa_rx.c) on a pseudo-terminal or on
 * stdin/stdout, with its slots and state record persisted in a file as firmware would in flash.
 *
 *   rx_pty_main HEAD STATE (--pty PATH | --cases) [--key FILE] [--max-frame N] [--encodings MASK]
 *               [--fail-persist] [--learn [--rule fdfa|dfa|bp] [--loss ce|mse] [--lr X] [--alpha X]
 *               [--sigma X] [--max-sumsq X] [--seed N] [--save-every N]]
 *
 * HEAD: the layer table as HELLO sends it (u8 n_layers, then u16 n_out, u16 n_in, u8 activation
 * each) followed by the factory image (float32). STATE: record | slot 0 | slot 1, created from the
 * factory weights if missing, restored if present ("-": keep nothing). --pty serves a pty slave
 * until SIGTERM (prints "ready" once listening). --cases (with STATE "-") answers test cases on
 * stdin until EOF, each a u32 length and that many bytes of wire: a fresh receiver on the factory
 * weights is fed them, and stdout gets u32 length | its replies | the active image afterwards.
 * --fail-persist makes every persist fail.
 *
 * --learn makes a learning device (PROTOCOL.md §8; efb_learning.h), by default the board's: FDFA,
 * cross-entropy, lr 0.05, alpha 0.003, sigma 1, max_sumsq 1e30, seed 0, save_every 0. STATE then
 * also holds two feedback cells after the slots (record | slot 0 | slot 1 | cell 0 | cell 1, each
 * cell the feedback's floats), the record's feedback in cell generation % 2. With --cases, each
 * answer also carries the working copy (slot_size bytes) and the feedback after the active image.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "edgefdfa_rx.h"

static volatile sig_atomic_t stopping = 0;

typedef struct {
    int out_fd;    /* replies go here, or into `out` if -1 */
    uint8_t *out;
    size_t out_len, out_cap;
    int state_fd;  /* the persistence file, or -1 */
    int fail_persist;
    float *slots[2];
    uint32_t slot_size;
    const float *feedback; /* a learning device's, else NULL */
    size_t feedback_bytes; /* of one feedback cell */
} device;

static void on_sigterm(int sig) {
    (void)sig;
    stopping = 1;
}

static void die(const char *what) {
    fprintf(stderr, "rx_pty_main: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(2);
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_at(int fd, off_t at, const void *p, size_t n) {
    return lseek(fd, at, SEEK_SET) == at && write_all(fd, p, n) == 0 ? 0 : -1;
}

static void reply(void *ctx, const uint8_t *bytes, size_t n) {
    device *d = ctx;
    if (d->out_fd >= 0) {
        if (write_all(d->out_fd, bytes, n) != 0) die("writing a reply");
        return;
    }
    while (d->out_len + n > d->out_cap) {
        d->out_cap = d->out_cap ? 2 * d->out_cap : 4096;
        if ((d->out = realloc(d->out, d->out_cap)) == NULL) die("out of memory");
    }
    memcpy(d->out + d->out_len, bytes, n);
    d->out_len += n;
}

/* Where the feedback cell of a record of this generation lives in the state file. */
static off_t cell_at(const device *d, uint32_t generation) {
    return (off_t)(sizeof(efb_rx_state) + 2u * (size_t)d->slot_size + (generation % 2u) * d->feedback_bytes);
}

/* The image first, then the feedback (its record's cell), then the record, each synced: a kill at any
 * point leaves the old record, and the old record's cell. */
static int persist(void *ctx, const efb_rx_state *next, int slot) {
    device *d = ctx;
    if (d->fail_persist) return -1;
    if (d->state_fd < 0) return 0;
    if (slot >= 0 && (write_at(d->state_fd, (off_t)(sizeof *next + (size_t)slot * d->slot_size), d->slots[slot],
                               d->slot_size) != 0 || fsync(d->state_fd) != 0)) {
        return -1;
    }
    if (d->feedback_bytes > 0 && (write_at(d->state_fd, cell_at(d, next->generation), d->feedback,
                                           d->feedback_bytes) != 0 || fsync(d->state_fd) != 0)) {
        return -1;
    }
    return write_at(d->state_fd, 0, next, sizeof *next) == 0 && fsync(d->state_fd) == 0 ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    size_t k;
    while (buf != NULL && (k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf == NULL) die("out of memory");
    *n = len;
    return buf;
}

static int read_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = read(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* --cases: each case a fresh receiver on the factory weights; see the top of this file. */
static int serve_cases(efb_rx *rx, const efb_rx_config *cfg, device *d, const uint8_t *factory) {
    uint32_t n;
    uint8_t *wire = NULL;
    while (read_all(0, &n, sizeof n) == 0) {
        if ((wire = realloc(wire, n ? n : 1)) == NULL) die("out of memory");
        if (read_all(0, wire, n) != 0) die("a case ends early");
        memcpy(d->slots[0], factory, d->slot_size);
        memset(d->slots[1], 0, d->slot_size);
        if (efb_rx_init(rx, cfg, NULL) != EFB_RX_OK) die("efb_rx_init");
        d->out_len = 0;
        efb_rx_feed(rx, wire, n);
        uint32_t len = (uint32_t)d->out_len;
        if (write_all(1, &len, sizeof len) != 0 || write_all(1, d->out, d->out_len) != 0 ||
            write_all(1, efb_rx_active_weights(rx), d->slot_size) != 0) {
            die("writing a case's answer");
        }
        if (cfg->learn != NULL && (write_all(1, cfg->learn->working, d->slot_size) != 0 ||
                                   write_all(1, d->feedback, d->feedback_bytes) != 0)) {
            die("writing a case's answer");
        }
    }
    return 0;
}

static void set_raw(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0) die("tcgetattr");
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &t) != 0) die("tcsetattr");
}

int main(int argc, char **argv) {
    const char *pty = NULL, *key_path = NULL;
    int cases = 0, fail_persist = 0, learns = 0;
    long max_frame = 1024, encodings = EFB_ALL_ENCODINGS;
    efb_learning_config learn = {{EDGEFDFA_RULE_FDFA, EDGEFDFA_LOSS_CE, 0.05f, 0.003f, 1.0f, 1e30f}, 0, 0,
                                 NULL, NULL, NULL, NULL, 0}; /* the board's */
    if (argc < 3) die("usage: rx_pty_main HEAD STATE (--pty PATH | --cases) [--key FILE] [--max-frame N] ...");
    for (int i = 3; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cases")) cases = 1;
        else if (!strcmp(a, "--fail-persist")) fail_persist = 1;
        else if (!strcmp(a, "--learn")) learns = 1;
        else if (v == NULL) die("an option is missing its value");
        else if (!strcmp(a, "--pty")) pty = v, ++i;
        else if (!strcmp(a, "--key")) key_path = v, ++i;
        else if (!strcmp(a, "--max-frame")) max_frame = strtol(v, NULL, 0), ++i;
        else if (!strcmp(a, "--encodings")) encodings = strtol(v, NULL, 0), ++i;
        else if (!strcmp(a, "--rule")) {
            learn.step.rule = !strcmp(v, "fdfa") ? EDGEFDFA_RULE_FDFA : !strcmp(v, "dfa") ? EDGEFDFA_RULE_DFA
                              : !strcmp(v, "bp") ? EDGEFDFA_RULE_BP : 255;
            ++i;
        } else if (!strcmp(a, "--loss")) {
            learn.step.loss = !strcmp(v, "ce") ? EDGEFDFA_LOSS_CE : !strcmp(v, "mse") ? EDGEFDFA_LOSS_MSE : 255;
            ++i;
        }
        else if (!strcmp(a, "--lr")) learn.step.lr = strtof(v, NULL), ++i;
        else if (!strcmp(a, "--alpha")) learn.step.alpha = strtof(v, NULL), ++i;
        else if (!strcmp(a, "--sigma")) learn.step.sigma = strtof(v, NULL), ++i;
        else if (!strcmp(a, "--max-sumsq")) learn.step.max_sumsq = strtof(v, NULL), ++i;
        else if (!strcmp(a, "--seed")) learn.seed = (uint32_t)strtoul(v, NULL, 0), ++i;
        else if (!strcmp(a, "--save-every")) learn.save_every = (uint32_t)strtoul(v, NULL, 0), ++i;
        else die("unknown option");
    }
    if (cases == (pty != NULL)) die("give exactly one of --pty PATH and --cases");
    if (cases && strcmp(argv[2], "-") != 0) die("--cases keeps no state: give STATE -");
    if (max_frame < EFB_MIN_FRAME || max_frame > EFB_MAX_FRAME) die("--max-frame is outside 128..4096");

    size_t head_len, key_len = 0;
    uint8_t *head = read_file(argv[1], &head_len), *key = NULL;
    if (head == NULL || head_len < 1 || head_len < 1u + 5u * head[0]) die("cannot read the head file");
    static edgefdfa_layer layers[EFB_MAX_LAYERS];
    uint8_t n_layers = head[0];
    if (n_layers > EFB_MAX_LAYERS) die("too many layers");
    uint32_t slot_size = 0;
    for (unsigned l = 0; l < n_layers; ++l) {
        const uint8_t *p = head + 1 + 5 * l;
        layers[l] = (edgefdfa_layer){.n_in = (uint32_t)(p[2] | p[3] << 8), .n_out = (uint32_t)(p[0] | p[1] << 8),
                                     .activation = p[4]};
        slot_size += EFB_LAYER_BYTES(layers[l].n_out, layers[l].n_in);
    }
    size_t table = 1u + 5u * n_layers;
    if (head_len != table + slot_size) die("the head file's image does not match its layer table");
    if (key_path != NULL && (key = read_file(key_path, &key_len)) == NULL) die("cannot read the key file");

    device d = {-1, NULL, 0, 0, -1, fail_persist, {malloc(slot_size), malloc(slot_size)}, slot_size, NULL, 0};
    size_t buf_size = EFB_BUF_SIZE((size_t)max_frame), scratch_len = 0;
    for (unsigned l = 0; l < n_layers; ++l) scratch_len += 3u * layers[l].n_out; /* >= the widest's twice + output */
    scratch_len += layers[0].n_in;
    efb_rx_config cfg = {layers, n_layers, (uint16_t)max_frame, (uint8_t)encodings, key, key_len, slot_size,
                         {d.slots[0], d.slots[1]}, malloc(slot_size), malloc(buf_size), malloc(buf_size),
                         malloc(scratch_len * sizeof(float)), scratch_len, reply, persist, &d, NULL};
    if (!d.slots[0] || !d.slots[1] || !cfg.staging || !cfg.rx_buf || !cfg.tx_buf || !cfg.scratch) die("out of memory");
    if (learns) { /* every buffer at least one float, so none is NULL for a one-layer head */
        size_t sum_out = 0, sum_hidden = 0, k = layers[n_layers - 1].n_out;
        for (unsigned l = 0; l < n_layers; ++l) sum_out += layers[l].n_out;
        sum_hidden = sum_out - k;
        size_t feedback_len = EFB_LEARNING_FEEDBACK_LEN(k, sum_hidden);
        learn.working = malloc(slot_size);
        learn.feedback = calloc(feedback_len + 1, sizeof(float));
        learn.u = calloc(EFB_LEARNING_U_LEN(sum_hidden) + 1, sizeof(float));
        learn.workspace_len = EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, k);
        learn.workspace = calloc(learn.workspace_len, sizeof(float));
        if (!learn.working || !learn.feedback || !learn.u || !learn.workspace) die("out of memory");
        d.feedback = learn.feedback;
        d.feedback_bytes = sizeof(float) * feedback_len;
        cfg.learn = &learn;
    }

    efb_rx_state stored;
    const efb_rx_state *restored = NULL;
    const char *state_path = argv[2];
    if (strcmp(state_path, "-") != 0) {
        d.state_fd = open(state_path, O_RDWR | O_CREAT, 0644);
        if (d.state_fd < 0) die("cannot open the state file");
        off_t size = lseek(d.state_fd, 0, SEEK_END);
        if (size == cell_at(&d, 0) + (off_t)(2u * d.feedback_bytes)) {
            if (lseek(d.state_fd, 0, SEEK_SET) != 0 || read(d.state_fd, &stored, sizeof stored) != (ssize_t)sizeof stored ||
                read(d.state_fd, d.slots[0], slot_size) != (ssize_t)slot_size ||
                read(d.state_fd, d.slots[1], slot_size) != (ssize_t)slot_size ||
                lseek(d.state_fd, cell_at(&d, stored.generation), SEEK_SET) != cell_at(&d, stored.generation) ||
                read(d.state_fd, learn.feedback, d.feedback_bytes) != (ssize_t)d.feedback_bytes) {
                die("cannot read the state file");
            }
            restored = &stored;
        } else if (size != 0) {
            errno = 0;
            die("the state file has the wrong size for this head");
        }
    }
    if (restored == NULL) {
        memcpy(d.slots[0], head + table, slot_size);
        memset(d.slots[1], 0, slot_size);
    }
    efb_rx rx;
    efb_rx_status status = efb_rx_init(&rx, &cfg, restored);
    if (status != EFB_RX_OK) {
        fprintf(stderr, "rx_pty_main: efb_rx_init failed: %d\n", (int)status);
        return 3;
    }
    if (d.state_fd >= 0 && restored == NULL) { /* a new file: the factory state, both slots, both cells */
        if (write_at(d.state_fd, (off_t)sizeof stored, d.slots[0], slot_size) != 0 ||
            write_all(d.state_fd, d.slots[1], slot_size) != 0 ||
            write_all(d.state_fd, learn.feedback, d.feedback_bytes) != 0 ||
            write_all(d.state_fd, learn.feedback, d.feedback_bytes) != 0 ||
            write_at(d.state_fd, 0, efb_rx_state_of(&rx), sizeof stored) != 0 || fsync(d.state_fd) != 0) {
            die("cannot write the state file");
        }
    }

    if (cases) return serve_cases(&rx, &cfg, &d, head + table);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm; /* no SA_RESTART: read() returns EINTR and the loop ends */
    sigaction(SIGTERM, &sa, NULL);
    int fd = d.out_fd = open(pty, O_RDWR | O_NOCTTY);
    if (fd < 0) die("cannot open the pty");
    set_raw(fd);
    printf("ready\n");
    fflush(stdout);
    uint8_t buf[4096];
    while (!stopping) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EIO) break; /* the pty's other side went away */
        if (k < 0) die("read");
        if (k == 0) break;
        efb_rx_feed(&rx, buf, (size_t)k);
    }
    return 0;
}
