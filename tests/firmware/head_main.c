/* Test driver: reads float32 samples from stdin, writes the head's float32 outputs to stdout.
 * Built against a header exported as head.h (prefix "head"). */
#include <stdio.h>

#include "edgefdfa_head.h"
#include "head.h"

int main(void) {
    float x[HEAD_N_INPUTS], y[HEAD_N_OUTPUTS], scratch[HEAD_SCRATCH_LEN];
    while (fread(x, sizeof x[0], HEAD_N_INPUTS, stdin) == HEAD_N_INPUTS) {
        edgefdfa_head_status status = edgefdfa_head_forward(head_layers, HEAD_N_LAYERS, x, y, scratch, HEAD_SCRATCH_LEN);
        if (status != EDGEFDFA_HEAD_OK) {
            fprintf(stderr, "edgefdfa_head_forward failed: %d\n", (int)status);
            return 1;
        }
        fwrite(y, sizeof y[0], HEAD_N_OUTPUTS, stdout);
    }
    return 0;
}
