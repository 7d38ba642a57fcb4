"""What an interpreter backend provides: run a model file's bytes, as a whole (`Session`) or as the
frozen feature extractor in front of a trainable head (`Backbone`).

Every backend module (onnx.py, tflite.py) provides:

    NAME: str                  which interpreter runs ("onnxruntime" / "litert" / "tflite_runtime" / "tensorflow")
    Session(model: bytes, threads: int = 1, name: str = "model")
        input: TensorInfo; output: TensorInfo (its first output)
        run(x) -> np.ndarray: the first output for x shaped like the declared input (batch dimension
        included; a dynamic dimension takes x as given), as a new float32 array (quantized outputs
        dequantized). A wrong shape is a BadModelError naming both shapes, never an interpreter crash.
    Backbone(model: bytes, threads: int = 1, name: str = "model"), a subclass of `Backbone` below.

Threads are set explicitly (Pi-class devices have few, slow cores).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import BadSampleError

_F32 = np.dtype(np.float32)


class Backbone:
    """A model file's frozen front: one sample in, the head's input out. Its file (Split.backbone)
    has one input and one output; quantized inputs and outputs are handled here, so callers pass
    float32 samples and get float32 features."""

    sample_shape: tuple[int | None, ...]  # one sample's shape, without the batch dimension
    n_features: int

    def features(self, x: Any) -> np.ndarray:
        """The head's input for one sample (any array-like of numbers of sample_shape; checked as
        check_sample does), flat (n_features,) float32. The array may be the backbone's own output
        buffer: it holds until the next call."""
        raise NotImplementedError


class Identity(Backbone):
    """No backbone: the head starts at the model's input."""

    def __init__(self, sample_shape: tuple[int | None, ...], n_features: int, name: str = "model"):
        self.sample_shape, self.n_features, self.name = sample_shape, n_features, name

    def features(self, x: Any) -> np.ndarray:
        return check_sample(x, self.sample_shape, self.name).reshape(-1)


def sample_shape(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """One sample's shape from a model input's: the batch dimension dropped (a rank-1 input has none)."""
    return shape[1:] if len(shape) > 1 else shape


def batch_of_one(shape: tuple[int | None, ...], x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape for one sample of shape x_shape: a batch of one where the input has a batch."""
    return (1, *x_shape) if len(shape) > 1 else tuple(x_shape)


def check_sample(x: Any, shape: tuple[int | None, ...], name: str) -> np.ndarray:
    """x as a float32 array of one sample's shape (None: any size), finite; x itself when it is one.
    Anything else is a BadSampleError naming what is wrong."""
    if type(x) is not np.ndarray or x.dtype is not _F32:
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise BadSampleError(f"input has dtype {x.dtype}; {name} takes numbers")
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
            x = x.astype(np.float32)
    if x.shape != shape and (len(x.shape) != len(shape) or any(d is not None and d != n for d, n in zip(shape, x.shape))):
        expected = tuple("?" if d is None else d for d in shape)
        raise BadSampleError(f"input has shape {x.shape}; {name} takes one sample of shape {expected}")
    # one dot product: NaN * 0 and Inf * 0 are NaN, any finite value * 0 is 0
    if not math.isfinite(np.vdot(x, np.zeros(x.shape, np.float32))):
        raise BadSampleError(f"input holds NaN or Inf at {np.argwhere(~np.isfinite(x))[0].tolist()}")
    return x
