"""A model file split into a frozen backbone and a trainable dense head, trained by the engine. The
whole file runs in its own interpreter, its head's weights fed from the engine's live parameters (or,
for TFLite where the compiled head is built, the backbone runs in the interpreter and the head in C on
those parameters in place: backends/tflite.py CutSession), so one call per sample gives the output
with the current head and the features the head learns from:

    model = edgefdfa.load("imu.onnx")           # or .tflite; head=N takes the trailing N dense layers
    model.predict_one(window); model.learn_one(window, label)
    out, features = model.observe(window)       # the same, for a loop that learns through model.learner
    model.save("imu-adapted.npz")               # the checkpoint carries the source file: self-contained

Formats and backends are plugins chosen by the file's suffix (formats/<name>.py, backends/<name>.py).
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import checkpoint
from .errors import BadModelError, BadSampleError, ConfigError
from .formats.base import Dense, Split
from .learner import Learner, LearnerConfig
from .native import NotASample, NotFinite

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}
_F32 = np.dtype(np.float32)


def format_module(suffix: str) -> ModuleType:
    return importlib.import_module(f"edgefdfa.formats.{FORMATS[suffix]}")


def backend_module(suffix: str) -> ModuleType:
    return importlib.import_module(f"edgefdfa.backends.{FORMATS[suffix]}")


def load(path: str | os.PathLike, head: int | None = None, *, rule: str = "fdfa", loss: str = "ce",
         threads: int = 1, seed: int = 0, **options: Any) -> EdgeModel:
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


def load_checkpoint(path: str | os.PathLike) -> Learner | EdgeModel:
    """A checkpoint back as what saved it: an EdgeModel (it holds its source file) or a Learner."""
    arrays, meta = checkpoint.load(path)
    learner = Learner.from_state(arrays, meta, source=os.fspath(path))
    if "model" not in meta:
        return learner
    m = meta["model"]
    source = arrays["model.source"].tobytes()
    split = format_module(m["format"]).split(source, m["head"], m["name"])
    return EdgeModel(source, m["format"], m["name"], split, learner, m["threads"])


def _session(source: bytes, suffix: str, name: str, split: Split, threads: int) -> Any:
    """The backend's cut_session (backbone in the interpreter, head compiled) where it has one that can
    run the file, else its InferenceSession on the whole file with the head's weights as inputs."""
    backend = backend_module(suffix)
    model = format_module(suffix).inference_model(source, len(split.head), name)  # built for its checks too
    cut = getattr(backend, "cut_session", None)
    return (cut(split, threads, name) if cut else None) or backend.InferenceSession(model, threads, name)


def _not_finite(x: np.ndarray) -> BadSampleError:
    return BadSampleError(f"input holds NaN or Inf at {np.argwhere(~np.isfinite(x))[0].tolist()}")


