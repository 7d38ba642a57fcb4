"""The compact binary sensor frame: one sample per frame, for rates where CSV text is too slow.

A frame is a versioned, CRC-checked payload, COBS-encoded so that it contains no 0x00 byte, then
a 0x00 delimiter. A receiver that joins mid-stream (or meets garbage) resynchronises at the next
0x00; a sender may send a lone 0x00 first so the very first frame is not lost. All integers and
floats are little-endian.

    offset    size  field
    0         1     version: u8 = 1
    1         1     flags: u8; bit0 has label, bit1 label is float (only with bit0), bits 2-7 zero
    2         2     n: u16, the number of features
    4         4n    features: n x f32
    4+4n      4     label: i32 (class index) or f32 (float target); only if flags bit0
    end-4     4     CRC-32 (zlib.crc32) of every byte before it: u32

    wire:  cobs.encode(frame) + b"\\x00"

The receiver refuses a frame with a bad CRC, another version, unknown flags, a length that does
not match n, or n other than its n_features: each is skipped as "bad frame" with the detail.
A frame whose values are NaN or Inf is well formed (a sensor may send NaN for a failed reading),
so the encoder accepts it and the receiver skips it as "nan/inf".
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np
from cobs import cobs

from ..errors import BadSampleError
from .source import Delimited, Label, Sample, Stats, checked_sample

VERSION = 1
HAS_LABEL, FLOAT_LABEL = 0x01, 0x02
DELIMITER = b"\x00"
_HEADER = struct.Struct("<BBH")  # version, flags, n
_I32 = struct.Struct("<i")
_F32 = struct.Struct("<f")
_CRC = struct.Struct("<I")
MAX_FEATURES = 0xFFFF


def frame_size(n_features: int, labeled: bool = True) -> int:
    """Bytes of a frame before COBS encoding."""
    return _HEADER.size + 4 * n_features + (4 if labeled else 0) + _CRC.size


def encode_frame(x: np.ndarray, y: Label = None) -> bytes:
    """One sample as wire bytes: COBS(frame) + 0x00. `y`: an int (i32), a float (f32) or None."""
    x = np.asarray(x)
    if x.ndim != 1 or not 0 < x.size <= MAX_FEATURES or x.dtype.kind not in "biuf":
        raise BadSampleError(f"x must be 1-D with 1 to {MAX_FEATURES} numbers, got {x.dtype} {x.shape}")
    flags = 0
    label = b""
    if isinstance(y, (int, np.integer)):
        if not -2**31 <= y < 2**31:
            raise BadSampleError(f"y = {y!r} does not fit the frame's i32 label")
        flags, label = HAS_LABEL, _I32.pack(int(y))
    elif isinstance(y, (float, np.floating)):
        flags, label = HAS_LABEL | FLOAT_LABEL, _F32.pack(float(y))
    elif y is not None:
        raise BadSampleError(f"y = {y!r} is not an int, a float or None")
    frame = _HEADER.pack(VERSION, flags, x.size) + x.astype("<f4").tobytes() + label
    return cobs.encode(frame + _CRC.pack(zlib.crc32(frame))) + DELIMITER


def decode_frame(encoded: bytes, n_features: int) -> tuple[np.ndarray, Label]:
    """(x float32 (n_features,), y) of one COBS-encoded frame without its delimiter.

    Raises BadSampleError naming the fault. Values are not checked for NaN/Inf here.
    """
    try:
        frame = cobs.decode(encoded)
    except cobs.DecodeError as e:
        raise BadSampleError(f"not COBS: {e}") from None
    if len(frame) < _HEADER.size + _CRC.size:
        raise BadSampleError(f"{len(frame)} bytes is too short for a frame")
    body, (crc,) = frame[:-_CRC.size], _CRC.unpack_from(frame, len(frame) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise BadSampleError("CRC mismatch")
    version, flags, n = _HEADER.unpack_from(body)
    if version != VERSION:
        raise BadSampleError(f"frame version {version}; this receiver reads version {VERSION} only, "
                             "so sender and receiver must come from the same edgefdfa release")
    if flags & ~(HAS_LABEL | FLOAT_LABEL) or flags == FLOAT_LABEL:
        raise BadSampleError(f"unknown flags 0x{flags:02x}")
    if len(frame) != frame_size(n, bool(flags & HAS_LABEL)):
        raise BadSampleError(f"{len(frame)} bytes do not match n = {n} and flags 0x{flags:02x}")
    if n != n_features:
        raise BadSampleError(f"n = {n} features, expected {n_features}")
    x = np.frombuffer(body, dtype="<f4", count=n, offset=_HEADER.size).astype(np.float32)
    if not flags & HAS_LABEL:
        return x, None
    at = _HEADER.size + 4 * n
    if flags & FLOAT_LABEL:
        return x, _F32.unpack_from(body, at)[0]
    return x, _I32.unpack_from(body, at)[0]


class FrameDecoder:
    """Samples out of a byte stream of frames fed in arbitrary chunks; bad frames go to `stats`.

    Frames split across chunks are joined, garbage between frames costs at most the frame it
    touches, and memory is bounded by the largest valid frame. With `wait_for_delimiter` (a
    device joined mid-stream), bytes before the first 0x00 are dropped silently.
    """

    def __init__(self, n_features: int, stats: Stats, *, wait_for_delimiter: bool = False) -> None:
        self.n_features = n_features
        self.stats = stats
        self.position = 0  # frames seen
        longest = frame_size(n_features)
        self._records = Delimited(DELIMITER, longest + longest // 254 + 1,
                                  wait_for_delimiter=wait_for_delimiter)

    def restart(self) -> None:
        """A new stream begins (a device came back): drop any partial frame."""
        self._records.restart()

    def feed(self, chunk: bytes) -> Iterator[Sample]:
        for record in self._records.feed(chunk):
            if record == b"":  # two delimiters in a row: a sync byte, not a frame
                continue
            self.position += 1
            if record is None:
                self.stats.skip("bad frame", self.position, "", "longer than any valid frame")
                continue
            try:
                x, y = decode_frame(record, self.n_features)
            except BadSampleError as e:
                self.stats.skip("bad frame", self.position, record.hex(), str(e))
                continue
            sample = checked_sample(x, y, self.stats, self.position, record.hex())
            if sample is not None:
                yield sample
