#include "flash.h"

#include <string.h>

#include "semihost.h"

/* C99 compile-time check: a record copy fits its cell. */
typedef char record_fits_its_cell[sizeof(efb_rx_state) <= FLASH_RECORD_SPAN ? 1 : -1];

static int32_t handle = -1;
static uint32_t slot_bytes, cell_bytes;

static uint32_t slot_offset(int slot) { return 2u * FLASH_RECORD_SPAN + (uint32_t)slot * slot_bytes; }

static uint32_t cell_offset(uint32_t generation) { return slot_offset(2) + (generation % 2u) * cell_bytes; }

static flash_status put(uint32_t offset, const void *bytes, size_t n) {
    if (handle < 0) return FLASH_NO_FILE;
    return semihost_seek(handle, offset) == 0 && semihost_write(handle, bytes, n) == 0 ? FLASH_OK : FLASH_IO;
}

/* Read n bytes at offset; bytes past the end of the file read as zero. */
static flash_status get(uint32_t offset, void *bytes, size_t n) {
    memset(bytes, 0, n);
    if (handle < 0) return FLASH_NO_FILE;
    int32_t len = semihost_flen(handle);
    if (len < 0) return FLASH_IO;
    if ((uint32_t)len <= offset) return FLASH_OK;
    size_t have = (uint32_t)len - offset < n ? (uint32_t)len - offset : n;
    return semihost_seek(handle, offset) == 0 && semihost_read(handle, bytes, have) == 0 ? FLASH_OK : FLASH_IO;
}

flash_status flash_open(const char *path, uint32_t slot_size, uint32_t feedback_bytes) {
    slot_bytes = slot_size;
    cell_bytes = feedback_bytes;
    handle = semihost_open(path, SEMIHOST_UPDATE_BINARY);
    if (handle < 0) handle = semihost_open(path, SEMIHOST_CREATE_BINARY);
    return handle < 0 ? FLASH_NO_FILE : FLASH_OK;
}

flash_status flash_load(efb_rx_state *state, float *const slots[2], float *feedback, unsigned age) {
    efb_rx_state copy[2];
    flash_status status;
    for (uint32_t c = 0; c < 2; ++c) {
        if ((status = get(c * FLASH_RECORD_SPAN, &copy[c], sizeof copy[c])) != FLASH_OK) return status;
    }
    int ok_a = efb_rx_state_ok(&copy[0]), ok_b = efb_rx_state_ok(&copy[1]);
    if (age > 1 || (ok_a + ok_b) <= (int)age) return FLASH_NO_RECORD;
    unsigned newest = ok_b && (!ok_a || copy[1].generation > copy[0].generation) ? 1u : 0u;
    *state = copy[age == 0 ? newest : 1u - newest];
    for (int s = 0; s < 2; ++s) {
        if ((status = get(slot_offset(s), slots[s], slot_bytes)) != FLASH_OK) return status;
    }
    return cell_bytes > 0 ? get(cell_offset(state->generation), feedback, cell_bytes) : FLASH_OK;
}

flash_status flash_format(const float *factory) {
    static const uint8_t erased[2 * FLASH_RECORD_SPAN];
    flash_status status = put(0, erased, sizeof erased);
    return status != FLASH_OK ? status : flash_store_slot(0, factory);
}

flash_status flash_store_slot(int slot, const float *image) { return put(slot_offset(slot), image, slot_bytes); }

flash_status flash_store_feedback(uint32_t generation, const float *feedback) {
    return cell_bytes > 0 ? put(cell_offset(generation), feedback, cell_bytes) : FLASH_OK;
}

flash_status flash_store_state(const efb_rx_state *state) {
    return put((state->generation % 2u) * FLASH_RECORD_SPAN, state, sizeof *state);
}
