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

import numpy as np


class Backbone:
    """A model file's frozen front: one sample in, the head's input out. Its file (Split.backbone)
    has one input and one output; quantized inputs and outputs are handled here, so callers pass
    float32 samples and get float32 features."""

    sample_shape: tuple[int | None, ...]  # one sample's shape, without the batch dimension
    n_features: int

    def features(self, x: np.ndarray) -> np.ndarray:
        """The head's input for one checked sample (float32, of sample_shape), flat (n_features,)
        float32. The array may be the backbone's own output buffer: it holds until the next call."""
        raise NotImplementedError


class Identity(Backbone):
    """No backbone: the head starts at the model's input."""

    def __init__(self, sample_shape: tuple[int | None, ...], n_features: int):
        self.sample_shape, self.n_features = sample_shape, n_features

    def features(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1)


def sample_shape(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """One sample's shape from a model input's: the batch dimension dropped (a rank-1 input has none)."""
    return shape[1:] if len(shape) > 1 else shape


def batch_of_one(shape: tuple[int | None, ...], x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape for one sample of shape x_shape: a batch of one where the input has a batch."""
    return (1, *x_shape) if len(shape) > 1 else tuple(x_shape)
