"""Attacks on a keyed device over real pseudo-terminals, driven by the real host (PROTOCOL.md §5):
a recorded signed push replayed after a newer one (a downgrade), its BEGIN and COMMIT replayed
around altered CHUNKs (a splice), unsigned, forged and replayed ROLLBACKs, and unsigned or stale
BEGINs during a signed session. Each is refused by name and changes nothing: not the weights, not
the state record, not a session in progress. The same attacks run on the Python device and on the
C receiver (restarted from its persisted state, too)."""

import shutil
import time

import pytest
from cobs import cobs

from edgefdfa.head import image_of, layers_of
from firmware_bridge import host
from firmware_bridge.emulator import Device, Emulator
from firmware_bridge.frame import encode
from firmware_bridge.link import Link, open_port
from firmware_bridge.protocol import Chunk, Code, Error, MsgType, ProtocolError, model_id
from tests.bridge.conftest import Relay, learned_head

KEY = b"k" * 16
FACTORY = learned_head(seed=99, n=0)
MODEL = model_id(layers_of(FACTORY))


class PythonDevice:
    """The emulator behind a relay; `restart` is a power cycle (slots and counter kept)."""

    def __init__(self, relay, tmp_path):
        self.device = Device(layers_of(FACTORY), image_of(FACTORY), key=KEY)
        self.emulator = Emulator(relay.device.path, self.device).start()

    def state(self):
        """Everything a power cycle keeps: slots, ids, validity, active index, security counter."""
        d = self.device
        return d.slots.tobytes(), tuple(d.ids), tuple(d.valid), d.active, d.counter

    def restart(self):
        self.device.reset()

    def close(self):
        self.emulator.stop()


class CDevice:
    """The C receiver (tests/firmware/rx_pty_main.c) behind a relay, its state in a file."""

    def __init__(self, relay, tmp_path):
        from tests.firmware.test_receiver import CDevice as Process
        from tests.firmware.test_receiver import build

        self.process = Process(build(tmp_path / "rx_pty_main"), relay.device.path, tmp_path, KEY)

    def state(self):
        """The persisted record and both slots, byte for byte."""
        return self.process.state.read_bytes()

    def restart(self):
        self.process.kill()
        self.process.start()

    def close(self):
        self.process.stop()


