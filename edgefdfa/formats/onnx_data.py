"""ONNX external data: tensors whose bytes live in a file beside the model (PyTorch >= 2.9 writes
`model.onnx.data` by default). Reading embeds them, so a model's bytes are self-contained; writing
puts the large ones back in one data file named after the model file.

A tensor's location must stay inside the model's folder: absolute paths, `..` and symlinks that lead
out are refused, as is a location whose file is missing or shorter than the offset and length it
claims, each with the tensor's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..atomic import atomic_write
from ..errors import BadModelError

ALIGN = 4096  # each tensor starts on a page boundary, as onnx's own writer and PyTorch's do (mmap-friendly)
MIN_EXTERNAL = 1024  # smaller tensors stay in the model file, as onnx's writer does by default


def embed(model: onnx.ModelProto, folder: Path, name: str) -> list[str]:
    """Read every external tensor of `model` into it, in place; the data files' locations, in order."""
    locations: list[str] = []
    for tensor in tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        location = entry.get("location", "")
        path = _inside(folder, location, tensor.name, name)
        offset, length = _number(entry, "offset", 0, tensor, name), _number(entry, "length", None, tensor, name)
        tensor.raw_data = _read(path, offset, length, tensor, name)
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
        if location not in locations:
            locations.append(location)
    return locations


def externalize(model: onnx.ModelProto, data_name: str) -> bytes:
    """Move the tensors of MIN_EXTERNAL bytes or more out of `model`, in place, into one data blob
    referenced as `data_name`; the blob."""
    blob = bytearray()
    for tensor in tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL or not tensor.HasField("raw_data"):
            continue
        if len(tensor.raw_data) < MIN_EXTERNAL:
            continue
        blob += b"\0" * (-len(blob) % ALIGN)
        offset = len(blob)
        blob += tensor.raw_data
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(blob) - offset))):
            tensor.external_data.add(key=key, value=value)
    return bytes(blob)


def tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """The model's initializers and the tensors in its nodes' attributes, subgraphs included."""
    yield from _graph_tensors(model.graph)


def write(path: Path, model: onnx.ModelProto, external: bool) -> list[Path]:
    """Write `model` to `path` atomically, its large tensors in `<path name>.data` beside it when
    `external` (data first, so the model file never names data that is not there yet)."""
    written = []
    if external:
        data_path = path.with_name(path.name + ".data")
        blob = externalize(model, data_path.name)
        with atomic_write(data_path) as f:
            f.write(blob)
        written.append(data_path)
    with atomic_write(path) as f:
        f.write(model.SerializeToString())
    return [path, *written]


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _graph_tensors(sub)


def _inside(folder: Path, location: str, tensor: str, name: str) -> Path:
    """The data file `location` names, which must lie inside the model's folder."""
    bad = f"{name}: tensor '{tensor}' keeps its data in '{location}'"
    if not location:
        raise BadModelError(f"{bad}: no location is given")
    relative = Path(location)
    if relative.is_absolute() or location.startswith(("/", "\\")) or ".." in relative.parts or "\\" in location:
        raise BadModelError(f"{bad}, outside the model's folder; edgefdfa reads external data only beside the "
                            "model (move the file there, or re-export with external_data=False)")
    root = folder.resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise BadModelError(f"{bad}, a link that leads outside the model's folder; edgefdfa reads external data "
                            "only beside the model (copy the file there, or re-export with external_data=False)")
    return path


def _number(entry: dict, key: str, default: int | None, tensor: TensorProto, name: str) -> int | None:
    if key not in entry:
        return default
    try:
        value = int(entry[key])
    except ValueError:
        value = -1
    if value < 0:
        raise BadModelError(f"{name}: tensor '{tensor.name}' gives its external data {key} as {entry[key]!r}")
    return value


def _read(path: Path, offset: int, length: int | None, tensor: TensorProto, name: str) -> bytes:
    where = f"{name}: tensor '{tensor.name}' keeps its data in '{path.name}'"
    expected = _nbytes(tensor)
    try:
        size = path.stat().st_size
        need = length if length is not None else expected if expected is not None else max(size - offset, 0)
        if offset + need > size:
            raise BadModelError(f"{where} at offset {offset}, {need} bytes, but that file holds {size} bytes: "
                                "it is truncated or from another export")
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(need)
    except OSError as exc:
        raise BadModelError(f"{where}, which cannot be read ({exc.strerror or exc}); it belongs beside the "
                            "model") from None
    if len(data) != need or expected not in (None, need):
        raise BadModelError(f"{where}: {len(data)} bytes where its shape {list(tensor.dims)} needs {expected}")
    return data


def _nbytes(tensor: TensorProto) -> int | None:
    """The bytes a tensor of fixed-size elements holds; None for strings or sub-byte types."""
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED) or itemsize == 0:
        return None
    if tensor.data_type in _SUB_BYTE:
        return None
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


_SUB_BYTE = {getattr(TensorProto, t) for t in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(TensorProto, t)}
