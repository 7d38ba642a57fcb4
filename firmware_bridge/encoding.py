"""Update encodings (PROTOCOL.md §4–§5): an image to the bytes CHUNKs carry and back, the
update id, and the HMAC that signs a request.

`decode` is what a device runs; the host runs the same function on its own bytes to learn exactly
which image the device will hold (for the digest, the parity check and the sparse residual).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

import numpy as np


from edgefdfa.head import Layer, quantize_per_channel, shapes, size, tensors
from .protocol import Code, Encoding, ProtocolError

MAC_CONTEXT = b"EFDFA-2"  # every signed request of protocol version 2
_SPARSE_HEAD = struct.Struct("<If")  # count, scale


def encode(target: np.ndarray, layers: Sequence[Layer], encoding: Encoding, *,
           base: np.ndarray | None = None, budget: int | None = None) -> bytes:
    """The update that takes a device to (about) `target`; SPARSE_INT8 needs the device's `base`
    image and keeps under `budget` bytes by sending the largest changes first."""
    ts = tensors(np.asarray(target, np.float32), layers)
    if encoding == Encoding.F32:
        return b"".join(t.astype("<f4").tobytes() for t in ts)
    if encoding == Encoding.F16:
        return b"".join(t.astype("<f2").tobytes() for t in ts)
    if encoding in (Encoding.INT8_TENSOR, Encoding.INT8_CHANNEL):
        return b"".join(_int8(t, encoding) for t in ts)
    if encoding == Encoding.SPARSE_INT8:
        if base is None:
            raise ValueError("a sparse update needs the device's base image")
        return _sparse(ts, tensors(np.asarray(base, np.float32), layers), budget)
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
    indices = [np.flatnonzero(q) for q in qs]
    if budget is not None:
        if budget < sparse_minimum(len(ts)):
            raise ValueError(f"a sparse budget of {budget!r} bytes is under the {sparse_minimum(len(ts))} "
                             f"that {len(ts)} tensor headers and the largest change may take")
        indices = _largest_within(indices, deltas, budget - _SPARSE_HEAD.size * len(ts))
    out = bytearray()
    for q, s, index in zip(qs, scales, indices):
        out += _SPARSE_HEAD.pack(index.size, s) + varints(np.diff(index, prepend=-1) - 1) + q[index].tobytes()
    return bytes(out)


def sparse_minimum(n_tensors: int) -> int:
    """The smallest sparse budget: every tensor's count and scale, and room for the largest change
    wherever it is (a 5-byte index and its q), so each push makes progress."""
    return _SPARSE_HEAD.size * n_tensors + 6


def _largest_within(indices: list[np.ndarray], deltas: list[np.ndarray], room: int) -> list[np.ndarray]:
    """The entries to send when all of them would take more than `room` bytes: the largest |delta|
    first, fewer until their indices (varints) and values fit."""
    def cost(chosen: list[np.ndarray]) -> int:
        return sum(len(varints(np.diff(i, prepend=-1) - 1)) + i.size for i in chosen)

    if cost(indices) <= room:
        return indices
    sizes = [i.size for i in indices]
    order = np.argsort(-np.concatenate([np.abs(d[i]) for d, i in zip(deltas, indices)]), kind="stable")
    lo, hi = 0, min(order.size, max(room, 0) // 2)  # an entry costs at least 2 bytes
    while lo < hi:  # the most entries, largest first, that fit
        k = (lo + hi + 1) // 2
        if cost(_take(indices, sizes, order[:k])) <= room:
            lo = k
        else:
            hi = k - 1
    return _take(indices, sizes, order[:lo])


def _take(indices: list[np.ndarray], sizes: list[int], picks: np.ndarray) -> list[np.ndarray]:
    """The sorted indices, per tensor, of the entries `picks` names in the concatenation."""
    mask = np.zeros(sum(sizes), bool)
    mask[picks] = True
    return [i[m] for i, m in zip(indices, np.split(mask, np.cumsum(sizes)[:-1]))]


def varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of each value (< 2**32): 7 bits a byte, low first, 0x80 = more follow."""
    v = np.asarray(values, np.uint64)
    n_bytes = np.ones(v.size, np.int64)
    for shift in (7, 14, 21, 28):
        n_bytes += v >= (1 << shift)
    out = np.empty(int(n_bytes.sum()), np.uint8)
    ends = np.cumsum(n_bytes)
    starts = ends - n_bytes
    for k in range(int(n_bytes.max(initial=0))):
        has = n_bytes > k
        byte = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (n_bytes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


def read_varints(buf: bytes | memoryview, at: int, count: int) -> tuple[np.ndarray, int]:
    """`count` LEB128 values from buf[at:], and the offset after them; BAD_UPDATE if they do not parse."""
    raw = np.frombuffer(buf, np.uint8, offset=at)
    ends = np.flatnonzero(raw < 0x80)[:count]
    if ends.size < count:
        raise ProtocolError(Code.BAD_UPDATE, f"the update ends inside its {count} sparse indices")
    if count == 0:
        return np.zeros(0, np.int64), at
    starts = np.concatenate(([0], ends[:-1] + 1))
    if np.any(ends - starts > 4):
        raise ProtocolError(Code.BAD_UPDATE, "a sparse index varint longer than 5 bytes")
    if np.any(raw[ends[ends - starts == 4]] > 0x0F):  # a 5th byte holds bits 28..31 only
        raise ProtocolError(Code.BAD_UPDATE, "a sparse index varint of 2**32 or more")
    values = np.zeros(count, np.int64)
    for k in range(5):
        has = starts + k <= ends
        values[has] |= (raw[starts[has] + k].astype(np.int64) & 0x7F) << (7 * k)
    return values, at + int(ends[-1]) + 1


def decode(update: bytes, layers: Sequence[Layer], encoding: int, base: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """The image an update makes, written into `out` (the inactive slot) if given.

    ProtocolError BAD_UPDATE if the bytes do not parse exactly or decode to a non-finite value;
    BAD_ENCODING for an unknown encoding. Nothing outside `out` is written.
    """
    if encoding not in Encoding.__members__.values():
        raise ProtocolError(Code.BAD_ENCODING, f"encoding {encoding}")
    out = np.empty(size(layers), np.float32) if out is None else out
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

    for t, shape in zip(tensors(out, layers), shapes(layers)):
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
            gaps, at = read_varints(buf, at, count)
            index = np.cumsum(gaps + 1) - 1
            q = take(count, "i1")
            if count and index[-1] >= flat.size:
                raise ProtocolError(Code.BAD_UPDATE, f"sparse index {index[-1]} past a tensor of {flat.size}")
            with np.errstate(over="ignore", invalid="ignore"):  # a non-finite result is refused below
                flat[index] = flat[index] + q.astype(np.float32) * np.float32(scale)
    if at != len(buf):
        raise ProtocolError(Code.BAD_UPDATE, f"{len(buf) - at} bytes left over after the last tensor")
    if not np.isfinite(out).all():
        raise ProtocolError(Code.BAD_UPDATE, "the update decodes to NaN or Inf")
    return out


def update_id(base_id: int, total: int, encoding: int, flags: int, update: bytes) -> int:
    """The id the host gives an update: u32 of SHA-256(base_id | total | encoding | flags | update);
    never 0. It leaves out the counter, so a push of the same weights resumes (PROTOCOL.md §4)."""
    h = hashlib.sha256(struct.pack("<IIBB", base_id, total, encoding, flags) + update).digest()
    return int.from_bytes(h[:4], "little") or 1


def mac(key: bytes, kind: int, model: int, body: bytes, bound: bytes = b"") -> bytes:
    """HMAC-SHA256(key, context | type | model_id | bound | body): the signature of one request
    (PROTOCOL.md §5); `bound` is the session's BEGIN body for a COMMIT, else empty."""
    return hmac.new(key, MAC_CONTEXT + struct.pack("<BI", kind, model) + bound + body, hashlib.sha256).digest()


def verify(key: bytes, kind: int, model: int, body: bytes, tag: bytes, bound: bytes = b"") -> bool:
    """Whether `tag` is the signature of this request, compared in constant time."""
    return hmac.compare_digest(mac(key, kind, model, body, bound), tag)
