"""Learning on the C device (PROTOCOL.md §8; firmware_bridge/c/efb_learning.c), built with the system
compiler: LEARN changes what INFER answers; a refused LEARN leaves the weights, the feedback, the
generator and the step count as they were (the next learning is bit for bit the same); SAVE makes
the working copy active and survives kill -9, and a restarted device learns on exactly as one that
was never stopped; a kill between saves comes back with the last saved weights; a push drops unsaved
learning. The device is rx_pty_main --learn: --cases for fresh devices fed whole byte streams,
--pty for one that persists its slots, record and feedback cells in a state file."""

import hashlib
import os
import select
import struct
import subprocess

import numpy as np
import pytest

from firmware_bridge import encoding as enc
from firmware_bridge import image as img
from firmware_bridge.frame import FrameReader, encode
from firmware_bridge.protocol import Code, Encoding, MsgType
from tests.firmware.test_receiver import KEY, LAYERS, MODEL, SLOT, START, STATE, build, write_head

N_IN, K = LAYERS[0].n_in, LAYERS[-1].n_out
FEEDBACK = 4 * K * sum(layer.n_out for layer in LAYERS[:-1])  # bytes of one feedback cell
MAX_FRAME = 512
LEARNS, TARGETS = 0x02, 0x04


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    return build(tmp_path_factory.mktemp("learn") / "rx_pty_main")


# ---- requests, as raw payloads (the layouts of PROTOCOL.md §2, §8) ----

