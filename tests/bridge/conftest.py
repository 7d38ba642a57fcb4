"""Real pseudo-terminals for the bridge tests: two ptys joined by a relay thread that can drop,
corrupt, duplicate, reorder or cut frames (seeded), an emulated device on one side and the host on
the other. Every wait is bounded."""

import os
import random
import select
import threading
import tty

import numpy as np
import pytest
from cobs import cobs

import edgefdfa
from edgefdfa.export import head_of
from edgefdfa.head import image_of, layers_of
from firmware_bridge.emulator import Device, Emulator


class Pty:
    """One pty: the relay owns the master; `path` is the slave a serial port opens (held open raw)."""

    def __init__(self):
        if not hasattr(os, "openpty"):
            pytest.skip("needs POSIX pseudo-terminals")
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def close(self):
        os.close(self.master)
        os.close(self.slave)


class Relay:
    """Copies frames between the host's pty and the device's, with seeded faults per frame."""

    def __init__(self, seed=0, drop=0.0, corrupt=0.0, duplicate=0.0, reorder=0.0):
        self.host, self.device = Pty(), Pty()
        self.rng = random.Random(seed)
        self.rates = dict(drop=drop, corrupt=corrupt, duplicate=duplicate, reorder=reorder)
        self.faults = dict.fromkeys(self.rates, 0)
        self.sent = []  # (from the host?, message type, bytes) of every frame reaching the relay, before faults
        self.capture = []  # the wire bytes of every frame from the host, before faults (a recording of the line)
        self.cut = threading.Event()
        self._stop = threading.Event()
        self._partial = {self.host.master: b"", self.device.master: b""}
        self._held = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _other(self, fd):
        return self.device.master if fd == self.host.master else self.host.master

    def _run(self):
        fds = [self.host.master, self.device.master]
        while not self._stop.is_set():
            ready, _, _ = select.select(fds, [], [], 0.02)
            if not ready:  # idle: release frames held back for reordering
                for fd, frame in list(self._held.items()):
                    os.write(self._other(fd), frame)
                self._held.clear()
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                *frames, self._partial[fd] = (self._partial[fd] + data).split(b"\x00")
                for frame in frames:
                    self._forward(fd, frame + b"\x00")

    def _hit(self, fault):
        if self.rng.random() < self.rates[fault]:
            self.faults[fault] += 1
            return True
        return False

    def _forward(self, fd, frame):
        try:
            kind = cobs.decode(frame[:-1])[3]
        except (cobs.DecodeError, IndexError):  # a lone delimiter, or noise
            kind = None
        self.sent.append((fd == self.host.master, kind, len(frame)))
        if fd == self.host.master:
            self.capture.append(frame)
        if self.cut.is_set() or self._hit("drop"):
            return
        if self._hit("corrupt"):
            i = self.rng.randrange(len(frame) - 1)
            frame = frame[:i] + bytes([frame[i] ^ self.rng.randrange(1, 256)]) + frame[i + 1:]
        out = [frame, frame] if self._hit("duplicate") else [frame]
        if fd in self._held:
            out.append(self._held.pop(fd))
        elif self._hit("reorder"):
            self._held[fd] = out.pop()
        for f in out:
            os.write(self._other(fd), f)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.host.close()
        self.device.close()


def learned_head(seed=0, n=40):
    """The head of a small MLP after some online learning: (layers, learner)."""
    learner = edgefdfa.MLP([24, 32, 4], seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(24).astype(np.float32)
        learner.learn_one(x, int(x[:4].argmax()))
    return head_of(learner)[0]


@pytest.fixture
def rig():
    """make(key=None, **faults) -> (relay, emulator): a device with the factory head of learned_head(seed=99)."""
    made = []

    def make(key=None, **faults):
        relay = Relay(**faults)
        factory = learned_head(seed=99, n=0)
        emulator = Emulator(relay.device.path, Device(layers_of(factory), image_of(factory), key=key)).start()
        made.append((relay, emulator))
        return relay, emulator

    yield make
    for relay, emulator in made:
        emulator.stop()
        relay.close()


@pytest.fixture
def heads():
    """learned_head, for tests: heads(seed, n) -> list[Dense]."""
    return learned_head


@pytest.fixture
def relays():
    """make(**faults) -> Relay, closed after the test."""
    made = []

    def make(**faults):
        made.append(Relay(**faults))
        return made[-1]

    yield make
    for relay in made:
        relay.close()