class EdgeModel:
    """The whole file in its interpreter, its head's weights fed from the engine's live parameters, and
    the head trained by the engine. Samples are one model input without the batch dim."""

    def __init__(self, source: bytes, suffix: str, name: str, split: Split, learner: Learner, threads: int):
        self.source, self.suffix, self.name, self.split = source, suffix, name, split
        self.learner, self.threads = learner, threads
        self.session = _session(source, suffix, name, split, threads)
        shape = split.input.shape
        self.sample_shape = shape[1:] if len(shape) > 1 else shape  # the batch dimension is dropped
        self._session_checks = getattr(self.session, "checks_samples", False)  # run() takes a sample as it is
        self._batched = len(shape) > 1 and not self._session_checks  # run() takes a batch of one
        self._fed: tuple[Learner | None, int] = (None, -1)  # (learner, n_updates) whose weights the session holds
        self._zeros = np.zeros(0, np.float32)  # sized like a sample, for the finiteness check

    @property
    def n_features(self) -> int:
        return self.learner.n_inputs

    def observe(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """(what the file outputs for x with the head as it is now, the head's input (n_features,)), as
        new float32 arrays, from one interpreter call: the output is probabilities if the file ends in
        Softmax. `model.learner.learn_one(features, y)` then learns from what the head saw.

        The interpreter is given the head's weights again whenever the learner has taken a step
        (learner.n_updates changed) or was replaced; weights written into learner.net by hand are seen
        by onnxruntime and the compiled TFLite head at once (they read them in place) and by the whole
        file in TFLite after the next step.
        """
        x = self._sample(x)
        outputs = self._run(x, None)
        return outputs[0], outputs[1] if len(outputs) > 1 else x.reshape(-1).copy()

    def features(self, x: Any) -> np.ndarray:
        """The head's input for one sample: the backbone's output, flattened to (n_features,)."""
        return self.observe(x)[1]

    def learn_one(self, x: Any, y: Any) -> float:
        return self.learner.learn_one(self.observe(x)[1], y)

    def predict_one(self, x: Any) -> int | np.ndarray:
        out = self._run(self._sample(x), 1)[0]
        return int(np.argmax(out)) if self.learner.loss.classification else out

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """Class probabilities (ce: the file's Softmax, or a softmax of its output) or the prediction (mse)."""
        out = self._run(self._sample(x), 1)[0]
        if not self.split.softmax and self.learner.loss.classification:
            self.learner.loss.output(out[None], out[None])
        return out

    def output_one(self, x: Any) -> np.ndarray:
        """What the (exported) file outputs for x: probabilities if it ends in Softmax, else raw values."""
        return self._run(self._sample(x), 1)[0]

    def _run(self, x: np.ndarray, n: int | None) -> list[np.ndarray]:
        """The file's first n outputs (all: n=None) for a checked sample, flat, with the head as it is now."""
        learner = self.learner
        if self._fed[0] is not learner or self._fed[1] != learner.n_updates:
            net = learner.net
            self.session.set_weights([a for W, b in zip(net.W, net.b) for a in (W, b)])
            self._fed = (learner, learner.n_updates)
        try:
            return self.session.run(x[None] if self._batched else x, n)
        except NotFinite:
            raise _not_finite(x) from None
        except NotASample:  # not a C-ordered float32 sample: checked here, and run as one
            return self.session.run(np.ascontiguousarray(self._checked(x)), n)

    def _sample(self, x: Any) -> np.ndarray:
        """x for _run: an array as it is where the session checks samples itself (run() raises
        NotASample or NotFinite), else checked."""
        return x if self._session_checks and type(x) is np.ndarray else self._checked(x)

    def _checked(self, x: Any) -> np.ndarray:
        """x checked (numbers, one sample's shape, finite) as float32: x itself when it is already."""
        if type(x) is not np.ndarray or x.dtype is not _F32:  # the fast path takes a float32 array as it is
            x = np.asarray(x)
            if x.dtype.kind not in "biuf":
                raise BadSampleError(f"input has dtype {x.dtype}; {self.name} takes numbers")
            with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
                x = x.astype(np.float32)
        if x.shape != self.sample_shape and (len(x.shape) != len(self.sample_shape) or any(
                d is not None and d != n for d, n in zip(self.sample_shape, x.shape))):
            expected = tuple("?" if d is None else d for d in self.sample_shape)
            raise BadSampleError(f"input has shape {x.shape}; {self.name} takes one sample of shape {expected}")
        if self._zeros.size != x.size:
            self._zeros = np.zeros(x.size, np.float32)
        # one BLAS call: NaN * 0 and Inf * 0 are NaN, any finite value * 0 is 0
        if not math.isfinite(np.vdot(x, self._zeros)):
            raise _not_finite(x)
        return x

    def head(self) -> list[Dense]:
        """The head's current layers (copies), in the file's order."""
        return [Dense(W.copy(), b.copy(), layer.activation, layer.where)
                for W, b, layer in zip(self.learner.net.W, self.learner.net.b, self.split.head)]

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The learner's state plus the source file: a checkpoint of it needs nothing else."""
        arrays, meta = self.learner.state()
        arrays["model.source"] = np.frombuffer(self.source, dtype=np.uint8)
        meta["model"] = {"name": self.name, "format": self.suffix, "head": len(self.split.head), "threads": self.threads}
        return arrays, meta

    def save(self, path: str | os.PathLike) -> None:
        """An atomic checkpoint of `state()`; load_checkpoint(path) gives the model back."""
        checkpoint.save(path, *self.state())
