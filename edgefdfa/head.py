"""The dense head's shared vocabulary, below both edgefdfa and firmware_bridge: a dense layer, the
activation codes of firmware_bridge/c/edgefdfa_head.h, the layer table, and the weight image.

The weight image is a head's tensors W0, b0, W1, b1, ... (W (n_out, n_in) row-major, b (n_out,))
as one flat float32 array: what a device keeps in a slot and digests (PROTOCOL.md §3), what the C
header's `_IMAGE_BYTES` counts, and the order a bundle stores. This module imports only NumPy, so
the bridge can use it without the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ACTIVATION_CODES = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}  # name -> edgefdfa_activation
ACTIVATION_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}  # edgefdfa_activation -> name


@dataclass
class Dense:
    """One dense layer of a head, in the engine's convention: y = f(W x + b)."""

    W: np.ndarray  # (n_out, n_in) float32
    b: np.ndarray  # (n_out,) float32
    activation: str  # identity | relu | tanh | sigmoid
    where: str  # where it sits in the file, for messages: "node 'fc1' (Gemm)", "operator 7 (FULLY_CONNECTED)"
    form: str = "float32"  # how the file stores it: one of formats.base.FORMS; W and b here are always dequantized float32


@dataclass(frozen=True)
class Layer:
    """One row of a head's layer table (HELLO's, PROTOCOL.md §2): W (n_out, n_in), b (n_out), an activation code."""

    n_out: int
    n_in: int
    activation: int  # ACTIVATION_CODES: 0 identity, 1 relu, 2 tanh, 3 sigmoid


def layers_of(head: Sequence[Dense]) -> tuple[Layer, ...]:
    """The layer table of a head of Dense layers."""
    return tuple(Layer(*d.W.shape, ACTIVATION_CODES[d.activation]) for d in head)


def shapes(layers: Sequence[Layer]) -> list[tuple[int, ...]]:
    """The tensor table: W (n_out, n_in), b (n_out,) per layer, in image order."""
    return [s for l in layers for s in ((l.n_out, l.n_in), (l.n_out,))]


def size(layers: Sequence[Layer]) -> int:
    """Float32 values in an image (its bytes, a device's slot_size, are 4x this)."""
    return sum(l.n_out * (l.n_in + 1) for l in layers)


def tensors(image: np.ndarray, layers: Sequence[Layer]) -> list[np.ndarray]:
    """Views of W0, b0, W1, b1, ... into `image` (no copies)."""
    views, at = [], 0
    for shape in shapes(layers):
        n = int(np.prod(shape))
        views.append(image[at:at + n].reshape(shape))
        at += n
    return views


def image_of(head: Sequence[Dense]) -> np.ndarray:
    """A head's weights as an image: (size,) float32."""
    return np.concatenate([np.asarray(a, np.float32).ravel() for d in head for a in (d.W, d.b)])


def quantize_per_channel(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 W, float32 scale per row): W ~= scale[:, None] * q, with q in [-127, 127]. The TFLite
    spec's weights (symmetric, zero point 0), as the int8 C header and the bridge's INT8_CHANNEL send them."""
    peak = np.abs(W).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(W / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale
