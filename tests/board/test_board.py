"""The C receiver as firmware on an emulated Cortex-M3 (QEMU mps2-an385), driven by the real host:
it announces the shipped IMU model's head, takes learned heads in float32, int8 and sparse int8 and
answers INFER like the host's own forward pass, and keeps the old weights when it loses power in the
middle of a push or while it writes its flash; a ROLLBACK, too, outlives a reset."""

import struct
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa.head import image_of, layers_of, size
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.link import open_port
from firmware_bridge.protocol import LEARNS, NONE, Code, DeviceTimeout, Hello, MsgType, ProtocolError, model_id
from tests.board.conftest import KEY
from tests.bridge.test_replay import errors, replay

MODEL = Path(__file__).resolve().parents[2] / "models" / "imu-activity.onnx"
RECORD_SPAN = 128  # board/mps2_an385/flash.h FLASH_RECORD_SPAN: flash.bin holds two record copies, then the slots
RECORD = struct.Struct("<4I64sIIB")  # efb_rx_state up to `active`: magic, generation, ids, digests, model_id,
#                                     counter, active
# a small Cortex-M3 part (STM32F103C8: 64 KiB flash, 20 KiB RAM) for a board that only takes pushes; learning on
# the device adds its working copy, feedback and workspace (about 5 KiB for the IMU head): 24 KiB of RAM
MAX_FLASH, MAX_RAM = 64 * 1024, 24 * 1024


@pytest.fixture(scope="module")
def imu():
    """(the shipped model's factory head, two heads learned from it online, real head inputs)."""
    import make_models

    X, y = make_models.held_out("imu-activity")
    order = np.random.default_rng(0).permutation(len(X))
    model = edgefdfa.load(MODEL)
    factory = model.head()
    learned = []
    for part in (order[:150], order[150:300]):  # a few hundred samples, two learned states
        for i in part:
            model.learn_one(X[i], int(y[i]))
        learned.append(model.head())
    features = np.array([model.features(X[i]) for i in order[300:304]])
    return factory, learned, features


def outputs_on(port, features):
    """The board's INFER answers."""
    return np.array([host.infer(port, f) for f in features])


def host_outputs(head, features):
    """The host's float32 forward pass of `head`."""
    layers, image = layers_of(head), image_of(head)
    return np.array([img.forward(image, layers, f) for f in features])


def test_firmware_fits_a_small_cortex_m3(firmware):
    assert firmware.flash <= MAX_FLASH and firmware.ram <= MAX_RAM, str(firmware)


def test_hello_status_and_factory_head(boards, imu):
    factory, _, features = imu
    board = boards()
    assert board.boot == "factory weights"
    with host.session(board.port, 0.5, 5) as s:
        hello = s.request(MsgType.HELLO_REQ, Hello)
    layers = layers_of(factory)
    assert hello.layers == layers and hello.model_id == model_id(layers)
    assert (hello.slot_size, hello.active_id, hello.encodings, hello.flags) == (4 * size(layers), 0, 0x1F, LEARNS)
    s = host.status(board.port)
    assert (s.state, s.active_id, s.previous_id, s.dropped, s.last_error) == (0, 0, NONE, 0, 0)
    assert np.abs(outputs_on(board.port, features) - host_outputs(factory, features)).max() <= 1e-5


def test_push_learned_heads_f32_int8_sparse(boards, imu):
    _, (first, second), features = imu
    board = boards()
    mirror = {}  # the host's copy of what the board holds, per update id
    report = host.push(board.port, first, encoding="f32", verify=True, images=mirror)
    assert report.encoding == "f32" and report.parity <= 1e-5 and report.drift <= 1e-5
    assert np.abs(outputs_on(board.port, features) - host_outputs(first, features)).max() <= 1e-5

    for encoding, head in (("int8", second), ("sparse", first)):  # sparse: a delta against the int8 image
        report = host.push(board.port, head, encoding=encoding, verify=True, images=mirror)
        assert report.encoding == encoding and report.parity <= 1e-5 and report.drift > 0
        assert report.payload_bytes < image_of(head).nbytes / 2
        held = mirror[(model_id(layers_of(head)), report.update_id)]  # the decoded image the board holds
        device = outputs_on(board.port, features)
        assert np.abs(device - [img.forward(held, layers_of(head), f) for f in features]).max() <= 1e-5
        assert np.array_equal(device.argmax(1), host_outputs(head, features).argmax(1))
    s = host.status(board.port)
    assert (s.active_id, s.state, s.dropped, s.last_error) == (report.update_id, 0, 0, 0)


def test_power_cut_mid_push_keeps_the_old_weights(boards, imu):
    _, (first, second), features = imu
    board = boards()
    old = host.push(board.port, first, encoding="f32", images={})

    def cut_at_half(have, total):
        if have >= total // 2:
            board.kill()

    # The pty goes with QEMU, as when a USB adapter is unplugged: the host names it DeviceTimeout, as
    # it does a board that loses power behind a live adapter.
    with pytest.raises(DeviceTimeout, match="went away|no reply|stopped acknowledging"):
        host.push(board.port, second, encoding="f32", images={}, progress=cut_at_half, timeout=0.3, retries=2)
    assert board.proc.returncode == -9

    board = boards()  # the same flash
    assert board.boot == f"restored update {old.update_id:08x}"
    assert host.status(board.port).active_id == old.update_id
    assert np.abs(outputs_on(board.port, features) - host_outputs(first, features)).max() <= 1e-5
    new = host.push(board.port, second, encoding="f32", verify=True, images={})
    assert new.resumed_from == 0 and new.parity <= 1e-5  # staging does not survive a reset
    assert np.abs(outputs_on(board.port, features) - host_outputs(second, features)).max() <= 1e-5


