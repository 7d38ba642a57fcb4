"""The head bundle: a small versioned binary of named tensors for devices and tools that read
neither ONNX nor TFLite. Little-endian throughout:

    header   magic b"EFDB" | u16 version (1) | u16 tensor count
    table    per tensor: 32-byte NUL-padded UTF-8 name | u8 dtype | u8 ndim | u16 0 |
             4 x u32 shape (unused dims 0) | u32 data offset | u32 data bytes
    data     each tensor's bytes, C order, at offsets relative to the end of the table,
             each aligned to 8 bytes (zero padding)
    trailer  u32 CRC-32 (zlib / IEEE 802.3) of everything before it

A head is stored as W0, b0, W1, b1, ... plus "activations" (u8 codes, head.ACTIVATION_CODES).
The reader refuses another magic, version or a bad CRC with a BadModelError saying which.
"""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np

from ..errors import BadModelError
from ..head import ACTIVATION_CODES, ACTIVATION_NAMES, Dense

MAGIC, VERSION = b"EFDB", 1
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"), 5: np.dtype("<u4")}
_CODES = {dt: code for code, dt in DTYPES.items()}
_HEADER = struct.Struct("<4sHH")
_ENTRY = struct.Struct("<32sBBH4III")
_ALIGN = 8


def pack(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialise named tensors (at most 4 dimensions, dtypes in DTYPES) to bundle bytes."""
    table, data = [], bytearray()
    for name, array in tensors.items():
        a = np.ascontiguousarray(array)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _CODES or a.ndim > 4 or len(name.encode()) > 32:
            raise ValueError(f"tensor {name!r} ({a.dtype}, {a.ndim}-D) does not fit a bundle")
        data += b"\0" * (-len(data) % _ALIGN)
        shape = list(a.shape) + [0] * (4 - a.ndim)
        table.append(_ENTRY.pack(name.encode(), _CODES[dt], a.ndim, 0, *shape, len(data), a.nbytes))
        data += a.astype(dt, copy=False).tobytes()
    body = _HEADER.pack(MAGIC, VERSION, len(table)) + b"".join(table) + bytes(data)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(blob: bytes, name: str = "bundle") -> dict[str, np.ndarray]:
    """The tensors of a bundle; any damage is a BadModelError naming `name`."""
    if len(blob) < _HEADER.size + 4:
        raise BadModelError(f"{name}: {len(blob)} bytes is too short for a bundle")
    magic, version, count = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise BadModelError(f"{name}: not an edgefdfa bundle (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BadModelError(f"{name}: bundle version {version}; this edgefdfa reads version {VERSION}")
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    if zlib.crc32(blob[:-4]) != crc:
        raise BadModelError(f"{name}: CRC mismatch: the bundle is damaged or truncated")
    start = _HEADER.size + count * _ENTRY.size
    tensors = {}
    for i in range(count):
        raw, code, ndim, _, *rest = _ENTRY.unpack_from(blob, _HEADER.size + i * _ENTRY.size)
        shape, offset, nbytes = tuple(rest[:ndim]), rest[4], rest[5]
        if code not in DTYPES or ndim > 4 or start + offset + nbytes > len(blob) - 4:
            raise BadModelError(f"{name}: tensor {i} has a bad entry (dtype {code}, {ndim}-D, {nbytes} bytes at {offset})")
        dt = DTYPES[code]
        if int(np.prod(shape)) * dt.itemsize != nbytes:
            raise BadModelError(f"{name}: tensor {i} shape {shape} does not match its {nbytes} bytes")
        tensors[raw.rstrip(b"\0").decode()] = np.frombuffer(blob, dt, int(np.prod(shape)), start + offset).reshape(shape).copy()
    return tensors


def head_tensors(head: Sequence[Dense]) -> dict[str, np.ndarray]:
    """A head as bundle tensors: W0, b0, ..., and its activation codes."""
    tensors: dict[str, np.ndarray] = {}
    for l, layer in enumerate(head):
        tensors[f"W{l}"], tensors[f"b{l}"] = layer.W.astype(np.float32), layer.b.astype(np.float32)
    tensors["activations"] = np.array([ACTIVATION_CODES[layer.activation] for layer in head], dtype=np.uint8)
    return tensors


def dense_head(tensors: dict[str, np.ndarray], name: str = "bundle") -> list[Dense]:
    """The head a bundle's tensors hold (head_tensors' inverse); BadModelError naming `name` if they are not one."""
    try:
        return [Dense(tensors[f"W{l}"], tensors[f"b{l}"], ACTIVATION_NAMES[int(a)], f"layer {l}")
                for l, a in enumerate(tensors["activations"])]
    except KeyError as e:
        raise BadModelError(f"{name}: not a head bundle (no tensor or activation code {e})") from None
