"""The messages of the firmware bridge protocol (PROTOCOL.md §2, §7): types, payload layouts,
named error codes and the errors the bridge raises.

Each message is a small dataclass with `pack() -> bytes` and `unpack(payload) -> message`;
`unpack` raises ProtocolError(Code.BAD_LENGTH) on a payload of the wrong size and never reads
outside it. `decode_message(type, payload)` picks the class by type.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from edgefdfa.errors import EdgeFDFAError
from edgefdfa.head import Layer

MAGIC = b"EB"
VERSION = 2  # PROTOCOL.md: 2 authenticates every state change with a security counter
DIGEST_BYTES = 32  # SHA-256 and HMAC-SHA256
SIGNED = 0x01  # BEGIN and UPDATE flags bit0: the message carries an HMAC
KEYED = 0x01  # HELLO flags bit0: the device accepts only signed state changes
LEARNS = 0x02  # HELLO flags bit1: the device takes LEARN and SAVE (PROTOCOL.md §8)
TARGETS = 0x04  # HELLO flags bit2: its loss is MSE, a LEARN sample carries K float targets (else a u32 label)
NONE = 0xFFFFFFFF  # STATUS previous_id of an empty inactive slot (0 is the factory weights' id)


class Code(IntEnum):
    """Named error codes, one byte on the wire (PROTOCOL.md §7)."""

    OK = 0
    BAD_COBS = 1
    BAD_CRC = 2
    BAD_MAGIC = 3
    BAD_VERSION = 4
    BAD_LENGTH = 5
    BAD_TYPE = 6
    TOO_LONG = 7
    NOT_IN_SESSION = 8
    OUT_OF_BOUNDS = 9
    TOO_LARGE = 10
    BAD_ENCODING = 11
    INCOMPLETE = 12
    BAD_DIGEST = 13
    BAD_SIGNATURE = 14
    UNSIGNED = 15
    BASE_MISMATCH = 16
    BAD_UPDATE = 17
    NO_PREVIOUS = 18
    BAD_INPUT = 19
    GAP = 20
    BAD_FLAGS = 21
    MODEL_MISMATCH = 22
    TIMEOUT = 23
    STORAGE = 24
    STALE = 25
    BAD_LABEL = 26
    NOT_LEARNING = 27


class ProtocolError(EdgeFDFAError, ValueError):
    """A frame or message broke the protocol, or a device refused a request; `code` names why."""

    def __init__(self, code: Code | int, detail: str = "") -> None:
        self.code = Code(code) if code in Code.__members__.values() else code  # a newer device's code stays an int
        name = self.code.name if isinstance(self.code, Code) else f"error code {code}"
        super().__init__(f"{name}: {detail}" if detail else name)


class DeviceTimeout(ProtocolError, TimeoutError):
    """The device gave no valid reply within the retries (a cut cable, a dead device)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Code.TIMEOUT, detail)


class MsgType(IntEnum):
    """Message types: host -> device 0x01..0x0a, device -> host 0x81..0x88."""

    HELLO_REQ = 0x01
    BEGIN = 0x02
    CHUNK = 0x03
    COMMIT = 0x04
    STATUS_REQ = 0x05
    ROLLBACK = 0x06
    INFER = 0x07
    UPDATE = 0x08
    LEARN = 0x09
    SAVE = 0x0A
    HELLO = 0x81
    ACK = 0x82
    NACK = 0x83
    ACTIVE = 0x84
    STATUS = 0x85
    OUTPUT = 0x86
    LEARNED = 0x87
    ERROR = 0x88


class Encoding(IntEnum):
    """How the update's tensors are written (PROTOCOL.md §4)."""

    F32 = 0
    F16 = 1
    INT8_TENSOR = 2
    INT8_CHANNEL = 3
    SPARSE_INT8 = 4


class StepStatus(IntEnum):
    """What one LEARN sample's step did (LEARNED, PROTOCOL.md §8): the kernel's divergence checks."""

    LEARNED = 0
    DIVERGED_LOSS = 1
    DIVERGED_STEP = 2
    DIVERGED_FEEDBACK = 3


class State(IntEnum):
    """The device's session state (STATUS)."""

    IDLE = 0
    RECEIVING = 1


