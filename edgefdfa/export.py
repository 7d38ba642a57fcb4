"""Write what a learner or model learned, in the format a runtime or firmware takes. Atomic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write, remove_leftovers
from .errors import BadModelError, ConfigError
from .formats import bundle
from .formats.c_header import c_header
from .head import Dense
from .learner import Learner
from .model import EdgeModel, format_module, load, load_checkpoint

EXPORT_FORMATS = ("onnx", "tflite", "c", "c-int8", "bundle")


def head_of(obj: Learner | EdgeModel) -> tuple[list[Dense], bool]:
    """(layers, ends in softmax) of a model's head or a plain learner's network."""
    if isinstance(obj, EdgeModel):
        return obj.head(), obj.split.softmax
    net = obj.net
    layers = [Dense(W.copy(), b.copy(), act.name, f"layer {l}") for l, (W, b, act) in enumerate(zip(net.W, net.b, net.acts))]
    return layers, obj.loss.classification


def head_from(path: str | os.PathLike) -> list[Dense]:
    """The head of a head bundle (formats/bundle.py), a checkpoint or an .onnx/.tflite model file:
    what `edgefdfa push` sends and `edgefdfa device --model` starts from."""
    data = Path(path).read_bytes()
    if data[:4] == bundle.MAGIC:
        return bundle.dense_head(bundle.unpack(data, str(path)), str(path))
    obj = load(path) if Path(path).suffix.lower() in (".onnx", ".tflite") else load_checkpoint(path)
    return head_of(obj)[0]


def export(obj: Learner | EdgeModel, path: str | os.PathLike, fmt: str) -> str:
    """Write `obj` to `path` as `fmt`; returns a one-line description of what was written.

    onnx/tflite from a model of the same format: the whole file with the learned head. Otherwise
    (another format, or a plain learner): the head alone as a standalone model of that format.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    layers, softmax = head_of(obj)
    name = obj.name if isinstance(obj, EdgeModel) else "learner"
    for layer in layers:
        if not (np.isfinite(layer.W).all() and np.isfinite(layer.b).all()):
            raise BadModelError(f"{name}: {layer.where} holds NaN or Inf weights; refusing to export a diverged head")
    storage: dict = {}
    if fmt in ("onnx", "tflite"):
        module = format_module(f".{fmt}")
        if isinstance(obj, EdgeModel) and obj.suffix == f".{fmt}":
            data = module.write_head(obj.source, [(d.W, d.b) for d in layers], obj.name, obj.learner.ranges)
            storage = obj.storage
            forms = sorted({d.form for d in layers} - {"float32"})
            what = f"{name} with its learned head" + (f" ({', '.join(forms)}, as the file had it)" if forms else "")
        else:
            data = module.dense_model([(d.W, d.b, d.activation) for d in layers], softmax=softmax)
            what = f"the head of {name} alone (input: the head's {layers[0].W.shape[1]} features)"
    elif fmt in ("c", "c-int8"):
        data = c_header(layers, int8=fmt == "c-int8", prefix=_c_prefix(path), source=name).encode()
        what = f"C header, {'int8' if fmt == 'c-int8' else 'float32'} weights"
    else:
        data = bundle.pack(bundle.head_tensors(layers))
        what = "head bundle"
    for target in (Path(path), Path(f"{os.fspath(path)}.data")):  # what a killed export of this file left
        remove_leftovers(target)
    if fmt in ("onnx", "tflite"):
        written = format_module(f".{fmt}").write(Path(path), data, storage)
    else:
        with atomic_write(path) as f:
            f.write(data)
        written = [Path(path)]
    size = sum(p.stat().st_size for p in written)
    return f"{', '.join(map(str, written))}: {what}, {size:,} bytes"


def _c_prefix(path: str | os.PathLike) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)
    return stem if stem and not stem[0].isdigit() else f"head_{stem}"