DEVICES = {"python": PythonDevice,
           "c": pytest.param(CDevice, marks=pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler"))}


@pytest.fixture(params=list(DEVICES.values()), ids=list(DEVICES))
def keyed(request, tmp_path):
    """(relay, device): a keyed device of either kind behind a fault-free recording relay."""
    relay = Relay()
    device = request.param(relay, tmp_path)
    yield relay, device
    device.close()
    relay.close()


def replay(port, frames, quiet=0.5):
    """Write recorded frames to the line as an attacker would (no host), and return the replies as
    (type, message) in order, collected until the line is quiet for `quiet` s."""
    from firmware_bridge.protocol import decode_message

    serial_port = open_port(port)
    try:
        link = Link(serial_port)
        for frame in frames:
            serial_port.write(frame)
            time.sleep(0.002)
        replies = []
        while (item := link.receive(quiet)) is not None:
            replies.append((MsgType(item.kind), decode_message(item.kind, item.payload)))
        return replies
    finally:
        serial_port.close()


def kind_of(frame):
    return cobs.decode(frame[:-1])[3]


def errors(replies):
    """The codes of the ERROR replies, in order, with the type each answers."""
    return [(Code(m.code), MsgType(m.about)) for _, m in replies if isinstance(m, Error)]


def test_a_recorded_push_replayed_after_a_newer_one_is_refused(keyed):
    """A downgrade: the older signed push's BEGIN is STALE, its CHUNKs and COMMIT find no session,
    and the newer weights stay, across a restart too."""
    relay, device = keyed
    older, newer = learned_head(seed=1), learned_head(seed=2)
    host.push(relay.host.path, older, key=KEY, images={})
    recording = list(relay.capture)
    report = host.push(relay.host.path, newer, key=KEY, images={})
    assert [kind_of(f) for f in recording][:3] == [MsgType.HELLO_REQ, MsgType.BEGIN, MsgType.CHUNK]
    for restart in (False, True):
        if restart:
            device.restart()
        before = device.state()
        got = errors(replay(relay.host.path, recording))
        assert got[0] == (Code.STALE, MsgType.BEGIN)
        assert set(got[1:]) == {(Code.NOT_IN_SESSION, MsgType.CHUNK), (Code.NOT_IN_SESSION, MsgType.COMMIT)}
        assert device.state() == before
        assert host.status(relay.host.path).active_id == report.update_id


def test_a_recorded_one_frame_update_replayed_later_is_refused(keyed):
    """A sparse push small enough for one UPDATE, replayed after a newer push: STALE."""
    relay, device = keyed
    images = {}
    host.push(relay.host.path, learned_head(n=0), key=KEY, encoding="sparse", images=images)  # f32: the base
    relay.capture.clear()
    host.push(relay.host.path, learned_head(n=40), key=KEY, encoding="sparse", images=images)
    recording = [f for f in relay.capture if kind_of(f) == MsgType.UPDATE]
    assert len(recording) == 1
    host.push(relay.host.path, learned_head(seed=3), key=KEY, images=images)
    before = device.state()
    assert errors(replay(relay.host.path, recording)) == [(Code.STALE, MsgType.UPDATE)]
    assert device.state() == before


def test_a_spliced_session_keeps_the_rollback_slot(keyed):
    """The recorded signed BEGIN and COMMIT replayed around other CHUNK data: the BEGIN is STALE and
    nothing is decoded; the rollback slot still holds the previous weights."""
    relay, device = keyed
    first = host.push(relay.host.path, learned_head(seed=1), key=KEY, images={})
    recording = list(relay.capture)
    second = host.push(relay.host.path, learned_head(seed=2), key=KEY, images={})
    spliced, at = [], 0
    for frame in recording:
        if kind_of(frame) == MsgType.CHUNK:
            raw = cobs.decode(frame[:-1])
            n = int.from_bytes(raw[6:8], "little") - 4
            frame = encode(MsgType.CHUNK, int.from_bytes(raw[4:6], "little"), Chunk(at, bytes(n)).pack())
            at += n
        spliced.append(frame)
    before = device.state()
    got = errors(replay(relay.host.path, spliced))
    assert got[0] == (Code.STALE, MsgType.BEGIN) and (Code.NOT_IN_SESSION, MsgType.COMMIT) in got
    assert device.state() == before
    s = host.status(relay.host.path)
    assert (s.active_id, s.previous_id) == (second.update_id, first.update_id)


def test_rollback_needs_the_key_and_a_fresh_counter(keyed):
    """An unsigned or forged ROLLBACK is refused by name and flips nothing, across a restart; a
    signed one works; replayed later it is STALE."""
    relay, device = keyed
    first = host.push(relay.host.path, learned_head(seed=1), key=KEY, images={})
    second = host.push(relay.host.path, learned_head(seed=2), key=KEY, images={})
    before = device.state()
    for key, code in [(None, Code.UNSIGNED), (b"x" * 16, Code.BAD_SIGNATURE)]:
        with pytest.raises(ProtocolError) as e:
            host.rollback(relay.host.path, key=key)
        assert e.value.code == code and device.state() == before
    device.restart()
    assert host.status(relay.host.path).active_id == second.update_id and device.state() == before
    relay.capture.clear()
    assert host.rollback(relay.host.path, key=KEY).active_id == first.update_id
    recorded = [f for f in relay.capture if kind_of(f) == MsgType.ROLLBACK]
    assert host.rollback(relay.host.path, key=KEY).active_id == second.update_id  # and forward again
    before = device.state()
    assert errors(replay(relay.host.path, recorded)) == [(Code.STALE, MsgType.ROLLBACK)]
    device.restart()
    assert errors(replay(relay.host.path, recorded)) == [(Code.STALE, MsgType.ROLLBACK)]
    assert device.state() == before and host.status(relay.host.path).active_id == second.update_id


def test_an_unsigned_or_stale_begin_does_not_end_a_signed_session(keyed):
    """A signed push cut halfway; then an unsigned push (UNSIGNED), a forged one (BAD_SIGNATURE) and
    a replay of an older signed BEGIN (STALE): the session keeps what it holds, and the signed push
    resumes there."""
    relay, device = keyed
    old = host.push(relay.host.path, learned_head(seed=1), key=KEY, images={})
    old_begin = [f for f in relay.capture if kind_of(f) == MsgType.BEGIN]
    head = learned_head(seed=2)

    def cut_halfway(have, total):
        if have > total // 2:
            relay.cut.set()

    with pytest.raises(host.DeviceTimeout):
        host.push(relay.host.path, head, key=KEY, window=2, timeout=0.1, retries=3, progress=cut_halfway, images={})
    relay.cut.clear()
    held = host.status(relay.host.path)
    assert held.state == 1 and held.have > 0
    for key, code in [(None, Code.UNSIGNED), (b"x" * 16, Code.BAD_SIGNATURE)]:
        with pytest.raises(ProtocolError) as e:
            host.push(relay.host.path, learned_head(seed=3), key=key, images={})
        assert e.value.code == code
    assert errors(replay(relay.host.path, old_begin)) == [(Code.STALE, MsgType.BEGIN)]
    after = host.status(relay.host.path)
    assert (after.state, after.staged_id, after.have) == (1, held.staged_id, held.have)
    assert after.active_id == old.update_id
    report = host.push(relay.host.path, head, key=KEY, verify=True, images={})
    assert report.resumed_from == held.have and report.parity <= 1e-5


def test_an_unkeyed_device_takes_unsigned_requests_as_before(rig, heads):
    relay, emulator = rig()
    report = host.push(relay.host.path, heads(), images={})
    assert host.rollback(relay.host.path).active_id == 0 and emulator.device.counter == 0
    assert host.rollback(relay.host.path).active_id == report.update_id