def _fixed(fmt: str, payload: bytes, what: str) -> tuple:
    s = struct.Struct(fmt)
    if len(payload) != s.size:
        raise ProtocolError(Code.BAD_LENGTH, f"{what} payload is {len(payload)} bytes, expected {s.size}")
    return s.unpack(payload)


@dataclass(frozen=True)
class Empty:
    """HELLO_REQ and STATUS_REQ: no payload."""

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> Empty:
        if payload:
            raise ProtocolError(Code.BAD_LENGTH, f"expected an empty payload, got {len(payload)} bytes")
        return cls()


def layer_table(layers: tuple[Layer, ...]) -> bytes:
    """HELLO's layer table bytes: u8 n_layers then (u16 n_out, u16 n_in, u8 activation) each."""
    return bytes([len(layers)]) + b"".join(struct.pack("<HHB", l.n_out, l.n_in, l.activation) for l in layers)


def model_id(layers: tuple[Layer, ...]) -> int:
    """CRC-32 of the layer table: the head's shape, as HELLO names it."""
    return zlib.crc32(layer_table(layers))


@dataclass(frozen=True)
class Hello:
    """The device describes itself."""

    max_frame: int
    encodings: int  # bit e: Encoding e accepted
    flags: int  # KEYED
    slot_size: int
    model_id: int
    active_id: int
    counter: int  # the security counter: a keyed device takes a state change only with a higher one
    layers: tuple[Layer, ...]
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<HBBIIII")

    def pack(self) -> bytes:
        return self._FIXED.pack(self.max_frame, self.encodings, self.flags, self.slot_size, self.model_id,
                                self.active_id, self.counter) + layer_table(self.layers)

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        n = cls._FIXED.size
        if len(payload) < n + 1 or len(payload) != n + 1 + 5 * payload[n]:
            raise ProtocolError(Code.BAD_LENGTH, f"HELLO payload of {len(payload)} bytes does not match its layer count")
        layers = tuple(Layer(*struct.unpack_from("<HHB", payload, n + 1 + 5 * i)) for i in range(payload[n]))
        return cls(*cls._FIXED.unpack_from(payload), layers)


def _signed(payload: bytes, fields: int, flags: int, what: str) -> tuple[bytes, bytes]:
    """(the fields, the hmac) of a payload of `fields` bytes and a 32-byte hmac iff `flags` has SIGNED."""
    n = fields + (DIGEST_BYTES if flags & SIGNED else 0)
    if len(payload) != n:
        raise ProtocolError(Code.BAD_LENGTH, f"{what} payload is {len(payload)} bytes, expected {n}")
    return payload[:fields], bytes(payload[fields:])


@dataclass(frozen=True)
class Begin:
    """Start (or resume) an update of `total` encoded bytes whose SHA-256 is `update_hash`, at the
    security counter `counter` (PROTOCOL.md §5)."""

    update_id: int
    base_id: int
    total: int
    encoding: int
    flags: int
    counter: int = 0
    update_hash: bytes = bytes(DIGEST_BYTES)
    hmac: bytes = b""  # 32 bytes iff flags has SIGNED, else empty
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<IIIBBI")
    FIELDS: ClassVar[int] = 18 + DIGEST_BYTES  # bytes before the hmac

    def body(self) -> bytes:
        """The payload without its hmac: what the hmac signs, and what names the session."""
        return self._FIXED.pack(self.update_id, self.base_id, self.total, self.encoding, self.flags,
                                self.counter) + self.update_hash

    def pack(self) -> bytes:
        return self.body() + self.hmac

    def same_update(self, other: Begin | None) -> bool:
        """Whether `other` begins the same update (every field but the counter and the hmac)."""
        return other is not None and self.body()[:14] == other.body()[:14] and self.update_hash == other.update_hash

    @classmethod
    def unpack(cls, payload: bytes) -> Begin:
        if len(payload) < cls.FIELDS:
            raise ProtocolError(Code.BAD_LENGTH, f"BEGIN payload is {len(payload)} bytes, expected 50 or 82")
        fields, mac = _signed(payload, cls.FIELDS, payload[13], "BEGIN")
        return cls(*cls._FIXED.unpack_from(fields), bytes(fields[18:]), mac)


