"""A model file split into a frozen backbone and a trainable dense head. The backbone runs in the
file's own interpreter as a feature extractor (backends/<name>.py Backbone: quantized files run
quantized, as they are); the head is the learner's and is computed only by it (in C where the
extension is built, else in NumPy), so one call per sample gives the output with the current head
and the features the head learns from:

    model = edgefdfa.load("imu.onnx")           # or .tflite; head=N takes the trailing N dense layers
    model.predict_one(window); model.learn_one(window, label)
    out, features = model.observe(window)       # the same, for a loop that learns through model.learner
    model.save("imu-adapted.npz")               # the checkpoint carries the source file: self-contained

A model knows its file's name and `fingerprint` (a SHA-256 of the file and of the external data files
it names), and so does its checkpoint: `check_resumes` refuses to continue one model from another's.

Formats and backends are plugins chosen by the file's suffix (formats/<name>.py, backends/<name>.py).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import checkpoint, model_store
from .errors import BadModelError, CheckpointError, ConfigError
from .backends.base import Identity, sample_shape
from .formats.base import Split
from .head import Dense
from .learner import Learner, LearnerConfig

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


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
    data, storage = format_module(suffix).read(path)
    split = format_module(suffix).split(data, head, path.name)
    if loss == "mse" and split.softmax:
        raise ConfigError(f"{path.name} ends in Softmax: a classifier head learns with loss='ce', not 'mse'")
    sizes = (split.head[0].W.shape[1],) + tuple(layer.W.shape[0] for layer in split.head)
    activations = tuple(layer.activation for layer in split.head)
    learner = Learner(LearnerConfig(sizes, activations, rule=rule, loss=loss, seed=seed, **options))
    for W, b, layer in zip(learner.net.W, learner.net.b, split.head):
        W[...], b[...] = layer.W, layer.b
    if any(layer.form == "int8" for layer in split.head):
        learner.track_ranges()  # a quantized export recalibrates the activations from what the stream showed
    return EdgeModel(data, suffix, path.name, split, learner, threads, storage, fingerprint(path, storage))


def fingerprint(path: str | os.PathLike, storage: dict) -> str:
    """SHA-256 (hex) over the SHA-256s of a model file's bytes and of each external data file `storage`
    names (format read()'s second result): what the file holds, whatever it is called."""
    path = Path(path)
    locations = storage.get("external_data", [])
    digest = hashlib.sha256()
    for file in [path] + [path.parent / loc for loc in ([locations] if isinstance(locations, str) else locations)]:
        try:
            with open(file, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
        except OSError as exc:
            raise BadModelError(f"{path.name}: cannot read {file.name}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def check_resumes(model: "EdgeModel | Learner", path: str | os.PathLike, checkpoint_path: str | os.PathLike) -> None:
    """`train MODEL --resume`: the checkpoint must be of MODEL, the same file name and fingerprint;
    else a CheckpointError naming both."""
    path = Path(path)
    ckpt = os.fspath(checkpoint_path)
    if not isinstance(model, EdgeModel):
        raise CheckpointError(f"checkpoint {ckpt!r} holds a bare learner, not a model file; it cannot resume "
                              f"{path.name}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise BadModelError(f"{path.name}: unknown model format {suffix!r}; edgefdfa reads {', '.join(FORMATS)}")
    digest = fingerprint(path, format_module(suffix).read(path)[1])
    if (model.name, model.digest) != (path.name, digest):
        raise CheckpointError(f"checkpoint {ckpt!r} is of {model.name} (sha256 {model.digest[:12]}...), not of "
                              f"{path.name} (sha256 {digest[:12]}...): resume {path.name} from a checkpoint of "
                              f"its own, or train it afresh without --resume")


def load_checkpoint(path: str | os.PathLike) -> Learner | EdgeModel:
    """A checkpoint back as what saved it: an EdgeModel (it holds its source file) or a Learner, its
    model section checked (a CheckpointError naming what is wrong)."""
    arrays, meta = checkpoint.load(path)
    model_store.attach(arrays, meta, path)  # a state directory's checkpoint names its stored model file
    learner = Learner.from_state(arrays, meta, source=os.fspath(path))
    if "model" not in meta:
        return learner
    with checkpoint.named(path):
        m = _model_section(arrays, meta)
        source = arrays["model.source"].tobytes()
        try:
            split = format_module(m["format"]).split(source, m["head"], m["name"])
            shapes = [layer.W.shape for layer in split.head]
            if shapes != [W.shape for W in learner.net.W]:
                raise CheckpointError(f"has a learner of layers {[W.shape for W in learner.net.W]}, but the head "
                                      f"of its {m['name']} has {shapes}")
            return EdgeModel(source, m["format"], m["name"], split, learner, m["threads"], m["storage"], m["sha256"])
        except BadModelError as exc:
            raise CheckpointError(f"holds a model file that does not load: {exc}") from None


def _model_section(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model section, every field of the right type and range."""
    m = checkpoint.field(meta, "model", dict)
    checkpoint.field(m, "name", str, "model ")
    if checkpoint.field(m, "format", str, "model ") not in FORMATS:
        raise CheckpointError(f"has model 'format' {m['format']!r:.20}, not one of {', '.join(FORMATS)}")
    checkpoint.number(m, "head", lo=1, hi=len(meta["config"]["sizes"]) - 1, where="model ")
    checkpoint.number(m, "threads", lo=0, hi=256, where="model ")
    checkpoint.field(m, "storage", dict, "model ")
    digest = checkpoint.field(m, "sha256", str, "model ")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CheckpointError(f"has model 'sha256' {digest!r:.70}, not a SHA-256")
    source = arrays.get("model.source")
    if source is None or source.dtype != np.uint8 or source.ndim != 1:
        raise CheckpointError("has a model section but no model file bytes ('model.source', uint8)")
    return m


class EdgeModel:
    """A model file's frozen backbone in its interpreter and its head in the learner, trained by the
    engine. Samples are one model input without the batch dimension."""

    def __init__(self, source: bytes, suffix: str, name: str, split: Split, learner: Learner, threads: int,
                 storage: dict, digest: str):
        self.source, self.suffix, self.name, self.split = source, suffix, name, split
        self.learner, self.threads, self.storage, self.digest = learner, threads, storage, digest
        self.sample_shape = sample_shape(split.input.shape)
        self.backbone = (Identity(self.sample_shape, learner.n_inputs, name) if split.backbone is None
                         else backend_module(suffix).Backbone(split.backbone, threads, name))
        if self.backbone.n_features != learner.n_inputs:
            raise BadModelError(f"{name}: the backbone gives {self.backbone.n_features} features; the head takes "
                                f"{learner.n_inputs}")

    @property
    def n_features(self) -> int:
        return self.learner.n_inputs

    def observe(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """(what the file outputs for x with the head as it is now, the head's input (n_features,)),
        as new float32 arrays: the output is probabilities if the file ends in Softmax.
        `model.learner.learn_one(features, y)` then learns from what the head saw."""
        features = self.backbone.features(x)
        return self.learner.output_one(features, probabilities=self.split.softmax), features.copy()

    def features(self, x: Any) -> np.ndarray:
        """The head's input for one sample: the backbone's output, flattened to (n_features,)."""
        return self.backbone.features(x).copy()

    def learn_one(self, x: Any, y: Any) -> float:
        return self.learner.learn_one(self.backbone.features(x), y)

    def predict_one(self, x: Any) -> int | np.ndarray:
        return self.learner.predict_one(self.backbone.features(x))

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """Class probabilities (ce) or the prediction (mse)."""
        return self.learner.predict_proba_one(self.backbone.features(x))

    def output_one(self, x: Any) -> np.ndarray:
        """What the (exported) file outputs for x: probabilities if it ends in Softmax, else raw values."""
        return self.observe(x)[0]

    def head(self) -> list[Dense]:
        """The head's current layers (copies), in the file's order and forms."""
        return [Dense(W.copy(), b.copy(), layer.activation, layer.where, layer.form)
                for W, b, layer in zip(self.learner.net.W, self.learner.net.b, self.split.head)]

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The learner's state plus the source file and its fingerprint: a checkpoint of it needs nothing else."""
        arrays, meta = self.learner.state()
        arrays["model.source"] = np.frombuffer(self.source, dtype=np.uint8)
        meta["model"] = {"name": self.name, "format": self.suffix, "head": len(self.split.head),
                         "threads": self.threads, "storage": self.storage, "sha256": self.digest}
        return arrays, meta

    def save(self, path: str | os.PathLike) -> None:
        """An atomic checkpoint of `state()`; load_checkpoint(path) gives the model back."""
        checkpoint.save(path, *self.state())
