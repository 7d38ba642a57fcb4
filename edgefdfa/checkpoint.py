"""Checkpoint files: named arrays plus JSON metadata in one .npz, written atomically, read without
pickle. The metadata names the format and its version; a reader refuses any other.

A checkpoint is checked before it is believed. Before anything is inflated, the archive's member
count and declared sizes are bounded (at most MAX_RATIO times the file's own size: edgefdfa writes
uncompressed members, so a zip bomb is refused unread); each member is read no further than it
declared; every array's header is checked against its bytes before it is allocated; arrays must be
numbers and, if floats, finite; the JSON must parse (no NaN/Infinity) into an object. Whoever reads
a section back checks it with `restore`, `number` and `field`, so that a missing key, a wrong type,
dtype or shape, or a value out of range is a CheckpointError naming it; `named` adds the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import CheckpointError

FORMAT = "edgefdfa.checkpoint"
VERSION = 2  # 2: the model section names its file's SHA-256 (model.fingerprint)
_META = "__meta__"
MAX_BYTES = 1 << 30  # decompressed bytes of all members together
MAX_RATIO = 8        # decompressed bytes per byte of the file (members are stored uncompressed: ~1)
MAX_MEMBERS = 1024
# what zipfile and numpy's .npy header parser raise on a damaged archive: BadZipFile, EOFError,
# struct.error and zlib.error from the zip structures, NotImplementedError for an unknown method,
# RuntimeError for a member flagged encrypted, ValueError/SyntaxError from a damaged .npy header,
# UnicodeDecodeError from a damaged name or string
_DAMAGE = (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError, RuntimeError, struct.error,
           zlib.error, SyntaxError)


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` and `meta` (JSON-able, finite) to `path` atomically (temp file, fsync, rename)."""
    header = {"format": FORMAT, "version": VERSION, **meta}
    with atomic_write(path) as f:
        np.savez(f, **arrays, **{_META: np.array(json.dumps(header, allow_nan=False))})


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint back, bounded and checked (module docstring); any damage, excess or
    mismatch is a CheckpointError naming the file."""
    with named(path):
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise CheckpointError("does not exist") from None
        except OSError as exc:
            raise CheckpointError(f"cannot be read: {exc}") from None
        try:
            arrays = _read_arrays(path, min(MAX_BYTES, MAX_RATIO * size + 4096))
        except _DAMAGE as exc:
            raise CheckpointError(f"is damaged or not a checkpoint ({type(exc).__name__}: {exc})") from None
        if _META not in arrays:
            raise CheckpointError("is an .npz file but not an edgefdfa checkpoint (no metadata)")
        return arrays, _parse_meta(arrays.pop(_META))


@contextlib.contextmanager
def named(path: str | os.PathLike) -> Iterator[None]:
    """Prefix any CheckpointError raised in the block with the checkpoint's file name."""
    prefix = f"checkpoint {os.fspath(path)!r}"
    try:
        yield
    except CheckpointError as exc:
        if str(exc).startswith("checkpoint "):
            raise
        raise CheckpointError(f"{prefix} {exc}") from None


def field(section: Any, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """section[key], which must be of `kind` (a bool is not an int here, an int is a float)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        kinds += (int,)
    if not isinstance(section, dict) or key not in section:
        raise CheckpointError(f"has no {where}{key!r}")
    value = section[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise CheckpointError(f"has {where}{key!r} = {_short(value)}, not {'an' if names[0] in 'aeiou' else 'a'} {names}")
    return value


def number(section: Any, key: str, kind: type = int, lo: float | None = None, hi: float | None = None,
           where: str = "") -> Any:
    """A finite int or float field within [lo, hi] (None: unbounded)."""
    value = field(section, key, kind, where)
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{'-inf' if lo is None else lo}..{'inf' if hi is None else hi}"
        raise CheckpointError(f"has {where}{key!r} = {_short(value)}, outside {bounds}")
    return kind(value)


def restore(dst: np.ndarray, arrays: dict[str, np.ndarray], key: str) -> None:
    """Copy arrays[key] into `dst`, which it must match exactly in dtype and shape (no broadcasting)."""
    if key not in arrays:
        raise CheckpointError(f"has no array {key!r}")
    src = arrays[key]
    if src.dtype != dst.dtype or src.shape != dst.shape:
        raise CheckpointError(f"has array {key!r} of {src.dtype} {src.shape}; expected {dst.dtype} {dst.shape}")
    dst[...] = src


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_arrays(path: str | os.PathLike, budget: int) -> dict[str, np.ndarray]:
    """Every member of the archive as an array, at most `budget` decompressed bytes in all, judged
    by the sizes the archive declares before anything is inflated."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CheckpointError(f"has {len(infos)} members (at most {MAX_MEMBERS})")
        declared = sum(info.file_size for info in infos)
        if declared > budget:
            raise CheckpointError(f"would inflate to {declared:,} bytes, more than the {budget:,} a file of "
                                  f"its size may hold")
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            key = info.filename[:-4]
            if not info.filename.endswith(".npy") or key in arrays:
                raise CheckpointError(f"has member {info.filename!r}, which is not one array")
            with zf.open(info) as member:
                data = member.read(info.file_size + 1)  # zipfile stops at the declared size (and checks the CRC)
            if len(data) != info.file_size:
                raise CheckpointError(f"has member {info.filename!r} of {len(data):,} bytes; it declared "
                                      f"{info.file_size:,}")
            arrays[key] = _parse_npy(data, key)
    return arrays


def _parse_npy(data: bytes, key: str) -> np.ndarray:
    """One .npy image to an array: numbers (the metadata: a string), its header checked against its
    bytes before anything is allocated, floats finite."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version not in ((1, 0), (2, 0)):
        raise CheckpointError(f"has array {key!r} in .npy version {version}")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(buf)
    allowed = "U" if key == _META else "fiub"
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in allowed:
        raise CheckpointError(f"has array {key!r} of dtype {dtype}, not {'text' if key == _META else 'numbers'}")
    if any(n < 0 for n in shape):
        raise CheckpointError(f"has array {key!r} of shape {shape}")
    count, offset = math.prod(shape), buf.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise CheckpointError(f"has array {key!r} that claims {shape} of {dtype} ({count * dtype.itemsize:,} "
                              f"bytes) but holds {len(data) - offset:,} bytes")
    array = np.frombuffer(data, dtype, count, offset).reshape(shape, order="F" if fortran else "C").copy()
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise CheckpointError(f"has array {key!r} holding NaN or Inf")
    return array


def _parse_meta(array: np.ndarray) -> dict[str, Any]:
    """The metadata: a JSON object without NaN or Infinity, of this format and version."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number a checkpoint may hold")

    if array.shape != ():
        raise CheckpointError(f"has metadata of shape {array.shape}, not one string")
    try:
        meta = json.loads(str(array), parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"has unreadable metadata: {type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"has metadata of type {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"is format {_short(meta.get('format'))} version {_short(meta.get('version'))}; "
                              f"this edgefdfa reads {FORMAT!r} version {VERSION}")
    return meta
