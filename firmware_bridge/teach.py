"""The host side of learning on the device (PROTOCOL.md §8): stream labelled samples to a device that
learns by itself, as LEARN frames of as many samples as its frame holds, and save what it learned.

    >>> report = teach("/dev/ttyUSB0", ((features, label) for features, label in stream))
    >>> print(report)  # samples/s on the line, the device's test-then-train accuracy, its saves

The samples are the head's inputs (what a backbone on the host makes of the sensor data: the CLI's
`edgefdfa teach` runs the model's backbone) with a class label, or K targets on a TARGETS device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import serial

from edgefdfa.head import Layer

from . import encoding as enc
from .frame import OVERHEAD
from .host import session
from .protocol import (
    DIGEST_BYTES,
    LEARNS,
    SIGNED,
    TARGETS,
    Active,
    Code,
    DeviceTimeout,
    Error,
    Hello,
    Learn,
    Learned,
    MsgType,
    ProtocolError,
    Save,
    StepStatus,
    model_id,
)

MAX_PER_FRAME = 255  # LEARN's u8 n
LearnSample = tuple[np.ndarray, "int | np.ndarray"]  # (the head's input, a label or K targets)


@dataclass
class TeachReport:
    """What a teach run did, from the device's own answers."""

    sent: int = 0  # samples sent in LEARNs the device took
    learned: int = 0  # steps it applied
    diverged: int = 0  # steps its divergence check refused (nothing written for those samples)
    unconfirmed: int = 0  # samples of a LEARN whose reply was lost: learned, prediction unknown
    correct: int = 0  # test-then-train: the device's prediction before the step was the label
    steps: int = 0  # the device's step count at the end
    saved_steps: int = 0  # ... of the weights it last saved
    saves: int = 0  # saves: SAVEs answered and the device's own (save_every)
    active_id: int = 0  # the weights active at the end (the last save's)
    wire_bytes: int = 0  # every byte written and read on the port
    seconds: float = 0.0
    frames: int = 0  # LEARN frames sent (resends not counted)
    predictions: list[int] = field(default_factory=list)  # per sample, -1 where unknown
    losses: list[float] = field(default_factory=list)  # per sample, nan where unknown

    @property
    def accuracy(self) -> float:
        """The device's prequential (test-then-train) accuracy over the samples whose reply came back."""
        scored = self.sent - self.unconfirmed
        return self.correct / scored if scored else float("nan")

    @property
    def rate(self) -> float:
        """Samples per second, end to end."""
        return self.sent / self.seconds if self.seconds > 0 else float("inf")

    @property
    def bytes_per_sample(self) -> float:
        """Bytes on the wire per sample, both ways, frames and replies included."""
        return self.wire_bytes / self.sent if self.sent else float("nan")

    def summary(self) -> dict:
        """The report as JSON-able values, without the per-sample lists."""
        out = {k: v for k, v in asdict(self).items() if k not in ("predictions", "losses")}
        return out | {"accuracy": self.accuracy, "samples_per_s": self.rate, "bytes_per_sample": self.bytes_per_sample}

    def __str__(self) -> str:
        lost = f", {self.unconfirmed} unconfirmed (reply lost)" if self.unconfirmed else ""
        return (f"taught {self.sent} samples in {self.frames} frames: {self.learned} learned, {self.diverged} refused "
                f"as diverging{lost}; device accuracy before each step {self.accuracy:.3f}; {self.rate:.0f} samples/s, "
                f"{self.bytes_per_sample:.0f} bytes/sample on the wire; {self.saves} saves, device at step "
                f"{self.steps} (saved {self.saved_steps}), active {self.active_id:08x}")


