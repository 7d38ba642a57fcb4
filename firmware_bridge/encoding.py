"""Update encodings (PROTOCOL.md §4–§5): an image to the bytes CHUNKs carry and back, the
update id, and the HMAC signature.

`decode` is what a device runs; the host runs the same function on its own bytes to learn exactly
which image the device will hold (for the digest, the parity check and the sparse residual).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

import numpy as np

from edgefdfa.formats.c_header import quantize_per_channel

from . import image as img
from .protocol import Begin, Code, Encoding, Layer, ProtocolError

SIGNATURE_CONTEXT = b"EFDFA-UPDATE-1"
_SPARSE_HEAD = struct.Struct("<If")  # count, scale


def encode(target: np.ndarray, layers: Sequence[Layer], encoding: Encoding, *,
           base: np.ndarray | None = None, budget: int | None = None) -> bytes:
    """The update that takes a device to (about) `target`; SPARSE_INT8 needs the device's `base`
    image and keeps under `budget` bytes by sending the largest changes first."""
    ts = img.tensors(np.asarray(target, np.float32), layers)
    if encoding == Encoding.F32:
        return b"".join(t.astype("<f4").tobytes() for t in ts)
    if encoding == Encoding.F16:
        return b"".join(t.astype("<f2").tobytes() for t in ts)
    if encoding in (Encoding.INT8_TENSOR, Encoding.INT8_CHANNEL):
        return b"".join(_int8(t, encoding) for t in ts)
    if encoding == Encoding.SPARSE_INT8:
        if base is None:
            raise ValueError("a sparse update needs the device's base image")
        return _sparse(ts, img.tensors(np.asarray(base, np.float32), layers), budget)
    raise ValueError(f"unknown encoding {encoding!r}")


def _int8(t: np.ndarray, encoding: Encoding) -> bytes:
    if t.ndim == 1:  # biases stay float32
        return t.astype("<f4").tobytes()
    if encoding == Encoding.INT8_CHANNEL:
        q, scale = quantize_per_channel(t)
    else:
        peak = np.float32(np.abs(t).max())
        scale = np.array([peak / 127 if peak > 0 else 1.0], "<f4")
        q = np.clip(np.rint(t / scale[0]), -127, 127).astype(np.int8)
    return scale.astype("<f4").tobytes() + q.tobytes()


def _sparse(ts: list[np.ndarray], bases: list[np.ndarray], budget: int | None) -> bytes:
    deltas = [(t - b).ravel().astype(np.float32) for t, b in zip(ts, bases)]
    scales = [np.float32(np.abs(d).max() / 127) if d.size else np.float32(0) for d in deltas]
    qs = [np.clip(np.rint(d / s), -127, 127).astype(np.int8) if s > 0 else np.zeros(d.size, np.int8)
          for d, s in zip(deltas, scales)]
    keep = [q != 0 for q in qs]
    if budget is not None:
        room = max((budget - _SPARSE_HEAD.size * len(ts)) // 5, 0)
        magnitude = np.concatenate([np.where(k, np.abs(d), -1.0) for k, d in zip(keep, deltas)])
        if (magnitude >= 0).sum() > room:
            cut = np.zeros(magnitude.size, bool)
            cut[np.argsort(-magnitude, kind="stable")[:room]] = True
            keep = [k & c for k, c in zip(keep, np.split(cut, np.cumsum([d.size for d in deltas])[:-1]))]
    out = bytearray()
    for q, s, k in zip(qs, scales, keep):
        index = np.flatnonzero(k).astype("<u4")
        out += _SPARSE_HEAD.pack(index.size, s) + index.tobytes() + q[index].tobytes()
    return bytes(out)


def decode(update: bytes, layers: Sequence[Layer], encoding: int, base: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """The image an update makes, written into `out` (the inactive slot) if given.

    ProtocolError BAD_UPDATE if the bytes do not parse exactly or decode to a non-finite value;
    BAD_ENCODING for an unknown encoding. Nothing outside `out` is written.
    """
    if encoding not in Encoding.__members__.values():
        raise ProtocolError(Code.BAD_ENCODING, f"encoding {encoding}")
    out = np.empty(img.size(layers), np.float32) if out is None else out
    if encoding == Encoding.SPARSE_INT8:
        if base is None:
            raise ProtocolError(Code.BASE_MISMATCH, "no base image for a sparse update")
        out[:] = base
    buf, at = memoryview(update), 0

    def take(n: int, dtype: str) -> np.ndarray:
        nonlocal at
        nbytes = n * np.dtype(dtype).itemsize
        if at + nbytes > len(buf):
            raise ProtocolError(Code.BAD_UPDATE, f"update ends at byte {len(buf)}, needs {at + nbytes}")
        a = np.frombuffer(buf, dtype, n, at)
        at += nbytes
        return a

    for t, shape in zip(img.tensors(out, layers), img.shapes(layers)):
        flat = t.reshape(-1)
        if encoding == Encoding.F32:
            flat[:] = take(flat.size, "<f4")
        elif encoding == Encoding.F16:
            flat[:] = take(flat.size, "<f2").astype(np.float32)
        elif encoding in (Encoding.INT8_TENSOR, Encoding.INT8_CHANNEL) and len(shape) == 1:
            flat[:] = take(flat.size, "<f4")
        elif encoding in (Encoding.INT8_TENSOR, Encoding.INT8_CHANNEL):
            scale = take(1 if encoding == Encoding.INT8_TENSOR else shape[0], "<f4")
            q = take(flat.size, "i1").reshape(shape).astype(np.float32)
            t[:] = q * (scale[0] if encoding == Encoding.INT8_TENSOR else scale[:, None])
        else:
            count, scale = struct.unpack("<If", take(_SPARSE_HEAD.size, "u1").tobytes())
            if count > flat.size:
                raise ProtocolError(Code.BAD_UPDATE, f"{count} sparse entries for a tensor of {flat.size}")
            index = take(count, "<u4")
            q = take(count, "i1")
            if count and (index[-1] >= flat.size or np.any(np.diff(index.astype(np.int64)) <= 0)):
                raise ProtocolError(Code.BAD_UPDATE, "sparse indices out of range or not increasing")
            flat[index] = flat[index] + q.astype(np.float32) * np.float32(scale)
    if at != len(buf):
        raise ProtocolError(Code.BAD_UPDATE, f"{len(buf) - at} bytes left over after the last tensor")
    if not np.isfinite(out).all():
        raise ProtocolError(Code.BAD_UPDATE, "the update decodes to NaN or Inf")
    return out


def update_id(begin_tail: Begin, update: bytes) -> int:
    """The id the host gives an update: u32 of SHA-256(BEGIN payload from byte 4 | update); never 0."""
    h = hashlib.sha256(begin_tail.pack()[4:] + update).digest()
    return int.from_bytes(h[:4], "little") or 1


def signature(key: bytes, begin: Begin, digest: bytes) -> bytes:
    """HMAC-SHA256(key, context | BEGIN payload | digest)."""
    return hmac.new(key, SIGNATURE_CONTEXT + begin.pack() + digest, hashlib.sha256).digest()


def verify(key: bytes, begin: Begin, digest: bytes, mac: bytes) -> bool:
    """Whether `mac` is the signature of this update, compared in constant time."""
    return hmac.compare_digest(signature(key, begin, digest), mac)
