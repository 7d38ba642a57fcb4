/* efb_f16: IEEE binary16 to float32, for the F16 update encoding (PROTOCOL.md §4). */
#ifndef EFB_F16_H
#define EFB_F16_H

#include <stdint.h>

/* The float32 equal to the binary16 with bits h, exactly: every binary16 value, subnormals
 * included, is a float32; inf and NaN stay inf and NaN (the caller refuses them). */
float efb_f16_to_f32(uint16_t h);

#endif
