"""The bridge's frame codec (PROTOCOL.md §1): header | payload | CRC-32, COBS-encoded, 0x00-delimited.

    offset  size  field
    0       2     magic b"EB"
    2       1     version u8 (1)
    3       1     type u8 (protocol.MsgType)
    4       2     seq u16
    6       2     length u16 n
    8       n     payload
    8+n     4     CRC-32 (zlib.crc32) of bytes 0 .. 8+n-1

    wire = cobs.encode(frame) + b"\\x00"

On the host, COBS is the `cobs` package (cobs.cobs, a maintained C-accelerated implementation) and
the CRC is `zlib.crc32` from the standard library (IEEE 802.3, the same CRC a C receiver computes
with the reflected polynomial 0xEDB88320). The sensor framing in edgefdfa/stream/frame.py is a
different format for a different job; this one belongs to the bridge.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from cobs import cobs

from .protocol import MAGIC, VERSION, Code, ProtocolError

DELIMITER = b"\x00"
HEADER = struct.Struct("<2sBBHH")  # magic, version, type, seq, length
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size  # 12 bytes around every payload
MIN_FRAME, MAX_FRAME_LIMIT = 128, 4096  # the range of max_frame a device may announce


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its message type, sequence number and payload."""

    kind: int
    seq: int
    payload: bytes


class FrameError(ProtocolError):
    """A record that is not a valid frame. `seq` and `kind` are set only when the CRC held (the
    header is trustworthy), so the receiver can answer with ERROR; otherwise the frame is dropped."""

    def __init__(self, code: Code, detail: str, seq: int | None = None, kind: int | None = None) -> None:
        super().__init__(code, detail)
        self.seq, self.kind = seq, kind


def encode(kind: int, seq: int, payload: bytes = b"", *, version: int = VERSION) -> bytes:
    """Wire bytes of one frame: COBS(header | payload | crc) + 0x00."""
    if not 0 <= seq <= 0xFFFF or len(payload) > MAX_FRAME_LIMIT - OVERHEAD:
        raise ValueError(f"seq {seq!r} or payload of {len(payload)} bytes does not fit a frame")
    body = HEADER.pack(MAGIC, version, kind, seq, len(payload)) + payload
    return cobs.encode(body + CRC.pack(zlib.crc32(body))) + DELIMITER


def decode(record: bytes, max_frame: int = MAX_FRAME_LIMIT) -> Frame:
    """The frame in one COBS record (without its delimiter); FrameError naming the first fault."""
    try:
        raw = cobs.decode(record)
    except cobs.DecodeError as e:
        raise FrameError(Code.BAD_COBS, str(e)) from None
    if len(raw) < OVERHEAD:
        raise FrameError(Code.BAD_LENGTH, f"{len(raw)} bytes is shorter than a frame's {OVERHEAD}")
    if len(raw) > max_frame:
        raise FrameError(Code.TOO_LONG, f"{len(raw)} bytes is over max_frame {max_frame}")
    (crc,) = CRC.unpack_from(raw, len(raw) - CRC.size)
    if zlib.crc32(raw[:-CRC.size]) != crc:
        raise FrameError(Code.BAD_CRC, "CRC-32 mismatch")
    magic, version, kind, seq, length = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise FrameError(Code.BAD_MAGIC, f"magic {magic!r}, expected {MAGIC!r}", seq, kind)
    if version != VERSION:
        raise FrameError(Code.BAD_VERSION, f"protocol version {version}; this side speaks {VERSION}", seq, kind)
    if OVERHEAD + length != len(raw):
        raise FrameError(Code.BAD_LENGTH, f"header says {length} payload bytes, frame holds {len(raw) - OVERHEAD}",
                         seq, kind)
    return Frame(kind, seq, raw[HEADER.size:-CRC.size])


class FrameReader:
    """Frames out of a byte stream fed in arbitrary pieces.

    Memory is bounded: an undelimited record longer than any valid frame's COBS form is dropped up
    to the next 0x00 and reported as TOO_LONG. Empty records (0x00 0x00) are sync bytes, skipped.
    """

    def __init__(self, max_frame: int = MAX_FRAME_LIMIT) -> None:
        self.max_frame = max_frame
        self._limit = max_frame + max_frame // 254 + 1  # the longest COBS form of a valid frame
        self._buffer = bytearray()
        self._overlong = False

    def feed(self, data: bytes) -> Iterator[Frame | FrameError]:
        """Each complete record in `data` (joined with earlier pieces) as a Frame or a FrameError."""
        *records, rest = bytes(data).split(DELIMITER)
        for record in records:
            whole = bytes(self._buffer) + record
            overlong, self._overlong = self._overlong or len(whole) > self._limit, False
            self._buffer.clear()
            if overlong:
                yield FrameError(Code.TOO_LONG, f"a record over {self._limit} bytes")
            elif whole:
                try:
                    yield decode(whole, self.max_frame)
                except FrameError as e:
                    yield e
        self._buffer += rest
        if len(self._buffer) > self._limit:
            self._buffer.clear()
            self._overlong = True
