"""A model file split into a frozen backbone, run in the file's own interpreter, and a trainable
dense head, run and trained by the engine:

    model = edgefdfa.load("imu.onnx")           # or .tflite; head=N takes the trailing N dense layers
    model.predict_one(window); model.learn_one(window, label)
    model.save("imu-adapted.npz")               # the checkpoint carries the source file: self-contained

Formats and backends are plugins chosen by the file's suffix (formats/<name>.py, backends/<name>.py).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import checkpoint
from .errors import BadModelError, BadSampleError, ConfigError
from .formats.base import Dense, Split
from .learner import Learner, LearnerConfig

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


def format_module(suffix: str) -> ModuleType:
    return importlib.import_module(f"edgefdfa.formats.{FORMATS[suffix]}")


def backend_module(suffix: str) -> ModuleType:
    return importlib.import_module(f"edgefdfa.backends.{FORMATS[suffix]}")


def load(path: str | os.PathLike, head: int | None = None, *, rule: str = "fdfa", loss: str = "ce",
         threads: int = 1, seed: int = 0, **options: Any) -> "EdgeModel":
    """Open an .onnx or .tflite file and split it; `options` go to the head's LearnerConfig
    (optimizer, lr, alpha, sigma, batch_size)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise BadModelError(f"{path.name}: unknown model format {suffix!r}; edgefdfa reads {', '.join(FORMATS)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None
    split = format_module(suffix).split(data, head, path.name)
    if loss == "mse" and split.softmax:
        raise ConfigError(f"{path.name} ends in Softmax: a classifier head learns with loss='ce', not 'mse'")
    sizes = (split.head[0].W.shape[1],) + tuple(layer.W.shape[0] for layer in split.head)
    activations = tuple(layer.activation for layer in split.head)
    learner = Learner(LearnerConfig(sizes, activations, rule=rule, loss=loss, seed=seed, **options))
    for W, b, layer in zip(learner.net.W, learner.net.b, split.head):
        W[...], b[...] = layer.W, layer.b
    return EdgeModel(data, suffix, path.name, split, learner, threads)


def load_checkpoint(path: str | os.PathLike) -> "Learner | EdgeModel":
    """A checkpoint back as what saved it: an EdgeModel (it holds its source file) or a Learner."""
    arrays, meta = checkpoint.load(path)
    learner = Learner.from_state(arrays, meta, source=os.fspath(path))
    if "model" not in meta:
        return learner
    m = meta["model"]
    source = arrays["model.source"].tobytes()
    split = format_module(m["format"]).split(source, m["head"], m["name"])
    return EdgeModel(source, m["format"], m["name"], split, learner, m["threads"])


class EdgeModel:
    """Backbone (interpreter) -> head (engine). Samples are one model input without the batch dim."""

    def __init__(self, source: bytes, suffix: str, name: str, split: Split, learner: Learner, threads: int):
        self.source, self.suffix, self.name, self.split = source, suffix, name, split
        self.learner, self.threads = learner, threads
        self.backbone = (backend_module(suffix).Session(split.backbone, threads, f"{name} (backbone)")
                         if split.backbone is not None else None)
        shape = split.input.shape
        self.sample_shape = shape[1:] if len(shape) > 1 else shape  # the batch dimension is dropped

    @property
    def n_features(self) -> int:
        return self.learner.n_inputs

    def features(self, x: Any) -> np.ndarray:
        """The head's input for one sample: the backbone's output, flattened to (n_features,)."""
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise BadSampleError(f"input has dtype {x.dtype}; {self.name} takes numbers")
        if len(x.shape) != len(self.sample_shape) or any(d is not None and d != n for d, n in zip(self.sample_shape, x.shape)):
            expected = tuple("?" if d is None else d for d in self.sample_shape)
            raise BadSampleError(f"input has shape {x.shape}; {self.name} takes one sample of shape {expected}")
        if not np.isfinite(x).all():
            raise BadSampleError(f"input holds NaN or Inf at {np.argwhere(~np.isfinite(x))[0].tolist()}")
        if self.backbone is None:
            out = x.astype(np.float32).ravel()
        else:
            out = self.backbone.run(x[None].astype(np.float32)).ravel()
        if out.size != self.n_features:
            raise BadModelError(f"{self.name}: the backbone gave {out.size} values, the head takes {self.n_features}")
        return out

    def learn_one(self, x: Any, y: Any) -> float:
        return self.learner.learn_one(self.features(x), y)

    def predict_one(self, x: Any) -> int | np.ndarray:
        return self.learner.predict_one(self.features(x))

    def predict_proba_one(self, x: Any) -> np.ndarray:
        return self.learner.predict_proba_one(self.features(x))

    def output_one(self, x: Any) -> np.ndarray:
        """What the (exported) file outputs for x: probabilities if it ends in Softmax, else raw values."""
        if self.split.softmax or not self.learner.loss.classification:
            return self.predict_proba_one(x)
        bt = self.learner._one
        bt.x[0] = self.features(x)
        self.learner.net.forward(bt, derivatives=False)
        return bt.y[0].copy()

    def head(self) -> list[Dense]:
        """The head's current layers (copies), in the file's order."""
        return [Dense(W.copy(), b.copy(), layer.activation, layer.where)
                for W, b, layer in zip(self.learner.net.W, self.learner.net.b, self.split.head)]

    def save(self, path: str | os.PathLike) -> None:
        """The learner's checkpoint plus the source file, atomically: export needs nothing else."""
        arrays, meta = self.learner.state()
        arrays["model.source"] = np.frombuffer(self.source, dtype=np.uint8)
        meta["model"] = {"name": self.name, "format": self.suffix, "head": len(self.split.head), "threads": self.threads}
        checkpoint.save(path, arrays, meta)