def newest_record(data):
    """(the cell of flash.bin's record copy with the larger generation, the slot it makes active)."""
    records = [RECORD.unpack_from(data, c * RECORD_SPAN) for c in (0, 1)]
    newer = int(np.argmax([r[1] for r in records]))
    return newer, records[newer][-1]


def test_power_cut_while_writing_flash_keeps_the_old_weights(boards, imu):
    """The newer of the two record copies wins at boot; a cut after a push's image reached the flash
    but before its record did (made by hand: that push's record copy erased) leaves the push before
    it active and the slot written without its record empty."""
    _, (first, second), features = imu
    board = boards()
    old = host.push(board.port, first, encoding="f32", images={})
    new = host.push(board.port, second, encoding="f32", images={})
    board.kill()
    board = boards()
    assert board.boot == f"restored update {new.update_id:08x}"
    s = host.status(board.port)
    assert (s.active_id, s.previous_id) == (new.update_id, old.update_id)
    board.kill()

    flash = board.workdir / "flash.bin"
    data = bytearray(flash.read_bytes())
    newer, _ = newest_record(data)
    data[newer * RECORD_SPAN:(newer + 1) * RECORD_SPAN] = b"\xff" * RECORD_SPAN
    flash.write_bytes(bytes(data))
    board = boards()
    assert board.boot == f"restored update {old.update_id:08x}"
    s = host.status(board.port)
    assert (s.active_id, s.previous_id) == (old.update_id, NONE)
    assert np.abs(outputs_on(board.port, features) - host_outputs(first, features)).max() <= 1e-5


def test_a_damaged_active_slot_falls_back_to_the_record_before_it(boards, imu):
    """Flash that rots under the newest weights: the receiver refuses the current record (its active
    slot's digest fails), and the board boots the record before it, not the factory weights."""
    _, (first, second), features = imu
    board = boards()
    old = host.push(board.port, first, encoding="f32", images={})
    host.push(board.port, second, encoding="f32", images={})
    board.kill()
    flash = board.workdir / "flash.bin"
    data = bytearray(flash.read_bytes())
    _, active = newest_record(data)
    slot_size = 4 * size(layers_of(first))
    data[2 * RECORD_SPAN + active * slot_size + 100] ^= 0x40  # one bit of the newest weights
    flash.write_bytes(bytes(data))
    board = boards()
    assert board.boot == f"current record refused; restored update {old.update_id:08x}"
    s = host.status(board.port)
    assert (s.active_id, s.previous_id) == (old.update_id, NONE)
    assert np.abs(outputs_on(board.port, features) - host_outputs(first, features)).max() <= 1e-5
    again = host.push(board.port, second, encoding="f32", verify=True, images={})
    assert again.parity <= 1e-5 and host.status(board.port).active_id == again.update_id


def test_rollback_survives_a_reset(boards, imu):
    _, (first, second), features = imu
    board = boards()
    old = host.push(board.port, first, encoding="f32", images={})
    new = host.push(board.port, second, encoding="f32", images={})
    assert host.rollback(board.port).active_id == old.update_id  # persists the record alone
    board.kill()
    board = boards()
    assert board.boot == f"restored update {old.update_id:08x}"
    s = host.status(board.port)
    assert (s.active_id, s.previous_id) == (old.update_id, new.update_id)
    assert np.abs(outputs_on(board.port, features) - host_outputs(first, features)).max() <= 1e-5


class Recorder:
    """An open serial port that keeps a copy of every frame the host writes (a recording of the line)."""

    def __init__(self, path):
        self.port, self.frames = open_port(path), []

    def write(self, data):
        self.frames.append(bytes(data))
        return self.port.write(data)

    def __getattr__(self, name):
        return getattr(self.port, name)


def test_keyed_board_refuses_replays_and_unsigned_changes_across_a_reset(keyed_boards, imu):
    """The KEYED firmware: unsigned pushes and ROLLBACKs are UNSIGNED; a recorded signed push,
    replayed after a newer one and after a power cut, is STALE; the weights and the counter in
    flash stay."""
    _, (first, second), features = imu
    board = keyed_boards()
    recorder = Recorder(board.port)
    try:
        old = host.push(recorder, first, encoding="f32", key=KEY, images={})
    finally:
        recorder.port.close()
    new = host.push(board.port, second, encoding="f32", key=KEY, images={})
    for attempt in (lambda: host.push(board.port, first, encoding="f32", images={}),
                    lambda: host.rollback(board.port)):
        with pytest.raises(ProtocolError) as e:
            attempt()
        assert e.value.code == Code.UNSIGNED
    board.kill()
    flash = (board.workdir / "flash.bin").read_bytes()
    board = keyed_boards()
    assert board.boot == f"restored update {new.update_id:08x}"
    with host.session(board.port, 0.5, 5) as s:
        assert s.request(MsgType.HELLO_REQ, Hello).counter == 2  # two signed pushes, persisted
    got = errors(replay(board.port, recorder.frames))
    assert got[0] == (Code.STALE, MsgType.BEGIN) and (Code.NOT_IN_SESSION, MsgType.COMMIT) in got
    assert (board.workdir / "flash.bin").read_bytes() == flash
    assert np.abs(outputs_on(board.port, features) - host_outputs(second, features)).max() <= 1e-5
    assert host.rollback(board.port, key=KEY).active_id == old.update_id  # signed: it flips