@dataclass(frozen=True)
class Chunk:
    """`data` to write at `offset` of the update."""

    offset: int
    data: bytes

    def pack(self) -> bytes:
        return struct.pack("<I", self.offset) + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> Chunk:
        if len(payload) < 5:
            raise ProtocolError(Code.BAD_LENGTH, f"CHUNK payload of {len(payload)} bytes holds no data")
        return cls(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))


@dataclass(frozen=True)
class Commit:
    """Install the update if its decoded image has `digest` (and `hmac` verifies, on a keyed device)."""

    update_id: int
    digest: bytes
    hmac: bytes = b""  # empty or 32 bytes

    def body(self) -> bytes:
        """The payload without its hmac."""
        return struct.pack("<I", self.update_id) + self.digest

    def pack(self) -> bytes:
        return self.body() + self.hmac

    @classmethod
    def unpack(cls, payload: bytes) -> Commit:
        if len(payload) not in (4 + DIGEST_BYTES, 4 + 2 * DIGEST_BYTES):
            raise ProtocolError(Code.BAD_LENGTH, f"COMMIT payload is {len(payload)} bytes, expected 36 or 68")
        return cls(struct.unpack_from("<I", payload)[0], bytes(payload[4:36]), bytes(payload[36:]))


@dataclass(frozen=True)
class Update:
    """BEGIN, the whole update and COMMIT in one frame, for an update that fits one (PROTOCOL.md §2):
    the device handles it as BEGIN(total = len(data), update_hash = SHA-256(data)), CHUNK(0, data),
    COMMIT, once its own hmac verifies."""

    update_id: int
    base_id: int
    encoding: int
    flags: int
    counter: int
    digest: bytes
    hmac: bytes  # 32 bytes iff flags has SIGNED, else empty
    data: bytes
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<IIBBI")
    FIELDS: ClassVar[int] = 14 + DIGEST_BYTES  # bytes before the hmac

    @property
    def begin(self) -> Begin:
        """The BEGIN this UPDATE stands for (unsigned: the UPDATE's own hmac covers it)."""
        return Begin(self.update_id, self.base_id, len(self.data), self.encoding, self.flags, self.counter,
                     hashlib.sha256(self.data).digest())

    @property
    def commit(self) -> Commit:
        return Commit(self.update_id, self.digest)

    def body(self) -> bytes:
        """The payload without its hmac: what the hmac signs."""
        return self._FIXED.pack(self.update_id, self.base_id, self.encoding, self.flags, self.counter) + \
            self.digest + self.data

    def pack(self) -> bytes:
        return self._FIXED.pack(self.update_id, self.base_id, self.encoding, self.flags, self.counter) + \
            self.digest + self.hmac + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> Update:
        head = cls.FIELDS + (DIGEST_BYTES if len(payload) > 9 and payload[9] & SIGNED else 0)
        if len(payload) <= head:
            raise ProtocolError(Code.BAD_LENGTH, f"UPDATE payload of {len(payload)} bytes: its fields take {head} "
                                                 "and the update at least 1")
        return cls(*cls._FIXED.unpack_from(payload), bytes(payload[14:cls.FIELDS]), bytes(payload[cls.FIELDS:head]),
                   bytes(payload[head:]))


@dataclass(frozen=True)
class Learn:
    """Samples for the device to learn from, one SGD step each (PROTOCOL.md §8). `samples` is their
    bytes as they go on the wire: each n_in float32 inputs, then a u32 label or K float32 targets;
    the device, which knows its head, splits and checks them."""

    flags: int
    counter: int
    n: int
    hmac: bytes  # 32 bytes iff flags has SIGNED, else empty
    samples: bytes
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BIB")
    FIELDS: ClassVar[int] = 6  # bytes before the hmac

    def body(self) -> bytes:
        """The payload without its hmac: what the hmac signs."""
        return self._FIXED.pack(self.flags, self.counter, self.n) + self.samples

    def pack(self) -> bytes:
        return self._FIXED.pack(self.flags, self.counter, self.n) + self.hmac + self.samples

    @classmethod
    def unpack(cls, payload: bytes) -> Learn:
        if len(payload) < cls.FIELDS:
            raise ProtocolError(Code.BAD_LENGTH, f"LEARN payload of {len(payload)} bytes; its fields take {cls.FIELDS}")
        flags, counter, n = cls._FIXED.unpack_from(payload)
        if flags & ~SIGNED:
            raise ProtocolError(Code.BAD_FLAGS, f"LEARN flags 0x{flags:02x}")
        head = cls.FIELDS + (DIGEST_BYTES if flags & SIGNED else 0)
        if len(payload) < head:
            raise ProtocolError(Code.BAD_LENGTH, f"LEARN payload of {len(payload)} bytes; a signed one's fields take {head}")
        return cls(flags, counter, n, bytes(payload[cls.FIELDS:head]), bytes(payload[head:]))


