#include "efb_state.h"

#include <stddef.h>

#include "efb_crc32.h"

static uint32_t crc_of(const efb_rx_state *s) { return efb_crc32((const uint8_t *)s, offsetof(efb_rx_state, crc)); }

int efb_rx_state_ok(const efb_rx_state *s) {
    return s != NULL && s->magic == EFB_STATE_MAGIC && s->version == EFB_STATE_VERSION && s->active <= 1 &&
           (s->valid & (1u << s->active)) && (s->valid & ~3u) == 0 && s->crc == crc_of(s);
}

void efb_rx_state_seal(efb_rx_state *s) { s->crc = crc_of(s); }
