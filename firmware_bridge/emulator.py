"""A device in Python: two weight slots, a staging buffer and the device side of the session
(PROTOCOL.md §6), and, configured to learn, the device's own learning (§8), served over a serial port. Tests and the demo use it where a microcontroller
would sit; the C receiver implements the same state machine.

    edgefdfa device --port PORT | --pty [--key FILE] [--model CHECKPOINT_OR_MODEL_OR_BUNDLE] [--learn [--lr LR] ...]

`--pty` serves one end of a fresh virtual null-modem cable (firmware_bridge.cable) and prints the
path of the other end, the port a host opens (as QEMU's `-serial pty` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import threading
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import serial


from edgefdfa.head import Dense, Layer, image_of, layers_of, size
from . import encoding as enc
from . import image as img
from .cable import Cable
from .learning import Learning, LearnConfig, Saved
from .frame import MAX_FRAME_LIMIT, MIN_FRAME, Frame, FrameError, FrameReader, encode
from .link import open_port
from .protocol import (
    DIGEST_BYTES,
    KEYED,
    LEARNS,
    NONE,
    SIGNED,
    Ack,
    Active,
    Begin,
    Chunk,
    Code,
    Commit,
    Encoding,
    Error,
    Hello,
    Learn,
    Learned,
    Message,
    MsgType,
    Nack,
    ProtocolError,
    Rollback,
    Save,
    State,
    Status,
    TARGETS,
    Update,
    Vector,
    decode_message,
    model_id,
)

ALL_ENCODINGS = sum(1 << e for e in Encoding)
Reply = tuple[MsgType, int, Message]  # type, seq, message


class Device:
    """The device's memory and state machine; `handle` maps one received frame to its replies.

    Slots, ids and the security counter persist across `reset` (they model flash), and so does what
    the last record saved of learning (`learn`: the step count, the generator, the feedback); the
    session (staging), the working copy's unsaved steps and the learn floor do not.
    """

    def __init__(self, layers: Sequence[Layer], weights: np.ndarray, *, key: bytes | None = None,
                 max_frame: int = 1024, encodings: int = ALL_ENCODINGS, learn: LearnConfig | None = None) -> None:
        if not MIN_FRAME <= max_frame <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame {max_frame!r} is outside [{MIN_FRAME}, {MAX_FRAME_LIMIT}]")
        self.layers = tuple(layers)
        self.key, self.max_frame, self.encodings = key, max_frame, encodings
        self.model_id = model_id(self.layers)
        self.slot_size = 4 * size(self.layers)
        self.slots = np.zeros((2, size(self.layers)), np.float32)  # (2, size): active and inactive
        self.slots[0] = weights
        self.ids, self.valid, self.active = [0, 0], [True, False], 0
        self.counter = 0  # the security counter of the last state change (persisted with the slots)
        self.learning = Learning(self.layers, learn, weights) if learn else None
        self.saved: Saved | None = self.learning.saved() if self.learning else None  # persisted with the record
        self.staging = bytearray(self.slot_size)
        self.dropped, self.last_error = 0, Code.OK
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """A power cycle: the session and staging are lost, the slots, the active index and the
        security counter kept."""
        with self.lock:
            self.session: Begin | None = None
            self.have, self.nacked_at = 0, -1
            self.learn_floor = self.counter  # the last LEARN's counter; the persisted one (0 unkeyed) after a reset
            if self.learning:
                self.learning.restore(self.saved, self.weights)

    @property
    def weights(self) -> np.ndarray:
        """The active image."""
        return self.slots[self.active]

    @property
    def serving(self) -> np.ndarray:
        """The image INFER and LEARN run: the working copy on a learning device, else the active one."""
        return self.learning.working if self.learning else self.weights

    @property
    def floor(self) -> int:
        """HELLO's counter: a keyed device takes a new state change only with a counter above it, and
        a learning device a LEARN only with one above it."""
        session = self.session.counter if self.session and self.key else 0
        return max(self.counter, session, self.learn_floor)

    def handle(self, item: Frame | FrameError) -> list[Reply]:
        """The replies to one received record (possibly none)."""
        with self.lock:
            if isinstance(item, FrameError):
                if item.seq is None:  # noise: its header cannot be trusted, so do not answer
                    self.dropped += 1
                    return []
                return [self._error(item.seq, item.code, item.kind or 0)]
            try:
                if item.kind & 0x80:  # known (the frame decoder checked), but never sent to a device
                    raise ProtocolError(Code.BAD_TYPE, "a device never accepts device messages")
                message = decode_message(item.kind, item.payload)
                return self._dispatch(MsgType(item.kind), item.seq, message)
            except ProtocolError as e:
                return [self._error(item.seq, e.code, item.kind)]

    def _error(self, seq: int, code: Code, about: int) -> Reply:
        self.last_error = code
        return MsgType.ERROR, seq, Error(code, about)

    def _active(self, seq: int) -> Reply:
        return MsgType.ACTIVE, seq, Active(self.ids[self.active], img.digest(self.weights))

    def _authentic(self, kind: MsgType, body: bytes, tag: bytes, bound: bytes = b"") -> None:
        """On a keyed device: UNSIGNED without an hmac, BAD_SIGNATURE if it does not verify."""
        if self.key is None:
            return
        if not tag:
            raise ProtocolError(Code.UNSIGNED, f"this device accepts only a signed {kind.name}")
        if not enc.verify(self.key, kind, self.model_id, body, tag, bound):
            raise ProtocolError(Code.BAD_SIGNATURE, f"the {kind.name}'s HMAC does not verify")

    def _fresh(self, counter: int) -> None:
        """On a keyed device: STALE unless `counter` is above the device's."""
        if self.key and counter <= self.floor:
            raise ProtocolError(Code.STALE, f"security counter {counter}; the device is at {self.floor}")

    def _dispatch(self, kind: MsgType, seq: int, m: Message) -> list[Reply]:
        if kind == MsgType.HELLO_REQ:
            flags = (KEYED if self.key else 0) | (LEARNS if self.learning else 0) | \
                (TARGETS if self.learning and self.learning.targets else 0)
            return [(MsgType.HELLO, seq, Hello(self.max_frame, self.encodings, flags,
                                               self.slot_size, self.model_id, self.ids[self.active], self.floor,
                                               self.layers))]
        if kind == MsgType.STATUS_REQ:
            other = 1 - self.active
            s = self.session
            return [(MsgType.STATUS, seq, Status(State.RECEIVING if s else State.IDLE, self.ids[self.active],
                                                 self.ids[other] if self.valid[other] else NONE,
                                                 s.update_id if s else 0, self.have, s.total if s else 0,
                                                 self.dropped, self.last_error))]
        if kind == MsgType.INFER:
            x = m.values
            if x.size != self.layers[0].n_in or not np.isfinite(x).all():
                raise ProtocolError(Code.BAD_INPUT, f"{x.size} inputs, expected {self.layers[0].n_in}")
            return [(MsgType.OUTPUT, seq, Vector(img.forward(self.serving, self.layers, x)))]
        if kind == MsgType.LEARN:
            return [self._learn(seq, m)]
        if kind == MsgType.SAVE:
            return [self._save(seq, m)]
        if kind == MsgType.ROLLBACK:
            return [self._rollback(seq, m)]
        if kind == MsgType.BEGIN:
            self._begin(m, m.hmac)
            return [(MsgType.ACK, seq, Ack(self.have))]
        if kind == MsgType.CHUNK:
            return self._chunk(seq, m)
        if kind == MsgType.UPDATE:
            return [self._update(seq, m)]
        return [self._commit(seq, m)]

    def _rollback(self, seq: int, r: Rollback) -> Reply:
        self._authentic(MsgType.ROLLBACK, r.body(), r.hmac)
        other = 1 - self.active
        if self.ids[self.active] != r.to_id:  # equal: a resent ROLLBACK already done
            if not self.valid[other] or self.ids[other] != r.to_id:
                raise ProtocolError(Code.NO_PREVIOUS, f"update {r.to_id} is not in the inactive slot")
            self._fresh(r.counter)
            self._swap(other, r.counter)
        return self._active(seq)

    def _begin(self, b: Begin, tag: bytes, kind: MsgType = MsgType.BEGIN, body: bytes | None = None) -> None:
        """BEGIN's checks (an UPDATE's: its own type, body and hmac), then the session: a new one, or
        the same update resumed. A refusal changes nothing."""
        if b.update_id == 0 or b.flags & ~SIGNED:
            raise ProtocolError(Code.BAD_FLAGS, f"update id {b.update_id}, flags 0x{b.flags:02x}")
        if b.encoding >= 8 or not self.encodings >> b.encoding & 1:
            raise ProtocolError(Code.BAD_ENCODING, f"encoding {b.encoding}")
        if b.total > self.slot_size:
            raise ProtocolError(Code.TOO_LARGE, f"{b.total} bytes for a {self.slot_size}-byte slot")
        self._authentic(kind, b.body() if body is None else body, tag)
        resume = b.same_update(self.session) and (not self.key or self.counter < b.counter >= self.session.counter)
        if not resume:
            self._fresh(b.counter)
        if b.encoding == Encoding.SPARSE_INT8 and b.base_id != self.ids[self.active]:
            raise ProtocolError(Code.BASE_MISMATCH, f"delta against {b.base_id}, active is {self.ids[self.active]}")
        if not resume:
            self.have, self.nacked_at = 0, -1
        self.session = dataclasses.replace(b, hmac=b"")

    def _chunk(self, seq: int, c: Chunk) -> list[Reply]:
        if self.session is None:
            raise ProtocolError(Code.NOT_IN_SESSION, "CHUNK before BEGIN")
        if c.offset + len(c.data) > self.session.total:
            raise ProtocolError(Code.OUT_OF_BOUNDS, f"{len(c.data)} bytes at {c.offset} past {self.session.total}")
        if c.offset > self.have:
            if self.nacked_at == self.have:
                return []
            self.nacked_at = self.have
            self.last_error = Code.GAP
            return [(MsgType.NACK, seq, Nack(self.have, Code.GAP))]
        if c.offset == self.have:
            self.staging[c.offset:c.offset + len(c.data)] = c.data
            self.have += len(c.data)
        return [(MsgType.ACK, seq, Ack(self.have))]

    def _update(self, seq: int, u: Update) -> Reply:
        """BEGIN, CHUNK(0, data) and COMMIT in one, authenticated by the UPDATE's own hmac; the first
        refusal is the answer."""
        if u.update_id == self.ids[self.active] and u.digest == img.digest(self.weights):
            return self._active(seq)  # a resent UPDATE of what is already active: nothing changes
        self._begin(u.begin, u.hmac, MsgType.UPDATE, u.body())
        self.staging[:len(u.data)] = u.data
        self.have = len(u.data)
        return self._commit(seq, u.commit, authenticated=True)

    def _commit(self, seq: int, c: Commit, authenticated: bool = False) -> Reply:
        s = self.session
        if s is None:
            if c.update_id == self.ids[self.active] and c.digest == img.digest(self.weights):
                return self._active(seq)  # a resent COMMIT of what is already active
            raise ProtocolError(Code.NOT_IN_SESSION, "COMMIT without a BEGIN")
        if c.update_id != s.update_id:
            raise ProtocolError(Code.BAD_DIGEST, f"COMMIT of update {c.update_id}, the session is {s.update_id}")
        if self.have < s.total:
            raise ProtocolError(Code.INCOMPLETE, f"{self.have} of {s.total} bytes")
        if not authenticated:
            if bool(s.flags & SIGNED) != (len(c.hmac) == DIGEST_BYTES):
                raise ProtocolError(Code.BAD_LENGTH, "the COMMIT's HMAC does not match BEGIN's SIGNED flag")
            self._authentic(MsgType.COMMIT, c.body(), c.hmac, s.body())
        if self.key and s.counter <= self.counter:
            raise ProtocolError(Code.STALE, f"the session's counter {s.counter} is not above the device's "
                                            f"{self.counter} (a ROLLBACK came after its BEGIN)")
        self.session = None  # from here on, any failure drops the staged update
        if hashlib.sha256(self.staging[:s.total]).digest() != s.update_hash:
            raise ProtocolError(Code.BAD_DIGEST, "the staged update does not hash to BEGIN's update hash")
        if s.encoding == Encoding.SPARSE_INT8 and s.base_id != self.ids[self.active]:
            raise ProtocolError(Code.BASE_MISMATCH, f"delta against {s.base_id}, active is {self.ids[self.active]}")
        inactive = 1 - self.active
        self.valid[inactive] = False
        enc.decode(bytes(self.staging[:s.total]), self.layers, s.encoding, self.weights, out=self.slots[inactive])
        if img.digest(self.slots[inactive]) != c.digest:
            raise ProtocolError(Code.BAD_DIGEST, "the decoded image does not match the COMMIT's digest")
        self.ids[inactive], self.valid[inactive] = s.update_id, True
        self._swap(inactive, s.counter)
        return self._active(seq)

    def _swap(self, slot: int, counter: int) -> None:
        """Make `slot` active: one write of the record, which holds the keyed device's counter (never
        below its learn floor) and what learning carries on with; the working copy becomes that slot."""
        if self.key:
            self.counter = max(counter, self.learn_floor)
        self.active = slot
        if self.learning:
            self.learning.working[:] = self.weights  # unsaved learning is dropped: the host asked for these
            self.saved = self.learning.saved()

    def _learn(self, seq: int, m: Learn) -> Reply:
        """LEARN (PROTOCOL.md §8): every check before any sample is learned, then one step per sample."""
        learning = self._learning(MsgType.LEARN)
        samples = learning.samples(m.samples, m.n)
        self._authentic(MsgType.LEARN, m.body(), m.hmac)
        if m.counter <= self.floor:
            raise ProtocolError(Code.STALE, f"LEARN counter {m.counter}; the device is at {self.floor}")
        learning.check(samples)
        results = [learning.step(sample) for sample in samples]
        self.learn_floor = m.counter
        if learning.config.save_every and learning.steps - self.saved.steps >= learning.config.save_every:
            self._save_working(self.learn_floor)
        status, predicted, loss = zip(*results)
        return MsgType.LEARNED, seq, Learned(learning.steps, self.saved.steps, status, predicted, loss)

    def _save(self, seq: int, m: Save) -> Reply:
        """SAVE (PROTOCOL.md §8): the working copy into the inactive slot, then the record."""
        learning = self._learning(MsgType.SAVE)
        self._authentic(MsgType.SAVE, m.body(), m.hmac)
        if learning.steps != self.saved.steps:  # equal: nothing learned since the last save (a resent SAVE)
            self._fresh(m.counter)
            self._save_working(m.counter)
        return self._active(seq)

    def _learning(self, kind: MsgType) -> Learning:
        if self.learning is None:
            raise ProtocolError(Code.NOT_LEARNING, f"this device does not learn: {kind.name} refused")
        return self.learning

    def _save_working(self, counter: int) -> None:
        inactive = 1 - self.active
        self.slots[inactive] = self.learning.working
        self.ids[inactive], self.valid[inactive] = learned_id(self.slots[inactive]), True
        self._swap(inactive, counter)