@dataclass(frozen=True)
class Save:
    """Make the device's working copy its active weights, persistently (PROTOCOL.md §8)."""

    flags: int
    counter: int
    hmac: bytes = b""  # 32 bytes iff flags has SIGNED, else empty
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<BI")

    def body(self) -> bytes:
        return self._FIXED.pack(self.flags, self.counter)

    def pack(self) -> bytes:
        return self.body() + self.hmac

    @classmethod
    def unpack(cls, payload: bytes) -> Save:
        if len(payload) not in (5, 5 + DIGEST_BYTES):
            raise ProtocolError(Code.BAD_LENGTH, f"SAVE payload is {len(payload)} bytes, expected 5 or 37")
        flags, counter = cls._FIXED.unpack_from(payload)
        if flags & ~SIGNED:
            raise ProtocolError(Code.BAD_FLAGS, f"SAVE flags 0x{flags:02x}")
        if bool(flags & SIGNED) != (len(payload) > 5):
            raise ProtocolError(Code.BAD_LENGTH, "SAVE carries an HMAC iff its flags say SIGNED")
        return cls(flags, counter, bytes(payload[5:]))


@dataclass(frozen=True)
class Learned:
    """The device learned (or refused) each sample of a LEARN: per sample its status, the class it
    predicted before the step and the loss before the step; `steps` applied so far and the step count
    `saved_steps` of the weights last saved."""

    steps: int
    saved_steps: int
    status: tuple[int, ...]
    predicted: tuple[int, ...]
    loss: tuple[float, ...]
    _FIXED: ClassVar[struct.Struct] = struct.Struct("<IIB")
    _ENTRY: ClassVar[struct.Struct] = struct.Struct("<BHf")

    def pack(self) -> bytes:
        return self._FIXED.pack(self.steps, self.saved_steps, len(self.status)) + b"".join(
            self._ENTRY.pack(*e) for e in zip(self.status, self.predicted, self.loss))

    @classmethod
    def unpack(cls, payload: bytes) -> Learned:
        n = cls._FIXED.size
        if len(payload) < n or len(payload) != n + cls._ENTRY.size * payload[n - 1]:
            raise ProtocolError(Code.BAD_LENGTH, f"LEARNED payload of {len(payload)} bytes does not match its count")
        steps, saved, count = cls._FIXED.unpack_from(payload)
        entries = [cls._ENTRY.unpack_from(payload, n + cls._ENTRY.size * i) for i in range(count)]
        status, predicted, loss = (tuple(c) for c in zip(*entries)) if entries else ((), (), ())
        return cls(steps, saved, status, predicted, loss)


@dataclass(frozen=True)
class Ack:
    """Cumulative: the device holds bytes [0, have) of the update."""

    have: int

    def pack(self) -> bytes:
        return struct.pack("<I", self.have)

    @classmethod
    def unpack(cls, payload: bytes) -> Ack:
        return cls(*_fixed("<I", payload, "ACK"))


@dataclass(frozen=True)
class Nack:
    """The device holds [0, have) and refused a chunk for `code` (GAP: resend from `have`)."""

    have: int
    code: int

    def pack(self) -> bytes:
        return struct.pack("<IB", self.have, self.code)

    @classmethod
    def unpack(cls, payload: bytes) -> Nack:
        return cls(*_fixed("<IB", payload, "NACK"))