def samples(seed, n, mse=False):
    """n samples: inputs and a label (or K targets), and their wire bytes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN)).astype("<f4")
    if mse:
        return b"".join(x[i].tobytes() + rng.standard_normal(K).astype("<f4").tobytes() for i in range(n))
    return b"".join(x[i].tobytes() + struct.pack("<I", int(rng.integers(K))) for i in range(n))


def learn(counter, data, n=None, key=None, flags=None, hmac=None):
    n = len(data) // (4 * N_IN + 4) if n is None else n
    flags = (1 if key or hmac else 0) if flags is None else flags
    fields = struct.pack("<BIB", flags, counter, n)
    if key is not None and hmac is None:
        hmac = enc.mac(key, MsgType.LEARN, MODEL, fields + data)
    return encode(MsgType.LEARN, 1, fields + (hmac or b"") + data)


def save(counter, key=None):
    fields = struct.pack("<BI", 1 if key else 0, counter)
    return encode(MsgType.SAVE, 1, fields + (enc.mac(key, MsgType.SAVE, MODEL, fields) if key else b""))


INPUT = np.array([1.0, -2.0, 0.5, 3.0], "<f4")
INFER = encode(MsgType.INFER, 1, INPUT.tobytes())
HELLO = encode(MsgType.HELLO_REQ, 1, b"")


def frames(data):
    return [(f.kind, f.payload) for f in FrameReader(MAX_FRAME).feed(data)]


def learned(payload):
    """(steps, saved_steps, [(status, predicted, loss)]) of a LEARNED payload."""
    steps, saved, n = struct.unpack_from("<IIB", payload)
    assert len(payload) == 9 + 7 * n
    return steps, saved, [struct.unpack_from("<BHf", payload, 9 + 7 * i) for i in range(n)]


def error(code, about):
    return (MsgType.ERROR, bytes([code, about]))


# ---- fresh devices: rx_pty_main --learn --cases ----

class Cases:
    """One rx_pty_main --cases --learn: run(wire) -> (replies, active image, working copy, feedback)
    of a fresh learning device fed `wire`."""

    def __init__(self, exe, tmp_path, *args):
        head = write_head(tmp_path / "head.bin", LAYERS, START)
        self.proc = subprocess.Popen([str(exe), str(head), "-", "--cases", "--learn", "--max-frame", str(MAX_FRAME),
                                      *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, n):
        data = self.proc.stdout.read(n)
        assert len(data) == n, "rx_pty_main --cases died"
        return data

    def run(self, wire):
        self.proc.stdin.write(struct.pack("<I", len(wire)) + wire)
        self.proc.stdin.flush()
        replies = frames(self.read(struct.unpack("<I", self.read(4))[0]))
        return replies, self.read(SLOT), self.read(SLOT), self.read(FEEDBACK)

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(5) == 0


@pytest.fixture(scope="module")
def cases(exe, tmp_path_factory):
    """cases(*args) -> a Cases server of rx_pty_main with those options (one per option list)."""
    servers = {}

    def get(*args):
        if args not in servers:
            servers[args] = Cases(exe, tmp_path_factory.mktemp("cases"), *args)
        return servers[args]

    yield get
    for server in servers.values():
        server.close()


def test_learn_changes_what_infer_answers(cases):
    replies, active, working, feedback = cases().run(HELLO + INFER + learn(1, samples(0, 5)) + INFER + HELLO)
    (_, hello), (_, before), (kind, payload), (_, after), (_, hello_after) = replies
    assert hello[3] == LEARNS and hello_after[3] == LEARNS
    assert struct.unpack_from("<I", hello, 16)[0] == 0 and struct.unpack_from("<I", hello_after, 16)[0] == 1
    steps, saved, entries = learned(payload)
    assert kind == MsgType.LEARNED and (steps, saved) == (5, 0) and [e[0] for e in entries] == [0] * 5
    assert all(e[1] < K and np.isfinite(e[2]) and e[2] > 0 for e in entries)
    assert before != after  # the working copy learned
    assert active == START.tobytes() and working != active  # nothing saved
    assert feedback != bytes(FEEDBACK)  # FDFA's feedback moved


def test_mse_device_announces_targets_and_learns_them(cases):
    replies, _, working, _ = cases("--loss", "mse").run(HELLO + learn(1, samples(0, 3, mse=True), n=3))
    (_, hello), (kind, payload) = replies
    assert hello[3] == LEARNS | TARGETS and kind == MsgType.LEARNED and learned(payload)[0] == 3
    assert working != START.tobytes()


def refusals():
    """(name, options, the refused LEARN, its code): each sent between two good LEARNs."""
    good = samples(1, 2)
    nan = bytearray(good)
    nan[4:8] = struct.pack("<f", float("nan"))
    label = bytearray(good)
    label[4 * N_IN + 4 * (N_IN + 1):] = struct.pack("<I", K)  # the second sample's label
    yield "bad_length", (), learn(2, good[:-1], n=2), Code.BAD_LENGTH
    yield "no_samples", (), learn(2, b"", n=0), Code.BAD_LENGTH
    yield "bad_flags", (), learn(2, good, flags=0x02), Code.BAD_FLAGS
    yield "nan_input", (), learn(2, bytes(nan)), Code.BAD_INPUT
    yield "label_k", (), learn(2, bytes(label)), Code.BAD_LABEL
    yield "stale", (), learn(1, good), Code.STALE
    yield "keyed_unsigned", ("keyed",), learn(2, good), Code.UNSIGNED
    yield "keyed_bad_hmac", ("keyed",), learn(2, good, hmac=bytes(32)), Code.BAD_SIGNATURE
    yield "keyed_stale", ("keyed",), learn(1, good, key=KEY), Code.STALE


@pytest.mark.parametrize("name, options, refused, code", list(refusals()), ids=[r[0] for r in refusals()])
def test_refused_learn_changes_nothing(cases, tmp_path, name, options, refused, code):
    args = ()
    key = None
    if "keyed" in options:
        (tmp_path / "key").write_bytes(KEY)
        args, key = ("--key", str(tmp_path / "key")), KEY
    first, second = learn(1, samples(2, 3), key=key), learn(2, samples(3, 3), key=key)
    plain = cases(*args).run(first + second + INFER + save(3, key))
    refusing = cases(*args).run(first + refused + second + INFER + save(3, key))
    assert refusing[0][1] == error(code, MsgType.LEARN)
    assert refusing[0][:1] + refusing[0][2:] == plain[0]  # the same LEARNED, OUTPUT and ACTIVE
    assert refusing[1:] == plain[1:]  # the same saved image, working copy and feedback, bit for bit


def test_device_that_does_not_learn_answers_not_learning(exe, tmp_path):
    head = write_head(tmp_path / "head.bin", LAYERS, START)
    wire = learn(1, samples(0, 1)) + save(1) + learn(1, b"", n=0) + HELLO
    out = subprocess.run([str(exe), str(head), "-", "--cases", "--max-frame", str(MAX_FRAME)],
                         input=struct.pack("<I", len(wire)) + wire, capture_output=True, check=True).stdout
    replies = frames(out[4:4 + struct.unpack_from("<I", out)[0]])
    assert replies[:3] == [error(Code.NOT_LEARNING, MsgType.LEARN), error(Code.NOT_LEARNING, MsgType.SAVE),
                           error(Code.NOT_LEARNING, MsgType.LEARN)]  # samples unchecked: it knows no layout
    assert replies[3][1][3] == 0  # HELLO flags: neither LEARNS nor TARGETS


def test_save_answers_the_working_copys_id_and_digest(cases, tmp_path):
    (tmp_path / "key").write_bytes(KEY)
    device = cases("--key", str(tmp_path / "key"))
    replies, active, working, _ = device.run(learn(1, samples(4, 2), key=KEY) + save(2) + save(2, KEY) +
                                             save(2, KEY) + save(3, KEY) + HELLO)
    digest = hashlib.sha256(working).digest()
    ident = struct.unpack_from("<I", digest)[0] or 1
    assert replies[1] == error(Code.UNSIGNED, MsgType.SAVE)
    assert replies[2] == replies[3] == replies[4] == (MsgType.ACTIVE, struct.pack("<I", ident) + digest)  # resent
    assert active == working and digest == img.digest(np.frombuffer(working, "<f4"))
    hello = replies[5][1]
    assert struct.unpack_from("<II", hello, 12) == (ident, 2)  # active_id, the persisted counter


def test_failed_save_keeps_the_old_weights_and_the_working_copy(cases):
    replies, active, working, _ = cases("--fail-persist").run(learn(1, samples(5, 2)) + INFER + save(2) + INFER)
    assert replies[2] == error(Code.STORAGE, MsgType.SAVE) and replies[3] == replies[1]
    assert active == START.tobytes() and working != active


def test_save_every_saves_by_itself(cases):
    replies, active, working, _ = cases("--save-every", "3").run(learn(1, samples(6, 2)) + learn(2, samples(7, 2)))
    assert learned(replies[0][1])[:2] == (2, 0) and learned(replies[1][1])[:2] == (4, 4)
    assert active == working


def test_a_push_drops_unsaved_learning_and_learning_goes_on(cases):
    target = START + 1
    update = enc.encode(target, LAYERS, Encoding.F32)
    digest = img.digest(enc.decode(update, LAYERS, Encoding.F32))
    push = encode(MsgType.UPDATE, 1, struct.pack("<IIBBI", 7, 0, Encoding.F32, 0, 0) + digest + update)
    replies, active, working, _ = cases().run(learn(1, samples(8, 2)) + push + INFER + learn(2, samples(9, 1)))
    assert replies[1][0] == MsgType.ACTIVE
    assert np.allclose(np.frombuffer(replies[2][1], "<f4"), img.forward(target, LAYERS, INPUT), atol=1e-5)
    assert learned(replies[3][1])[:2] == (3, 2)  # the step count carried on; the push's record saved it
    assert active == target.astype("<f4").tobytes() and working != active


# ---- a device that persists: rx_pty_main --learn --pty, kill -9 and restart ----

class Device:
    """rx_pty_main --pty --learn with its state in `state`; request(wire) -> the replies (type, payload)."""

    def __init__(self, exe, tmp_path, *args):
        self.exe, self.head, self.state, self.args = exe, write_head(tmp_path / "head.bin", LAYERS, START), \
            tmp_path / "state.bin", args
        self.proc = None

    def start(self):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([str(self.exe), str(self.head), str(self.state), "--pty", os.ttyname(slave),
                                      "--learn", "--max-frame", str(MAX_FRAME), *self.args], stdout=subprocess.PIPE)
        os.close(slave)
        assert self.proc.stdout.readline() == b"ready\n"
        return self

    def request(self, wire, n=1, timeout=5.0):
        os.write(self.master, wire)
        reader, out = FrameReader(MAX_FRAME), []
        while len(out) < n:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, "no reply from rx_pty_main"
            out += [(f.kind, f.payload) for f in reader.feed(os.read(self.master, 4096))]
        return out

    def kill(self):
        self.proc.kill()  # SIGKILL: a power cut
        self.proc.wait(5)
        os.close(self.master)

    def saved(self):
        """(the record's fields, the active slot's bytes) in the state file."""
        data = self.state.read_bytes()
        record = STATE.unpack_from(data)
        active = record[7]
        return record, data[STATE.size + active * SLOT:STATE.size + (active + 1) * SLOT]


@pytest.fixture
def devices(exe, tmp_path):
    started = []

    def make(name, *args):
        (tmp_path / name).mkdir()
        started.append(Device(exe, tmp_path / name, *args))
        return started[-1]

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


BATCHES = [samples(10 + i, 4) for i in range(4)]


def test_save_kill_restart_learns_on_bit_for_bit(devices):
    """One device learns four batches with a SAVE after the second; another is killed right after
    that SAVE and restarted: both end with the same weights, bit for bit (the generator, feedback and
    step count were restored), and the restarted one answered LEARNED with the same steps."""
    steady, cut = devices("steady").start(), devices("cut").start()
    results = {}
    for name, device in (("steady", steady), ("cut", cut)):
        out = []
        for i, batch in enumerate(BATCHES):
            out.append(device.request(learn(i + 1, batch))[0])
            if i == 1:
                active = device.request(save(10))[0]
                assert active[0] == MsgType.ACTIVE
                if device is cut:
                    after_save = device.request(INFER)[0]
                    device.kill()
                    device.start()
                    assert device.request(INFER)[0] == after_save  # the saved weights
                    assert device.request(HELLO)[0][1][12:16] == active[1][:4]  # active_id
        out.append(device.request(save(20))[0])
        results[name] = out
        device.kill()
    assert results["cut"] == results["steady"]  # every LEARNED (steps, predictions, losses) and the final ACTIVE
    (record_a, image_a), (record_b, image_b) = steady.saved(), cut.saved()
    assert image_a == image_b and record_a[-7:-1] == record_b[-7:-1]  # steps, rng, feedback CRC
    assert record_a[-7] == 16


def test_kill_between_saves_comes_back_with_the_last_saved(devices):
    device = devices("d").start()
    device.request(learn(1, BATCHES[0]))
    saved = device.request(save(2))[0]
    saved_output = device.request(INFER)[0]
    second = device.request(learn(3, BATCHES[1]))[0]
    assert device.request(INFER)[0] != saved_output
    device.kill()
    device.start()
    assert device.request(INFER)[0] == saved_output
    hello = device.request(HELLO)[0][1]
    assert hello[12:16] == saved[1][:4] and struct.unpack_from("<I", hello, 16)[0] == 0  # unkeyed: floor back to 0
    assert device.request(learn(1, BATCHES[1]))[0] == second  # relearned from the saved state: the same step
    record, _ = device.saved()
    assert record[-7] == 4  # the record's steps: the save's


def test_restart_refuses_feedback_that_does_not_match_its_record(devices):
    device = devices("d").start()
    device.request(learn(1, BATCHES[0]))
    device.request(save(2))
    device.kill()
    data = bytearray(device.state.read_bytes())
    generation = STATE.unpack_from(data)[1]
    cell = STATE.size + 2 * SLOT + (generation % 2) * FEEDBACK
    data[cell] ^= 1
    device.state.write_bytes(bytes(data))
    proc = subprocess.run([str(device.exe), str(device.head), str(device.state), "--pty", "/dev/null", "--learn",
                           "--max-frame", str(MAX_FRAME)], capture_output=True, timeout=10)
    assert proc.returncode == 3 and b"efb_rx_init failed: 7" in proc.stderr  # EFB_RX_BAD_STATE


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_the_c_device_learns_what_the_python_device_learns(cases, loss):
    """The same 200 samples in LEARN frames to the C device and to the Python device (emulator.py,
    learning.py), same seed: the same statuses and predictions, and the same working copy and
    feedback after the stream: bit for bit with MSE on this relu/identity head (no libm in a step),
    within 2e-6 with cross-entropy (the C library's expf/logf against the twin's)."""
    from firmware_bridge.emulator import Device
    from firmware_bridge.learning import LearnConfig

    python = Device(LAYERS, START, max_frame=MAX_FRAME, learn=LearnConfig(loss=loss, lr=0.1))
    wire = b""
    expected = []
    for i in range(50):
        frame = learn(i + 1, samples(100 + i, 4, mse=loss == "mse"), n=4)
        wire += frame
        expected += [m for item in FrameReader(MAX_FRAME).feed(frame) for _, _, m in python.handle(item)]
    replies, _, working, feedback = cases("--lr", "0.1", "--loss", loss).run(wire)
    assert len(replies) == 50 and all(kind == MsgType.LEARNED for kind, _ in replies)
    for (_, payload), want in zip(replies, expected):
        steps, saved, entries = learned(payload)
        assert (steps, saved) == (want.steps, want.saved_steps)
        assert [e[:2] for e in entries] == list(zip(want.status, want.predicted))
        assert np.allclose([e[2] for e in entries], want.loss, rtol=1e-5, atol=1e-6)
    tolerance = 0 if loss == "mse" else 2e-6
    assert np.abs(np.frombuffer(working, "<f4") - python.learning.working).max() <= tolerance
    assert np.abs(np.frombuffer(feedback, "<f4") - python.learning.feedback).max() <= tolerance
