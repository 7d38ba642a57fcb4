"""The host always ends (PROTOCOL.md §6, host side): against a scripted device on a real pty that
accepts BEGIN and then refuses every CHUNK, or floods duplicate ACKs, a push stops within its retry
budget and names the device's refusal, within a bound on wall time."""

import os
import select
import threading
import time

import pytest

from edgefdfa.head import layers_of, size
from firmware_bridge import host
from firmware_bridge.frame import Frame, FrameReader, encode
from firmware_bridge.protocol import (
    Ack,
    Code,
    DeviceTimeout,
    Error,
    Hello,
    MsgType,
    VERSION,
    Nack,
    ProtocolError,
    model_id,
)
from tests.bridge.conftest import Pty, learned_head

HEAD = learned_head()
LAYERS = layers_of(HEAD)
RETRIES = 5
WALL = 20.0  # seconds: far above what the retry budget allows, far below "forever"


class ScriptedDevice:
    """Answers HELLO_REQ honestly (in protocol `version`), ACKs every BEGIN at have=0, and answers
    each CHUNK with `on_chunk(seq)` (a list of wire frames); counts what it got."""

    def __init__(self, on_chunk, version=VERSION):
        self.pty, self.on_chunk, self.version = Pty(), on_chunk, version
        self.got = {MsgType.BEGIN: 0, MsgType.CHUNK: 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, frame):
        kind = MsgType(frame.kind)
        self.got[kind] = self.got.get(kind, 0) + 1
        if kind == MsgType.HELLO_REQ:
            hello = Hello(1024, 0x1F, 0, 4 * size(LAYERS), model_id(LAYERS), 0, 0, LAYERS)
            return [encode(MsgType.HELLO, frame.seq, hello.pack(), version=self.version)]
        if kind == MsgType.BEGIN:
            return [encode(MsgType.ACK, frame.seq, Ack(0).pack())]
        if kind == MsgType.CHUNK:
            return self.on_chunk(frame.seq)
        return []

    def _serve(self):
        reader = FrameReader()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.pty.master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.pty.master, 65536)
            except OSError:
                return
            for frame in reader.feed(data):
                for reply in self._answer(frame) if isinstance(frame, Frame) else []:
                    os.write(self.pty.master, reply)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.pty.close()


def push_within(port, wall=WALL):
    """Run a push in a thread: (the exception it ended with, seconds), failing if it runs past `wall`."""
    outcome = {}

    def run():
        start = time.monotonic()
        try:
            host.push(port, HEAD, timeout=0.2, retries=RETRIES, images={})
        except Exception as e:  # noqa: BLE001 - the test inspects what ended the push
            outcome["error"] = e
        outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wall)
    assert not thread.is_alive(), f"the push did not end within {wall} s"
    return outcome.get("error"), outcome["seconds"]


@pytest.fixture
def scripted():
    made = []

    def make(on_chunk, **kw):
        made.append(ScriptedDevice(on_chunk, **kw))
        return made[-1]

    yield make
    for device in made:
        device.close()


def test_a_device_that_answers_every_chunk_not_in_session_ends_the_push(scripted):
    device = scripted(lambda seq: [encode(MsgType.ERROR, seq, Error(Code.NOT_IN_SESSION, MsgType.CHUNK).pack())])
    error, _ = push_within(device.pty.path)
    assert isinstance(error, ProtocolError) and not isinstance(error, DeviceTimeout)
    assert error.code == Code.NOT_IN_SESSION and "kept refusing" in str(error)
    assert device.got[MsgType.BEGIN] <= RETRIES + 2  # the first BEGIN and one per stall within the budget


def test_a_device_that_nacks_every_chunk_at_zero_ends_the_push(scripted):
    device = scripted(lambda seq: [encode(MsgType.NACK, seq, Nack(0, Code.GAP).pack())])
    error, _ = push_within(device.pty.path)
    assert isinstance(error, ProtocolError) and error.code == Code.GAP
    assert device.got[MsgType.BEGIN] == 1


def test_a_device_that_floods_duplicate_acks_ends_the_push(scripted):
    device = scripted(lambda seq: [encode(MsgType.ACK, seq, Ack(0).pack())] * 3)
    error, _ = push_within(device.pty.path)
    assert isinstance(error, DeviceTimeout) and "stopped acknowledging at byte 0" in str(error)


def test_a_device_that_goes_silent_ends_the_push_after_the_retries(scripted):
    device = scripted(lambda seq: [])
    error, seconds = push_within(device.pty.path)
    assert isinstance(error, DeviceTimeout) and seconds >= RETRIES * 0.2


def test_a_device_of_another_protocol_version_is_named_not_waited_for(scripted):
    """A version-1 device's HELLO: the host raises BAD_VERSION at once instead of timing out."""
    device = scripted(lambda seq: [], version=1)
    error, seconds = push_within(device.pty.path)
    assert isinstance(error, ProtocolError) and error.code == Code.BAD_VERSION and "version 1" in str(error)
    assert seconds < 0.2 * (RETRIES + 1)  # no retries spent
