"""The device's view of a weight image (edgefdfa/head.py, PROTOCOL.md §3): its digest and the
head's forward pass over it, computed as the C receiver computes them (float32, IEEE), so the host
and the emulator know exactly what a device answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from edgefdfa.head import Layer, tensors

ACTIVATIONS = {  # code -> f, the codes of c/edgefdfa_head.h
    0: lambda a: a,
    1: lambda a: np.maximum(a, np.float32(0)),
    2: np.tanh,
    3: lambda a: np.float32(1) / (np.float32(1) + np.exp(-a)),
}


def digest(image: np.ndarray) -> bytes:
    """SHA-256 of the image's little-endian float32 bytes."""
    return hashlib.sha256(np.asarray(image, "<f4").tobytes()).digest()


def forward(image: np.ndarray, layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """The head's output for one input x (n_in,), computed in float32: y = f(W h + b) per layer.
    Huge finite inputs may overflow to inf, as on the device (IEEE float32, no warning)."""
    h = np.asarray(x, np.float32)
    views = tensors(image, layers)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer, W, b in zip(layers, views[::2], views[1::2]):
            h = ACTIVATIONS[layer.activation](W @ h + b).astype(np.float32)
    return h