class Emulator:
    """A Device served over a serial port in a background thread, until `stop()`."""

    def __init__(self, port: str, device: Device) -> None:
        self.device = device
        self.port = open_port(port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.serve, daemon=True)

    def start(self) -> Emulator:
        self._thread.start()
        return self

    def serve(self) -> None:
        """Read frames and answer them until stopped or the port goes away."""
        reader = FrameReader(self.device.max_frame)
        try:
            while not self._stop.is_set():
                data = self.port.read(max(1, self.port.in_waiting))
                for item in reader.feed(data):
                    for kind, seq, message in self.device.handle(item):
                        self.port.write(encode(kind, seq, message.pack()))
        except (serial.SerialException, OSError):
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.port.close()


def learned_id(image: np.ndarray) -> int:
    """The update id of a saved working copy (PROTOCOL.md §8): its digest's first 4 bytes, 0 made 1."""
    return int.from_bytes(img.digest(image)[:4], "little") or 1


def device_from(path: str | None, key: bytes | None, layers: str, read_head: Callable[[str], Sequence[Dense]],
                learn: LearnConfig | None = None) -> Device:
    """A device holding the head `read_head` reads from `path`, or a zero relu MLP of `layers`."""
    if path is None:
        sizes = [int(s) for s in layers.split(",")]
        head = [Dense(np.zeros((o, i), np.float32), np.zeros(o, np.float32), "relu" if l < len(sizes) - 2 else "identity", "")
                for l, (i, o) in enumerate(pairwise(sizes))]
    else:
        head = read_head(path)
    return Device(layers_of(head), image_of(head), key=key, learn=learn)


