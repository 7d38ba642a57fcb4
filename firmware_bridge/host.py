"""The host side of the bridge (PROTOCOL.md §6): push a head's weights to a device, run INFER on it,
ask its STATUS, ROLL it BACK.

    >>> report = push("/dev/ttyUSB0", head_layers, encoding="f16", verify=True)
    >>> print(report)

`port` is a device path, a pyserial URL, or an open pyserial port. Sparse pushes send int8 deltas
against the device's active image, which the host mirrors in `images` (by default one registry per
process, or a mirror.Mirror on disk): what the device did not get this time (the residual) is
part of the next delta. A sparse update takes at most `budget` bytes (default: 1/16 of the float32
image), the largest changes first.

    edgefdfa push CHECKPOINT_OR_MODEL --port PORT [--baud B] [--encoding f32|f16|int8|sparse]
                  [--budget BYTES] [--key FILE] [--verify] [--mirror DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import serial

from edgefdfa.errors import EdgeFDFAError
from edgefdfa.head import Dense, Layer, image_of, layers_of, size

from . import encoding as enc
from . import image as img
from .frame import MAX_FRAME_LIMIT, MIN_FRAME, OVERHEAD, Frame, FrameError
from .link import Link, open_port
from .mirror import Mirror
from .protocol import (
    NONE,
    SIGNED,
    Ack,
    Active,
    Begin,
    Chunk,
    Code,
    Commit,
    DeviceTimeout,
    Empty,
    Encoding,
    Error,
    Hello,
    Message,
    MsgType,
    Nack,
    ProtocolError,
    Rollback,
    Status,
    Update,
    Vector,
    decode_message,
    model_id,
)

ENCODINGS = {"f32": Encoding.F32, "f16": Encoding.F16, "int8": Encoding.INT8_CHANNEL,
             "int8-tensor": Encoding.INT8_TENSOR, "sparse": Encoding.SPARSE_INT8}
IMAGES = Mirror()  # this process's mirror of the devices it pushed to
SPARSE_BUDGET = 1 / 16  # default sparse budget, a fraction of slot_size (tools/bench_bridge.py, PROTOCOL.md §4)
Progress = Callable[[int, int], None]  # (bytes the device holds, total)
T = TypeVar("T")


@dataclass
class PushReport:
    """What a push did."""

    update_id: int
    encoding: str  # the encoding sent (a first sparse push to unknown weights sends f32)
    payload_bytes: int  # the encoded update
    wire_bytes: int  # every byte written and read on the port by the push (not by its verify)
    seconds: float  # the push, up to ACTIVE (not its verify)
    resumed_from: int  # bytes the device already held when the push began
    resends: int  # frames of update data (CHUNKs, or the UPDATE) sent more than once
    parity: float | None = None  # max |device - host| on the image the device holds (verify)
    drift: float | None = None  # max |device - the float head pushed| (the encoding's loss; verify)

    @property
    def rate(self) -> float:
        """Effective payload rate, bytes per second."""
        return self.payload_bytes / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        check = "" if self.parity is None else f"; parity max|device-host| {self.parity:.3g}, vs float head {self.drift:.3g}"
        resumed = f", resumed at {self.resumed_from}" if self.resumed_from else ""
        return (f"update {self.update_id:08x} ({self.encoding}): {self.payload_bytes} payload bytes, {self.wire_bytes} "
                f"on the wire, {self.seconds:.2f} s, {self.rate / 1024:.1f} KiB/s, {self.resends} resent{resumed}{check}")


class Session:
    """Requests to one device over a Link: fresh seq per frame, replies matched by seq, bounded retries."""

    def __init__(self, link: Link, timeout: float, retries: int) -> None:
        self.link, self.timeout, self.retries = link, timeout, retries
        self.seq = 0
        self.resent = 0  # requests sent again after a timeout

    def send(self, kind: MsgType, message: Message) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        self.link.send(kind, self.seq, message.pack())
        return self.seq

    def reply(self, seqs: set[int] | int, timeout: float) -> tuple[MsgType, Message] | None:
        """The next well-formed reply to one of `seqs` within `timeout` s; None on timeout."""
        seqs = {seqs} if isinstance(seqs, int) else seqs
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            item = self.link.receive(left)
            if isinstance(item, FrameError) and item.code == Code.BAD_VERSION and item.seq in seqs:
                raise ProtocolError(Code.BAD_VERSION, f"the device's reply: {item}")  # it speaks another version
            if isinstance(item, Frame) and item.seq in seqs:
                try:
                    return MsgType(item.kind), decode_message(item.kind, item.payload)
                except (ProtocolError, ValueError):
                    continue
        return None

    def request(self, kind: MsgType, expect: type[T], message: Message = Empty()) -> T:
        """Send until a reply arrives: it, if it is an `expect`; ProtocolError if it is an ERROR (its
        code) or another message (BAD_TYPE); DeviceTimeout if none arrives."""
        for attempt in range(self.retries + 1):
            self.resent += attempt > 0
            got = self.reply(self.send(kind, message), self.timeout)
            if got is not None:
                if isinstance(got[1], Error):
                    raise ProtocolError(got[1].code, f"the device refused {kind.name}")
                if not isinstance(got[1], expect):
                    raise ProtocolError(Code.BAD_TYPE, f"the device answered {kind.name} with {got[0].name}")
                return got[1]
        raise DeviceTimeout(f"no reply to {kind.name} after {self.retries + 1} tries of {self.timeout} s")


@contextmanager
def session(port: str | serial.SerialBase, timeout: float, retries: int, baud: int = 115200) -> Iterator[Session]:
    """A Session on an open port, or on one opened (and closed afterwards) from a path or URL."""
    opened = open_port(port, baud) if isinstance(port, str) else None
    try:
        s = Session(Link(opened or port), timeout, retries)
        s.link.port.reset_input_buffer()
        yield s
    finally:
        if opened is not None:
            opened.close()


def push(port: str | serial.SerialBase, head: Sequence[Dense], *, encoding: str = "f32", key: bytes | None = None,
         budget: int | None = None, window: int = 8, timeout: float | None = None, retries: int = 20,
         verify: bool = False, baud: int = 115200, images: MutableMapping[tuple[int, int], np.ndarray] | None = None,
         progress: Progress | None = None) -> PushReport:
    """Install `head`'s weights on the device atomically; resumes a push the device partly holds.

    `budget`: bytes a sparse update may take (at most slot_size); None: SPARSE_BUDGET of slot_size.
    What it leaves out stays in the mirror's residual for the next push. Other encodings ignore it.
    `timeout`: seconds without a reply before resending; None: 0.2 s plus twice the time a full
    window of frames takes on the line at `baud` (10 bits a byte).

    Raises ProtocolError (the device's named refusal, or MODEL_MISMATCH) or DeviceTimeout; in
    either case the device keeps the weights it had.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    if budget is not None and budget < enc.sparse_minimum(2 * len(head)):
        raise ValueError(f"a sparse budget of {budget!r} bytes is under the {enc.sparse_minimum(2 * len(head))} "
                         f"a sparse update of this head may need")
    images = IMAGES if images is None else images
    start = time.monotonic()
    with session(port, 0.2 if timeout is None else timeout, retries, baud) as s:
        hello = s.request(MsgType.HELLO_REQ, Hello)
        if not MIN_FRAME <= hello.max_frame <= MAX_FRAME_LIMIT:
            raise ProtocolError(Code.BAD_LENGTH, f"the device's max_frame {hello.max_frame} is out of range")
        if timeout is None:
            s.timeout = 0.2 + 2 * window * hello.max_frame * 10 / s.link.port.baudrate
        layers = layers_of(head)
        if model_id(layers) != hello.model_id:
            raise ProtocolError(Code.MODEL_MISMATCH, f"head {[(l.n_out, l.n_in) for l in layers]} is not the "
                                                     f"device's {[(l.n_out, l.n_in) for l in hello.layers]}")
        if verify:
            check_infer_fits(hello)  # before anything changes on the device
        target = image_of(head)
        code = ENCODINGS[encoding]
        base = images.get((hello.model_id, hello.active_id))
        if code == Encoding.SPARSE_INT8 and base is None:
            code, encoding = Encoding.F32, "f32"  # no mirror of the device's weights yet: send them whole
        update = enc.encode(target, layers, code, base=base, budget=sparse_budget(budget, layers))
        expected = enc.decode(update, layers, code, base)
        digest = img.digest(expected)
        begin, commit = signed_session(key, hello, code, update, digest)
        if OVERHEAD + Update.FIELDS + len(commit.hmac) + len(update) <= hello.max_frame:  # one frame: UPDATE
            resent = s.resent
            active = s.request(MsgType.UPDATE, Active, one_frame(key, hello, begin, commit, update))
            resumed, resends = 0, s.resent - resent
            if progress:
                progress(len(update), len(update))
        else:
            chunk = hello.max_frame - OVERHEAD - 4  # a CHUNK's u32 offset
            resumed, resends = _transfer(s, begin, update, chunk, window, progress)
            active = s.request(MsgType.COMMIT, Active, commit)
        if (active.active_id, active.digest) != (begin.update_id, digest):
            raise ProtocolError(Code.BAD_DIGEST, f"the device answered COMMIT with {active}")
        images[(hello.model_id, begin.update_id)] = expected
        report = PushReport(begin.update_id, encoding, len(update), s.link.bytes_out + s.link.bytes_in,
                            time.monotonic() - start, resumed, resends)
        if verify:  # the check's INFER traffic is not the push's
            report.parity, report.drift = _parity(s, hello, expected, target)
    return report


def signed_session(key: bytes | None, hello: Hello, code: Encoding, update: bytes, digest: bytes) -> tuple[Begin, Commit]:
    """The BEGIN and COMMIT of `update` at the device's security counter + 1, signed iff `key`
    (PROTOCOL.md §5): BEGIN's hmac over its fields, COMMIT's over the session and the digest."""
    base_id, flags = hello.active_id if code == Encoding.SPARSE_INT8 else 0, SIGNED if key else 0
    begin = Begin(enc.update_id(base_id, len(update), code, flags, update), base_id, len(update), code, flags,
                  (hello.counter + 1) & 0xFFFFFFFF, hashlib.sha256(update).digest())
    commit = Commit(begin.update_id, digest)
    if key:
        begin = replace(begin, hmac=enc.mac(key, MsgType.BEGIN, hello.model_id, begin.body()))
        commit = replace(commit, hmac=enc.mac(key, MsgType.COMMIT, hello.model_id, commit.body(), begin.body()))
    return begin, commit


def one_frame(key: bytes | None, hello: Hello, begin: Begin, commit: Commit, update: bytes) -> Update:
    """The UPDATE that stands for BEGIN `begin`, CHUNK(0, update), COMMIT `commit`, signed iff `key`."""
    u = Update(begin.update_id, begin.base_id, begin.encoding, begin.flags, begin.counter, commit.digest, b"", update)
    return replace(u, hmac=enc.mac(key, MsgType.UPDATE, hello.model_id, u.body())) if key else u


def sparse_budget(budget: int | None, layers: Sequence[Layer]) -> int:
    """The byte budget of a sparse update: `budget`, or SPARSE_BUDGET of the slot (at least the
    encoding's minimum); never over the slot."""
    slot_size = 4 * size(layers)
    default = max(int(slot_size * SPARSE_BUDGET), enc.sparse_minimum(2 * len(layers)))
    return min(default if budget is None else budget, slot_size)


def _transfer(s: Session, begin: Begin, update: bytes, chunk: int, window: int,
              progress: Progress | None) -> tuple[int, int]:
    """BEGIN, then go-back-N CHUNKs until the device holds all of `update`: (resumed from, resends).

    Bounded: more than `retries` stalls in a row (a timeout, a NACK or a NOT_IN_SESSION that moves
    nothing) end the push with the last one named (DeviceTimeout, or ProtocolError of the device's
    code), and so do more than 2 x window x (retries + 1) replies in a row that move nothing."""
    resumed = acked = sent_up_to = next_ = s.request(MsgType.BEGIN, Ack, begin).have
    resends, stalls, idle, seqs = 0, 0, 0, set()
    while acked < len(update):
        while next_ < len(update) and next_ - acked < window * chunk:
            resends += next_ < sent_up_to
            seqs.add(s.send(MsgType.CHUNK, Chunk(next_, update[next_:next_ + chunk])))
            next_ = min(next_ + chunk, len(update))
            sent_up_to = max(sent_up_to, next_)
        got, before, refused = s.reply(seqs, s.timeout), acked, None
        if got is None:
            next_, refused = acked, Code.TIMEOUT
        elif isinstance(got[1], Error):
            if got[1].code != Code.NOT_IN_SESSION:
                raise ProtocolError(got[1].code, f"the device refused a CHUNK at byte {acked}")
            acked = next_ = s.request(MsgType.BEGIN, Ack, begin).have  # the device was reset: begin again
            seqs.clear()  # replies to chunks sent before the reset no longer say what the device holds
            before, refused = len(update) + 1, Code.NOT_IN_SESSION  # a new session: no progress to count
        elif isinstance(got[1], (Ack, Nack)) and acked <= got[1].have <= len(update):
            acked = got[1].have
            next_ = acked if isinstance(got[1], Nack) else max(next_, acked)
            refused = got[1].code if isinstance(got[1], Nack) else None
        if acked > before:
            stalls = idle = 0
        elif refused is not None:
            stalls += 1
        else:
            idle += 1
        if stalls > s.retries or idle > 2 * window * (s.retries + 1):
            _give_up(refused, acked, len(update), stalls)
        if progress:
            progress(acked, len(update))
    return resumed, resends


def _give_up(last: int | None, acked: int, total: int, stalls: int) -> None:
    """End a transfer that stopped moving: DeviceTimeout, or the device's refusal by its code."""
    if last in (None, Code.TIMEOUT):
        raise DeviceTimeout(f"the device stopped acknowledging at byte {acked} of {total}")
    raise ProtocolError(last, f"the device kept refusing CHUNKs at byte {acked} of {total} ({stalls} times in a row)")


def _parity(s: Session, hello: Hello, expected: np.ndarray, target: np.ndarray, n: int = 4) -> tuple[float, float]:
    """(max |device - host| on the device's image, max |device - float head|) over n seeded inputs."""
    layers = hello.layers
    X = np.random.default_rng(0).standard_normal((n, layers[0].n_in)).astype(np.float32)
    Y = infer_on(s, hello, X)
    parity = max(float(np.abs(y - img.forward(expected, layers, x)).max()) for x, y in zip(X, Y))
    drift = max(float(np.abs(y - img.forward(target, layers, x)).max()) for x, y in zip(X, Y))
    return parity, drift


def check_infer_fits(hello: Hello) -> None:
    """ProtocolError TOO_LONG, naming the sizes, if INFER (12 + 4 n_in) or OUTPUT (12 + 4 n_out) would
    not fit the device's max_frame (PROTOCOL.md §2)."""
    n_in, n_out = hello.layers[0].n_in, hello.layers[-1].n_out
    for name, n in (("INFER", n_in), ("OUTPUT", n_out)):
        if OVERHEAD + 4 * n > hello.max_frame:
            raise ProtocolError(Code.TOO_LONG, f"{name} of {n} floats is a {OVERHEAD + 4 * n}-byte frame "
                                               f"(12 + 4 x {n}); the device's max_frame is {hello.max_frame}")


def infer_on(s: Session, hello: Hello, X: np.ndarray) -> np.ndarray:
    """The device's head outputs for X, (n_in,) or (k, n_in), over an open session whose HELLO is `hello`:
    (n_out,) or (k, n_out). ProtocolError TOO_LONG if the frames do not fit, BAD_INPUT if X does not."""
    check_infer_fits(hello)
    X = np.asarray(X, np.float32)
    n_in = hello.layers[0].n_in
    if X.ndim not in (1, 2) or X.shape[-1] != n_in:
        raise ProtocolError(Code.BAD_INPUT, f"input of shape {X.shape}; the device's head takes {n_in} values")
    Y = np.array([s.request(MsgType.INFER, Vector, Vector(x)).values for x in X.reshape(-1, n_in)])
    return Y.reshape(*X.shape[:-1], hello.layers[-1].n_out)


def infer(port: str | serial.SerialBase, X: np.ndarray, *, timeout: float = 0.5, retries: int = 5) -> np.ndarray:
    """The head's output for one input (n_in,) or a batch (k, n_in), computed on the device with its
    active weights (one HELLO, then one INFER per input)."""
    with session(port, timeout, retries) as s:
        return infer_on(s, s.request(MsgType.HELLO_REQ, Hello), X)


def status(port: str | serial.SerialBase, *, timeout: float = 0.5, retries: int = 5) -> Status:
    """The device's session state and slot ids."""
    with session(port, timeout, retries) as s:
        return s.request(MsgType.STATUS_REQ, Status)


def rollback(port: str | serial.SerialBase, *, key: bytes | None = None, timeout: float = 0.5,
             retries: int = 5) -> Active:
    """Make the inactive slot (the previous weights) active again, signed at the device's counter + 1
    iff `key` (a keyed device takes no other); ProtocolError NO_PREVIOUS if the slot is empty."""
    with session(port, timeout, retries) as s:
        hello = s.request(MsgType.HELLO_REQ, Hello)
        before = s.request(MsgType.STATUS_REQ, Status)
        if before.previous_id == NONE:
            raise ProtocolError(Code.NO_PREVIOUS, "the device holds no previous weights")
        r = Rollback(before.previous_id, (hello.counter + 1) & 0xFFFFFFFF)
        if key:
            r = replace(r, hmac=enc.mac(key, MsgType.ROLLBACK, hello.model_id, r.body()))
        return s.request(MsgType.ROLLBACK, Active, r)


def add_arguments(parser: argparse.ArgumentParser, read_head: Callable[[str], Sequence[Dense]]) -> None:
    """The options of `edgefdfa push`; `read_head(path)` reads the head to push (the CLI, above both
    packages, gives edgefdfa.export.head_from)."""
    parser.add_argument("model", metavar="CHECKPOINT_OR_MODEL", help="checkpoint, .onnx/.tflite model or head bundle")
    parser.add_argument("--port", required=True, help="device path or pyserial URL (socket://, rfc2217://, loop://)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--encoding", choices=list(ENCODINGS), default="f32")
    parser.add_argument("--budget", type=int, metavar="BYTES",
                        help=f"most bytes a sparse update may take (default: 1/{round(1 / SPARSE_BUDGET)} of the "
                             "float32 image); what it leaves out goes with the next push")
    parser.add_argument("--key", help="file holding the pre-shared HMAC key")
    parser.add_argument("--verify", action="store_true", help="check the device's INFER against the host's")
    parser.add_argument("--mirror", help="directory where the host keeps what devices hold (for sparse pushes)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for a reply before resending (default: from --baud)")
    parser.set_defaults(read_head=read_head)


def run(args: argparse.Namespace) -> int:
    """`edgefdfa push`: push a checkpoint's or model's head to a device, with a progress bar and a report."""
    from tqdm import tqdm

    key = Path(args.key).read_bytes() if args.key else None
    head = args.read_head(args.model)
    with tqdm(unit="B", unit_scale=True, desc="push", leave=False) as bar:
        def progress(have: int, total: int) -> None:
            bar.total = total
            bar.update(have - bar.n)

        try:
            report = push(args.port, head, encoding=args.encoding, key=key, budget=args.budget, verify=args.verify,
                          baud=args.baud, timeout=args.timeout, images=Mirror(args.mirror) if args.mirror else None,
                          progress=progress)
        except (EdgeFDFAError, ValueError) as e:
            kept = "; the device keeps its previous weights" if isinstance(e, ProtocolError) else ""
            print(f"edgefdfa push: {e}{kept}", file=sys.stderr)
            return 1
    print(report)
    return 0
