"""The weight image (PROTOCOL.md §3): a head's tensors W0, b0, W1, b1, ... as one flat float32
array, the unit a device keeps in a slot, digests and runs.

Like the engine's flat parameter store, the image is allocated once and every tensor is a view
into it, so an update is a byte range and a digest is one hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefdfa.export import head_of
from edgefdfa.formats import bundle
from edgefdfa.formats.base import Dense
from edgefdfa.formats.c_header import ACTIVATION_CODES
from edgefdfa.model import load, load_checkpoint

from .protocol import Layer

ACTIVATIONS = {  # code -> f, the codes of c/edgefdfa_head.h
    0: lambda a: a,
    1: lambda a: np.maximum(a, np.float32(0)),
    2: np.tanh,
    3: lambda a: np.float32(1) / (np.float32(1) + np.exp(-a)),
}


def layers_of(head: Sequence[Dense]) -> tuple[Layer, ...]:
    """The layer table of a head of Dense layers."""
    return tuple(Layer(*d.W.shape, ACTIVATION_CODES[d.activation]) for d in head)


def shapes(layers: Sequence[Layer]) -> list[tuple[int, ...]]:
    """The tensor table: W (n_out, n_in), b (n_out) per layer, in image order."""
    return [s for l in layers for s in ((l.n_out, l.n_in), (l.n_out,))]


def size(layers: Sequence[Layer]) -> int:
    """Float32 values in an image (slot_size is 4x this)."""
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


def head_from(path: str) -> list[Dense]:
    """The head of a head bundle (formats/bundle.py), a checkpoint or an .onnx/.tflite model file."""
    data = Path(path).read_bytes()
    if data[:4] == bundle.MAGIC:
        t = bundle.unpack(data, path)
        names = {code: name for name, code in ACTIVATION_CODES.items()}
        return [Dense(t[f"W{l}"], t[f"b{l}"], names[int(a)], f"layer {l}") for l, a in enumerate(t["activations"])]
    obj = load(path) if Path(path).suffix.lower() in (".onnx", ".tflite") else load_checkpoint(path)
    return head_of(obj)[0]