def add_arguments(parser: argparse.ArgumentParser, read_head: Callable[[str], Sequence[Dense]]) -> None:
    """The options of `edgefdfa device`; `read_head(path)` reads --model (the CLI, above both packages,
    gives edgefdfa.export.head_from)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="device path or pyserial URL to serve on")
    where.add_argument("--pty", action="store_true",
                       help="serve a fresh virtual serial cable and print the path of its host end")
    parser.add_argument("--key", help="file holding the pre-shared HMAC key; the device then accepts only signed "
                                      "state changes with a fresh security counter (PROTOCOL.md §5)")
    parser.add_argument("--model", help="checkpoint, .onnx/.tflite model or head bundle with the initial weights")
    parser.add_argument("--layers", default="24,32,4", help="sizes of a zero head when there is no --model")
    learn = parser.add_argument_group("learning on the device (PROTOCOL.md §8)")
    learn.add_argument("--learn", action="store_true", help="take LEARN and SAVE: the device learns by itself")
    defaults = LearnConfig()
    learn.add_argument("--rule", choices=("fdfa", "dfa", "bp"), default=defaults.rule)
    learn.add_argument("--loss", choices=("ce", "mse"), default=defaults.loss)
    learn.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (default %(default)s)")
    learn.add_argument("--seed", type=int, default=defaults.seed, help="the perturbation generator's seed")
    learn.add_argument("--save-every", type=int, default=defaults.save_every, metavar="N",
                       help="save by itself every N steps (default: only on SAVE)")
    parser.set_defaults(read_head=read_head)


def run(args: argparse.Namespace) -> int:
    """`edgefdfa device`: an emulated device serving a port until Ctrl-C or the port goes away."""
    key = Path(args.key).read_bytes() if args.key else None
    learn = LearnConfig(rule=args.rule, loss=args.loss, lr=args.lr, seed=args.seed,
                        save_every=args.save_every) if args.learn else None
    device = device_from(args.model, key, args.layers, args.read_head, learn)
    cable = Cable() if args.pty else None
    emulator = Emulator(cable.device if cable else args.port, device)
    where = f"a virtual cable, host end {cable.host}" if cable else args.port
    print(f"edgefdfa device on {where}: {len(device.layers)} layers, "
          f"slot {device.slot_size} bytes" + (", keyed" if key else "") + (", learning" if learn else ""),
          file=sys.stderr)
    if cable:
        print(cable.host, flush=True)  # the port to give the host: `edgefdfa push ... --port <this>`
    try:
        emulator.serve()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.port.close()
        if cable:
            cable.close()
    return 0