@dataclass(frozen=True)
class Active:
    """The weights now active: their update id (0: factory) and the SHA-256 of their image."""

    active_id: int
    digest: bytes

    def pack(self) -> bytes:
        return struct.pack("<I", self.active_id) + self.digest

    @classmethod
    def unpack(cls, payload: bytes) -> Active:
        if len(payload) != 4 + DIGEST_BYTES:
            raise ProtocolError(Code.BAD_LENGTH, f"ACTIVE payload is {len(payload)} bytes, expected 36")
        return cls(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))


@dataclass(frozen=True)
class Rollback:
    """Make the weights with update id `to_id` (those in the inactive slot) active again, at the
    security counter `counter`."""

    to_id: int
    counter: int = 0
    hmac: bytes = b""  # empty or 32 bytes

    def body(self) -> bytes:
        """The payload without its hmac: what the hmac signs."""
        return struct.pack("<II", self.to_id, self.counter)

    def pack(self) -> bytes:
        return self.body() + self.hmac

    @classmethod
    def unpack(cls, payload: bytes) -> Rollback:
        if len(payload) not in (8, 8 + DIGEST_BYTES):
            raise ProtocolError(Code.BAD_LENGTH, f"ROLLBACK payload is {len(payload)} bytes, expected 8 or 40")
        return cls(*struct.unpack_from("<II", payload), bytes(payload[8:]))


@dataclass(frozen=True)
class Status:
    """The device's session and slots."""

    state: int
    active_id: int
    previous_id: int  # the inactive slot's update id, what ROLLBACK restores; NONE: empty
    staged_id: int
    have: int
    total: int
    dropped: int  # frames dropped silently (bad COBS/CRC), saturating
    last_error: int
    _S: ClassVar[struct.Struct] = struct.Struct("<BIIIIIHB")

    def pack(self) -> bytes:
        return self._S.pack(self.state, self.active_id, self.previous_id, self.staged_id, self.have, self.total,
                            min(self.dropped, 0xFFFF), self.last_error)

    @classmethod
    def unpack(cls, payload: bytes) -> Status:
        return cls(*_fixed(cls._S.format, payload, "STATUS"))


@dataclass(frozen=True)
class Vector:
    """INFER's input and OUTPUT's result: float32 values."""

    values: np.ndarray  # (n,) float32

    def pack(self) -> bytes:
        return np.asarray(self.values, "<f4").tobytes()

    @classmethod
    def unpack(cls, payload: bytes) -> Vector:
        if len(payload) % 4:
            raise ProtocolError(Code.BAD_LENGTH, f"{len(payload)} bytes is not a whole number of float32")
        return cls(np.frombuffer(payload, "<f4").astype(np.float32))


@dataclass(frozen=True)
class Error:
    """The device refused the frame of type `about` for `code`."""

    code: int
    about: int

    def pack(self) -> bytes:
        return struct.pack("<BB", self.code, self.about)

    @classmethod
    def unpack(cls, payload: bytes) -> Error:
        return cls(*_fixed("<BB", payload, "ERROR"))


Message = (Empty | Hello | Begin | Chunk | Commit | Update | Rollback | Learn | Save | Ack | Nack | Active | Status
           | Vector | Learned | Error)

MESSAGES: dict[MsgType, type] = {
    MsgType.HELLO_REQ: Empty, MsgType.BEGIN: Begin, MsgType.CHUNK: Chunk, MsgType.COMMIT: Commit,
    MsgType.STATUS_REQ: Empty, MsgType.ROLLBACK: Rollback, MsgType.INFER: Vector, MsgType.UPDATE: Update,
    MsgType.LEARN: Learn, MsgType.SAVE: Save, MsgType.LEARNED: Learned,
    MsgType.HELLO: Hello, MsgType.ACK: Ack, MsgType.NACK: Nack, MsgType.ACTIVE: Active,
    MsgType.STATUS: Status, MsgType.OUTPUT: Vector, MsgType.ERROR: Error,
}


def decode_message(kind: int, payload: bytes) -> Message:
    """The message of type `kind`; ProtocolError BAD_TYPE or BAD_LENGTH if it is not one."""
    try:
        cls = MESSAGES[MsgType(kind)]
    except ValueError:
        raise ProtocolError(Code.BAD_TYPE, f"unknown message type 0x{kind:02x}") from None
    return cls.unpack(payload)