class Teacher:
    """LEARNs and SAVEs to one device, numbered from its HELLO counter, signed iff a key is given."""

    def __init__(self, s, hello: Hello, key: bytes | None) -> None:
        if not hello.flags & LEARNS:
            raise ProtocolError(Code.NOT_LEARNING, "the device does not announce LEARNS: it cannot learn by itself")
        self.s, self.hello, self.key = s, hello, key
        self.n_in, self.n_classes = hello.layers[0].n_in, hello.layers[-1].n_out
        self.targets = bool(hello.flags & TARGETS)
        self.counter = hello.counter
        fields = Learn.FIELDS + (DIGEST_BYTES if key is not None else 0)
        self.sample_bytes = 4 * self.n_in + (4 * self.n_classes if self.targets else 4)
        self.per_frame = min(MAX_PER_FRAME, (hello.max_frame - OVERHEAD - fields) // self.sample_bytes)
        if self.per_frame < 1:
            raise ProtocolError(Code.TOO_LONG, f"one {self.sample_bytes}-byte sample does not fit the device's "
                                               f"{hello.max_frame}-byte frame")

    def pack(self, x: np.ndarray, y: int | np.ndarray) -> bytes:
        """One sample's bytes; BAD_INPUT or BAD_LABEL (before anything is sent) if it does not fit the head."""
        x = np.asarray(x, np.float32).ravel()
        if x.size != self.n_in or not np.isfinite(x).all():
            raise ProtocolError(Code.BAD_INPUT, f"a sample of {x.size} values (finite: {bool(np.isfinite(x).all())}); "
                                                f"the device's head takes {self.n_in} finite values")
        if self.targets:
            t = np.asarray(y, np.float32).ravel()
            if t.size != self.n_classes or not np.isfinite(t).all():
                raise ProtocolError(Code.BAD_INPUT, f"targets {t.tolist()}: the device wants {self.n_classes} finite ones")
            return x.astype("<f4").tobytes() + t.astype("<f4").tobytes()
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or not 0 <= int(y) < self.n_classes:
            raise ProtocolError(Code.BAD_LABEL, f"label {y!r}: the device's head has classes 0..{self.n_classes - 1}")
        return x.astype("<f4").tobytes() + int(y).to_bytes(4, "little")

    def _next(self) -> tuple[int, int]:
        self.counter += 1
        if self.counter > 0xFFFFFFFF:
            raise ProtocolError(Code.STALE, "the device's counter is at its end (2^32 - 1)")
        return self.counter, SIGNED if self.key is not None else 0

    def learn(self, data: bytes, n: int) -> Learned | None:
        """One LEARN; its LEARNED, or None if its reply was lost and a resend was STALE (learned once)."""
        counter, flags = self._next()
        m = Learn(flags, counter, n, b"", data)
        if self.key is not None:
            m = Learn(flags, counter, n, enc.mac(self.key, MsgType.LEARN, self.hello.model_id, m.body()), data)
        for attempt in range(self.s.retries + 1):
            got = self.s.reply(self.s.send(MsgType.LEARN, m), self.s.timeout)
            if got is None:
                continue
            if isinstance(got[1], Learned) and len(got[1].status) == n:
                return got[1]
            if isinstance(got[1], Error) and got[1].code == Code.STALE and attempt > 0:
                return None  # the first copy was learned; its reply was lost
            if isinstance(got[1], Error):
                raise ProtocolError(got[1].code, f"the device refused a LEARN of {n} samples")
            raise ProtocolError(Code.BAD_TYPE, f"the device answered LEARN with {got[0].name}")
        raise DeviceTimeout(f"no reply to LEARN after {self.s.retries + 1} tries of {self.s.timeout} s")

    def save(self) -> Active:
        counter, flags = self._next()
        m = Save(flags, counter)
        if self.key is not None:
            m = Save(flags, counter, enc.mac(self.key, MsgType.SAVE, self.hello.model_id, m.body()))
        return self.s.request(MsgType.SAVE, Active, m)


def teach(port: str | serial.SerialBase, samples: Iterable[LearnSample], *, key: bytes | None = None,
          save_every: int = 0, save: bool = True, timeout: float | None = None, retries: int = 5,
          baud: int = 115200, layers: Sequence[Layer] | None = None,
          progress: Callable[[int], None] | None = None) -> TeachReport:
    """Stream `samples` to a learning device as LEARN frames and return what it answered.

    `save_every`: SAVE after every this many samples (0: never during the stream); `save`: SAVE at the
    end. `timeout`: seconds to wait for a reply; None: 0.5 s plus twice a full frame's time on the line.
    `layers`: the head the samples are made for; MODEL_MISMATCH if the device holds another.
    `progress(n)` is called with the samples sent so far. Raises ProtocolError (the device's named
    refusal, or a sample that does not fit its head, before it is sent) or DeviceTimeout; samples
    learned before the error stay in the device's working copy, and what was saved stays saved.
    """
    if save_every < 0:
        raise ValueError(f"save_every must be >= 0, got {save_every}")
    report, start = TeachReport(), time.monotonic()
    with session(port, 0.5 if timeout is None else timeout, retries, baud) as s:
        hello = s.request(MsgType.HELLO_REQ, Hello)
        if timeout is None:
            s.timeout = 0.5 + 2 * hello.max_frame * 10 / s.link.port.baudrate
        if layers is not None and model_id(tuple(layers)) != hello.model_id:
            raise ProtocolError(Code.MODEL_MISMATCH, f"the samples are for head {[(l.n_out, l.n_in) for l in layers]}, "
                                                     f"the device holds {[(l.n_out, l.n_in) for l in hello.layers]}")
        teacher = Teacher(s, hello, key)
        report.active_id = hello.active_id
        batch: list[bytes] = []
        labels: list[int] = []
        since_save = 0

        def flush() -> None:
            nonlocal since_save
            learned = teacher.learn(b"".join(batch), len(batch))
            _account(report, learned, labels)
            report.frames += 1
            since_save += len(batch)
            batch.clear()
            labels.clear()
            if progress:
                progress(report.sent)
            if save_every and since_save >= save_every:
                _saved(report, teacher.save())
                since_save = 0

        for x, y in samples:
            batch.append(teacher.pack(x, y))
            labels.append(-1 if teacher.targets else int(y))
            if len(batch) == teacher.per_frame:
                flush()
        if batch:
            flush()
        if save and report.steps != report.saved_steps:
            _saved(report, teacher.save())
        report.wire_bytes = s.link.bytes_out + s.link.bytes_in
    report.seconds = time.monotonic() - start
    return report


def _account(report: TeachReport, learned: Learned | None, labels: list[int]) -> None:
    """Add one LEARN's answer (None: its reply was lost) to the report."""
    n = len(labels)
    report.sent += n
    if learned is None:
        report.unconfirmed += n
        report.predictions += [-1] * n
        report.losses += [float("nan")] * n
        return
    applied = sum(s == StepStatus.LEARNED for s in learned.status)
    report.learned += applied
    report.diverged += n - applied
    report.correct += sum(p == y for p, y in zip(learned.predicted, labels) if y >= 0)
    report.predictions += list(learned.predicted)
    report.losses += list(learned.loss)
    if learned.saved_steps > learned.steps - applied:
        report.saves += 1  # the device saved by itself, during this LEARN
    report.steps, report.saved_steps = learned.steps, learned.saved_steps


def _saved(report: TeachReport, active: Active) -> None:
    report.saves += 1
    report.saved_steps = report.steps
    report.active_id = active.active_id
