"""A dense head as a C header for firmware: `static const` arrays plus an `edgefdfa_layer` table
that firmware_bridge/c/edgefdfa_head.c runs.

float32 keeps the weights exactly (9 significant digits round-trip a float32). int8 follows the
TFLite quantisation spec for weights: symmetric, zero point 0, one scale per output channel
(scale_j = max|W_j| / 127); biases and activations stay float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..head import ACTIVATION_CODES, Dense, layers_of, quantize_per_channel, size


def c_header(head: Sequence[Dense], *, int8: bool = False, prefix: str = "edgefdfa_head", source: str = "") -> str:
    """The header text. Include it after edgefdfa_head.h; `<prefix>_layers` is the layer table."""
    guard = f"{prefix.upper()}_WEIGHTS_H"
    sizes = [head[0].W.shape[1]] + [layer.W.shape[0] for layer in head]
    lines = [
        f"/* {prefix}: a dense head exported by edgefdfa{' from ' + source if source else ''}.",
        f" * {len(head)} layers, sizes {' -> '.join(map(str, sizes))}; weights "
        + ("int8, symmetric, zero point 0, one float scale per output channel (TFLite spec)." if int8 else "float32.")
        + " Generated: do not edit. */",
        f"#ifndef {guard}", f"#define {guard}", "", '#include "edgefdfa_head.h"', "",
        f"#define {prefix.upper()}_N_LAYERS {len(head)}",
        f"#define {prefix.upper()}_N_INPUTS {sizes[0]}",
        f"#define {prefix.upper()}_N_OUTPUTS {sizes[-1]}",
        f"#define {prefix.upper()}_SCRATCH_LEN {2 * max(sizes[1:])}  /* floats edgefdfa_head_forward needs */",
        f"#define {prefix.upper()}_IMAGE_BYTES {4 * size(layers_of(head))}u  /* the float32 image */",
        "",
    ]
    table = []
    for l, layer in enumerate(head):
        n_out, n_in = layer.W.shape
        lines.append(f"/* layer {l}: W ({n_out}, {n_in}) row-major, b ({n_out}), {layer.activation} */")
        if int8:
            q, scale = quantize_per_channel(layer.W)
            lines.append(_array("int8_t", f"{prefix}_w{l}", q, str))
            lines.append(_array("float", f"{prefix}_w{l}_scale", scale, _c_float))
            weights = f"NULL, {prefix}_w{l}, {prefix}_w{l}_scale"
        else:
            lines.append(_array("float", f"{prefix}_w{l}", layer.W, _c_float))
            weights = f"{prefix}_w{l}, NULL, NULL"
        lines.append(_array("float", f"{prefix}_b{l}", layer.b, _c_float))
        table.append(f"    {{{n_in}u, {n_out}u, {weights}, {prefix}_b{l}, {ACTIVATION_CODES[layer.activation]}u, NULL, NULL}},")  # read-only: no w_learn
    lines += [f"static const edgefdfa_layer {prefix}_layers[{len(head)}] = {{", *table, "};", "", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _c_float(v: float) -> str:
    return f"{float(v):.9e}f"  # scientific keeps every literal a valid C float constant


def _array(ctype: str, name: str, values: np.ndarray, fmt) -> str:
    flat = [fmt(v) for v in np.asarray(values).ravel()]
    rows = [", ".join(flat[i:i + 8]) for i in range(0, len(flat), 8)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};"
