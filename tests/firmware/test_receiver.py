"""The C receiver (firmware_bridge/c/edgefdfa_rx.c), built with the system compiler: a corpus of
hostile frames and random streams answered byte for byte like the Python device
(firmware_bridge/emulator.py; rx_pty_main --cases runs a fresh C device per stream), updates decoded
bit for bit like the host, and real pseudo-terminals driven by the real host: every encoding, sparse
residuals, HMAC, a faulty line, kill -9 mid-transfer and restart from the persisted slots, ROLLBACK."""

import os
import select
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefdfa.head import image_of, layers_of, size
from firmware_bridge import encoding as enc
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.emulator import Device
from firmware_bridge.frame import FrameReader, encode
from firmware_bridge.protocol import (
    Begin,
    Chunk,
    Code,
    Commit,
    DeviceTimeout,
    Encoding,
    Hello,
    Layer,
    MsgType,
    ProtocolError,
    Rollback,
    Status,
    Update,
    Vector,
    layer_table,
    model_id,
)
from firmware_bridge.protocol import VERSION
from tests.bridge import hostile
from tests.bridge import wire as req
from tests.bridge.conftest import Relay, learned_head
from tools.build_firmware import RECEIVER

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_bridge" / "c"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-pedantic", "-ffp-contract=off"]
SOURCES = RECEIVER

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (apt-get install gcc)")

LAYERS = (Layer(3, 4, 1), Layer(2, 3, 0))  # the small head of tests/bridge/test_device.py
START = np.arange(size(LAYERS), dtype=np.float32) / 10
SLOT = 4 * size(LAYERS)
KEY = b"k" * 16
STATE = struct.Struct("<4I64sIIBBBBI4III")  # efb_rx_state v3 (efb_state.h), 120 bytes: magic, generation, ids,
#   digests, model_id, counter, active, valid, version, reserved, steps, rng[4], feedback_crc, crc
MODEL = model_id(LAYERS)


def build(out, *extra):
    """rx_pty_main built with the system compiler and the warning flags of the firmware build."""
    subprocess.run(["cc", *CFLAGS, *extra, f"-I{C_DIR}", str(Path(__file__).with_name("rx_pty_main.c")),
                    *map(str, SOURCES), "-lm", "-o", str(out)], check=True, capture_output=bool(extra))
    return out


@pytest.fixture(scope="session")
def exe(tmp_path_factory):
    return build(tmp_path_factory.mktemp("rx") / "rx_pty_main")


def test_receiver_builds_freestanding(tmp_path):
    """The receiver compiles warning-free as the firmware builds it: freestanding, no libc."""
    for src in SOURCES:
        subprocess.run(["cc", *CFLAGS, "-ffreestanding", "-c", str(src), "-o", str(tmp_path / "x.o")], check=True)


def write_head(path, layers, image):
    """The head file rx_pty_main reads: HELLO's layer table, then the factory image."""
    path.write_bytes(layer_table(tuple(layers)) + np.asarray(image, "<f4").tobytes())
    return path


# ---- the C receiver and the Python device on the same bytes ----

class Cases:
    """rx_pty_main --cases: one process answering many byte streams, each on a fresh device."""

    def __init__(self, exe, tmp_path, key, layers, image, max_frame):
        self.slot = 4 * size(layers)
        args = [str(exe), str(write_head(tmp_path / "head.bin", layers, image)), "-", "--cases",
                "--max-frame", str(max_frame)]
        if key is not None:
            (tmp_path / "key").write_bytes(key)
            args += ["--key", str(tmp_path / "key")]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})

    def run(self, wire):
        """(reply bytes, active image at the end) of a fresh C device fed `wire`."""
        self.proc.stdin.write(struct.pack("<I", len(wire)) + wire)
        self.proc.stdin.flush()
        header = self.proc.stdout.read(4)
        assert len(header) == 4, "rx_pty_main --cases died"
        replies, image = self.proc.stdout.read(struct.unpack("<I", header)[0]), self.proc.stdout.read(self.slot)
        assert len(image) == self.slot, "rx_pty_main --cases died"
        return replies, np.frombuffer(image, "<f4")

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(5) == 0


def runner(exe, tmp_path_factory):
    """run(wire, key=None, layers=LAYERS, image=START, max_frame=128) -> (replies, active image), and
    close() for its processes (one per configuration)."""
    servers = {}

    def run(wire, *, key=None, layers=LAYERS, image=START, max_frame=128):
        config = (key, tuple(layers), np.asarray(image, "<f4").tobytes(), max_frame)
        if config not in servers:
            servers[config] = Cases(exe, tmp_path_factory.mktemp("cases"), key, layers, image, max_frame)
        return servers[config].run(wire)

    def close():
        for server in servers.values():
            server.close()

    return run, close


@pytest.fixture(scope="session")
def run_c(exe, tmp_path_factory):
    """The C device of the firmware build flags: run_c(wire, ...) -> (replies, active image)."""
    run, close = runner(exe, tmp_path_factory)
    yield run
    close()


@pytest.fixture(scope="session")
def run_sanitized(tmp_path_factory):
    """The same, built with AddressSanitizer and UndefinedBehaviorSanitizer (any finding aborts)."""
    try:
        exe = build(tmp_path_factory.mktemp("asan") / "rx_pty_main", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all")
    except subprocess.CalledProcessError as e:
        pytest.skip(f"the C compiler cannot build with sanitizers: {e.stderr.decode()[-200:]}")
    run, close = runner(exe, tmp_path_factory)
    yield run
    close()


def run_python(wire, *, key=None, layers=LAYERS, image=START, max_frame=128):
    """(reply bytes, active image) of the Python device fed `wire`."""
    dev = Device(layers, image, key=key, max_frame=max_frame)
    with np.errstate(invalid="ignore", over="ignore"):  # hostile updates decode to inf and NaN
        out = b"".join(encode(kind, seq, m.pack()) for item in FrameReader(max_frame).feed(wire)
                       for kind, seq, m in dev.handle(item))
    return out, dev.weights.copy()


def frames(data):
    """(type, seq, payload) of each reply in a byte stream."""
    return [(f.kind, f.seq, f.payload) for f in FrameReader().feed(data)]


def assert_same_replies(c_out, py_out):
    """Byte-for-byte equal replies, except OUTPUT values (float sums in another order) to 1e-5."""
    c, py = frames(c_out), frames(py_out)
    assert [(k, s) for k, s, _ in c] == [(k, s) for k, s, _ in py]
    for (kind, _, a), (_, _, b) in zip(c, py):
        if kind == MsgType.OUTPUT:
            assert np.allclose(np.frombuffer(a, "<f4"), np.frombuffer(b, "<f4"), rtol=1e-5, atol=1e-5, equal_nan=True)
        else:
            assert a == b


def msg(kind, payload=b"", seq=1, version=VERSION):
    return encode(kind, seq, payload, version=version)


def raw(magic=b"EB", version=VERSION, kind=1, seq=7, length=None, payload=b"", crc=None):
    """A COBS record (with delimiter) of a hand-built frame: any header, any CRC."""
    body = struct.pack("<2sBBHH", magic, version, kind, seq, len(payload) if length is None else length) + payload
    return cobs.encode(body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)) + b"\x00"


def session(update, encoding=Encoding.F32, update_id=9, base_id=0, flags=0, size=40, key=None, counter=1,
            chunks=None):
    """BEGIN (signed with `key` if given; SIGNED flag with a zero hmac if flags says so without one) and
    every CHUNK (of `chunks` if given, else of the update) (seq 1)."""
    b = req.begin(update, MODEL, update_id, base_id, encoding, counter, key, signed=bool(flags & 1) or None)
    out, data = msg(MsgType.BEGIN, b.pack()), update if chunks is None else chunks
    for at in range(0, len(data), size):
        out += msg(MsgType.CHUNK, Chunk(at, data[at:at + size]).pack())
    return out


def commit(digest=bytes(32), update_id=9, mac=b"", seq=7):
    return msg(MsgType.COMMIT, Commit(update_id, digest, mac).pack(), seq)


def signed_commit(update, digest, key, update_id=9, base_id=0, encoding=Encoding.F32, counter=1, seq=7):
    """The COMMIT, signed with `key`, of the session `session(update, ..., key=key)` begins."""
    b = req.begin(update, MODEL, update_id, base_id, encoding, counter, key)
    return msg(MsgType.COMMIT, req.commit(b, digest, MODEL, key).pack(), seq)


def varint_update(gaps_bytes, count, q=b"", scale=0.5):
    """A sparse update whose first tensor lists `count` entries with these raw gap bytes; the other
    tensors list nothing."""
    empty = struct.pack("<If", 0, 0.0)
    return struct.pack("<If", count, scale) + gaps_bytes + q + empty * 3


BAD_F32 = START.copy()
BAD_F32[5] = np.nan
F16_INF = np.zeros(size(LAYERS), "<f2")
F16_INF[3] = np.inf
# INT8_TENSOR: W0 scale (inf) and 12 q (one nonzero), b0, W1 scale and 6 q, b1; 12 bytes short as INT8_CHANNEL
INT8_INF_SCALE = (struct.pack("<f", np.inf) + bytes([1]) + bytes(11) + bytes(12)
                  + struct.pack("<f", 1) + bytes(6) + bytes(8))
GOOD = enc.encode(START + 1, LAYERS, Encoding.F32)
GOOD16 = enc.encode(START + 1, LAYERS, Encoding.F16)  # 46 bytes: an UPDATE of it fits max_frame 128 unsigned
ONE_CHANGE = varint_update(b"\x00", 1, b"\x01")  # sparse, 34 bytes: fits signed too


def update(data=GOOD16, digest=bytes(32), update_id=9, base_id=0, encoding=Encoding.F16, flags=0, mac=b"", counter=1):
    return raw(kind=MsgType.UPDATE, payload=Update(update_id, base_id, encoding, flags, counter, digest, mac, data).pack())

# name: (prelude frames, the hostile frame (seq 7), what answers it: an ERROR code, "NACK", "ACTIVE",
# "SILENT" (no reply, nothing dropped) or None (dropped silently and counted) [, the device's key])
CORPUS = {
    "bad_cobs": (b"", b"\x05EB\x01\x00", None),
    "short_frame": (b"", cobs.encode(b"EB\x01\x01\x07\x00") + b"\x00", None),
    "bad_crc": (b"", raw(crc=1234), None),
    "decoded_over_max_frame": (b"", msg(MsgType.CHUNK, bytes(200), seq=7), None),
    "overlong_record": (b"", b"\x01" * 500 + b"\x00", None),
    "bad_magic": (b"", raw(magic=b"XY"), Code.BAD_MAGIC),
    "bad_version": (b"", raw(version=3), Code.BAD_VERSION),
    "version_1_frame": (b"", raw(version=1), Code.BAD_VERSION),
    "header_length_mismatch": (b"", raw(length=5), Code.BAD_LENGTH),
    "unknown_type": (b"", raw(kind=0x42), Code.BAD_TYPE),
    "type_zero": (b"", raw(kind=0), Code.BAD_TYPE),
    "type_0x87": (b"", raw(kind=0x87), Code.BAD_TYPE),
    "device_type_ack": (b"", raw(kind=MsgType.ACK, payload=bytes(4)), Code.BAD_TYPE),
    "hello_req_with_payload": (b"", raw(kind=MsgType.HELLO_REQ, payload=b"x"), Code.BAD_LENGTH),
    "status_req_with_payload": (b"", raw(kind=MsgType.STATUS_REQ, payload=b"x"), Code.BAD_LENGTH),
    "begin_13_bytes": (b"", raw(kind=MsgType.BEGIN, payload=bytes(13)), Code.BAD_LENGTH),
    "begin_14_bytes_of_version_1": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 0, 0).pack()[:14]),
                                    Code.BAD_LENGTH),
    "begin_49_bytes": (b"", raw(kind=MsgType.BEGIN, payload=bytes(49)), Code.BAD_LENGTH),
    "begin_51_bytes": (b"", raw(kind=MsgType.BEGIN, payload=bytes(51)), Code.BAD_LENGTH),
    "begin_signed_without_hmac": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 0, 1).pack()), Code.BAD_LENGTH),
    "chunk_without_data": (b"", raw(kind=MsgType.CHUNK, payload=bytes(4)), Code.BAD_LENGTH),
    "commit_35_bytes": (b"", raw(kind=MsgType.COMMIT, payload=bytes(35)), Code.BAD_LENGTH),
    "commit_69_bytes": (b"", raw(kind=MsgType.COMMIT, payload=bytes(69)), Code.BAD_LENGTH),
    "rollback_3_bytes": (b"", raw(kind=MsgType.ROLLBACK, payload=bytes(3)), Code.BAD_LENGTH),
    "rollback_4_bytes_of_version_1": (b"", raw(kind=MsgType.ROLLBACK, payload=bytes(4)), Code.BAD_LENGTH),
    "rollback_41_bytes": (b"", raw(kind=MsgType.ROLLBACK, payload=bytes(41)), Code.BAD_LENGTH),
    "infer_5_bytes": (b"", raw(kind=MsgType.INFER, payload=bytes(5)), Code.BAD_LENGTH),
    "infer_empty": (b"", raw(kind=MsgType.INFER), Code.BAD_INPUT),
    "infer_3_values": (b"", raw(kind=MsgType.INFER, payload=bytes(12)), Code.BAD_INPUT),
    "infer_nan": (b"", raw(kind=MsgType.INFER, payload=struct.pack("<4f", 0, np.nan, 0, 0)), Code.BAD_INPUT),
    "infer_inf": (b"", raw(kind=MsgType.INFER, payload=struct.pack("<4f", 0, 0, -np.inf, 0)), Code.BAD_INPUT),
    "begin_total_over_slot": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, SLOT + 1, 0, 0).pack()), Code.TOO_LARGE),
    "begin_total_max": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 2**32 - 1, 0, 0).pack()), Code.TOO_LARGE),
    "begin_encoding_5": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 5, 0).pack()), Code.BAD_ENCODING),
    "begin_encoding_255": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 255, 0).pack()), Code.BAD_ENCODING),
    "begin_id_zero": (b"", raw(kind=MsgType.BEGIN, payload=Begin(0, 0, 8, 0, 0).pack()), Code.BAD_FLAGS),
    "begin_unknown_flag": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 0, 0x80).pack()), Code.BAD_FLAGS),
    "begin_sparse_other_base": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 7, 8, 4, 0).pack()), Code.BASE_MISMATCH),
    "begin_unsigned_on_keyed": (b"", raw(kind=MsgType.BEGIN, payload=Begin(1, 0, 8, 0, 0).pack()), Code.UNSIGNED, KEY),
    "chunk_before_begin": (b"", raw(kind=MsgType.CHUNK, payload=Chunk(0, b"x").pack()), Code.NOT_IN_SESSION),
    "chunk_huge_offset": (session(bytes(8)), raw(kind=MsgType.CHUNK, payload=Chunk(2**32 - 16, b"abcd").pack()),
                          Code.OUT_OF_BOUNDS),
    "chunk_offset_max": (session(bytes(8)), raw(kind=MsgType.CHUNK, payload=Chunk(2**32 - 1, b"a").pack()),
                         Code.OUT_OF_BOUNDS),
    "chunk_past_total": (session(bytes(8)), raw(kind=MsgType.CHUNK, payload=Chunk(6, b"abcd").pack()),
                         Code.OUT_OF_BOUNDS),
    "chunk_past_the_slot": (msg(MsgType.BEGIN, Begin(9, 0, SLOT, 0, 0).pack())
                            + b"".join(msg(MsgType.CHUNK, Chunk(at, GOOD[at:at + 44]).pack()) for at in (0, 44)),
                            raw(kind=MsgType.CHUNK, payload=Chunk(88, bytes(40)).pack()), Code.OUT_OF_BOUNDS),
    "chunk_past_have": (msg(MsgType.BEGIN, Begin(9, 0, 8, 0, 0).pack()),
                        raw(kind=MsgType.CHUNK, payload=Chunk(4, b"abcd").pack()), "NACK"),
    "same_gap_again": (msg(MsgType.BEGIN, Begin(9, 0, 8, 0, 0).pack()) + msg(MsgType.CHUNK, Chunk(4, b"abcd").pack()),
                       raw(kind=MsgType.CHUNK, payload=Chunk(4, b"abcd").pack()), "SILENT"),
    "commit_without_session": (b"", commit(), Code.NOT_IN_SESSION),
    "commit_incomplete": (msg(MsgType.BEGIN, Begin(9, 0, 8, 0, 0).pack()), commit(), Code.INCOMPLETE),
    "commit_other_update": (session(bytes(8)), commit(update_id=10), Code.BAD_DIGEST),
    "commit_not_a_head": (session(bytes(8)), commit(), Code.BAD_UPDATE),
    "commit_hmac_unsigned_session": (session(GOOD), commit(img.digest(START + 1), mac=bytes(32)), Code.BAD_LENGTH),
    "commit_no_hmac_signed_session": (session(GOOD, flags=1), commit(img.digest(START + 1)), Code.BAD_LENGTH),
    "commit_wrong_digest": (session(GOOD), commit(img.digest(START)), Code.BAD_DIGEST),
    "commit_forged_hmac": (session(GOOD, key=KEY), commit(img.digest(START + 1), mac=bytes(32)), Code.BAD_SIGNATURE,
                           KEY),
    "commit_unsigned_in_a_keyed_session": (session(GOOD, key=KEY), commit(img.digest(START + 1)), Code.BAD_LENGTH, KEY),
    "commit_hmac_of_another_session": (session(GOOD, key=KEY), signed_commit(GOOD, img.digest(START + 1), KEY, counter=2),
                                       Code.BAD_SIGNATURE, KEY),
    "commit_chunks_not_the_begun_update": (session(GOOD, chunks=(START + 2).tobytes()), commit(img.digest(START + 2)),
                                           Code.BAD_DIGEST),
    "commit_signed_chunks_not_the_begun_update": (session(GOOD, key=KEY, chunks=(START + 2).tobytes()),
                                                  signed_commit(GOOD, img.digest(START + 1), KEY), Code.BAD_DIGEST, KEY),
    "begin_forged_hmac": (b"", raw(kind=MsgType.BEGIN, payload=req.begin(GOOD, MODEL, signed=True).pack()),
                          Code.BAD_SIGNATURE, KEY),
    "begin_signed_with_another_key": (b"", raw(kind=MsgType.BEGIN, payload=req.begin(GOOD, MODEL, key=b"x" * 16).pack()),
                                      Code.BAD_SIGNATURE, KEY),
    "begin_for_another_model": (b"", raw(kind=MsgType.BEGIN, payload=req.begin(GOOD, MODEL ^ 1, key=KEY).pack()),
                                Code.BAD_SIGNATURE, KEY),
    "begin_counter_not_above_the_device": (b"", raw(kind=MsgType.BEGIN, payload=req.begin(GOOD, MODEL, key=KEY,
                                                                                          counter=0).pack()),
                                           Code.STALE, KEY),
    "begin_older_than_the_session": (session(GOOD, key=KEY, counter=5),
                                     raw(kind=MsgType.BEGIN, payload=req.begin(GOOD16, MODEL, 10, encoding=Encoding.F16,
                                                                                key=KEY, counter=4).pack()),
                                     Code.STALE, KEY),
    "begin_unsigned_during_a_keyed_session": (session(GOOD, key=KEY), raw(kind=MsgType.BEGIN, payload=Begin(
        10, 0, 8, 0, 0).pack()), Code.UNSIGNED, KEY),
    "f32_nan": (session(BAD_F32.tobytes()), commit(), Code.BAD_UPDATE),
    "f32_one_byte_short": (session(GOOD[:-1]), commit(), Code.BAD_UPDATE),
    "f16_byte_left_over": (session(enc.encode(START, LAYERS, Encoding.F16) + b"\x01", Encoding.F16), commit(),
                           Code.BAD_UPDATE),
    "f16_inf": (session(F16_INF.tobytes(), Encoding.F16), commit(), Code.BAD_UPDATE),
    "int8_infinite_scale": (session(INT8_INF_SCALE, Encoding.INT8_TENSOR), commit(), Code.BAD_UPDATE),
    "int8_channel_short": (session(INT8_INF_SCALE, Encoding.INT8_CHANNEL), commit(), Code.BAD_UPDATE),
    "sparse_count_over_n": (session(varint_update(bytes(13), 13, bytes(13)), Encoding.SPARSE_INT8), commit(),
                            Code.BAD_UPDATE),
    "sparse_index_past_n": (session(varint_update(b"\x0c", 1, b"\x01"), Encoding.SPARSE_INT8), commit(),
                            Code.BAD_UPDATE),
    "sparse_varint_6_bytes": (session(varint_update(b"\x80" * 5 + b"\x00", 1, b"\x01"), Encoding.SPARSE_INT8),
                              commit(), Code.BAD_UPDATE),
    "sparse_varint_over_32_bits": (session(varint_update(b"\xff\xff\xff\xff\x1f", 1, b"\x01"), Encoding.SPARSE_INT8),
                                   commit(), Code.BAD_UPDATE),
    "sparse_ends_in_varints": (session(struct.pack("<If", 2, 0.5) + b"\x00\x80", Encoding.SPARSE_INT8), commit(),
                               Code.BAD_UPDATE),
    "sparse_nan_scale": (session(varint_update(b"\x00", 1, b"\x01", scale=np.nan), Encoding.SPARSE_INT8), commit(),
                         Code.BAD_UPDATE),
    "update_42_bytes": (b"", raw(kind=MsgType.UPDATE, payload=bytes(42)), Code.BAD_LENGTH),
    "update_signed_without_data": (b"", raw(kind=MsgType.UPDATE, payload=bytes(9) + b"\x01" + bytes(64)),
                                   Code.BAD_LENGTH),
    "update_id_zero": (b"", update(update_id=0), Code.BAD_FLAGS),
    "update_unknown_flag": (b"", update(flags=0x02), Code.BAD_FLAGS),
    "update_encoding_7": (b"", update(encoding=7), Code.BAD_ENCODING),
    "update_unsigned_on_keyed": (b"", update(), Code.UNSIGNED, KEY),
    "update_sparse_other_base": (b"", update(ONE_CHANGE, encoding=Encoding.SPARSE_INT8, base_id=3),
                                 Code.BASE_MISMATCH),
    "update_not_a_head": (b"", update(bytes(8)), Code.BAD_UPDATE),
    "update_wrong_digest": (b"", update(), Code.BAD_DIGEST),
    "update_hmac_on_unkeyed_device": (b"", update(ONE_CHANGE, encoding=Encoding.SPARSE_INT8, flags=1, mac=bytes(32)),
                                      Code.BAD_DIGEST),
    "update_forged_hmac": (b"", update(ONE_CHANGE, encoding=Encoding.SPARSE_INT8, flags=1, mac=bytes(32)),
                           Code.BAD_SIGNATURE, KEY),
    "update_of_what_is_active": (b"", update(bytes(8), digest=img.digest(START), update_id=0), "ACTIVE"),
    "update_during_a_session": (session(bytes(8)), update(), Code.BAD_DIGEST),
    "rollback_without_previous": (b"", msg(MsgType.ROLLBACK, Rollback(3).pack(), seq=7), Code.NO_PREVIOUS),
    "rollback_to_active": (b"", msg(MsgType.ROLLBACK, Rollback(0).pack(), seq=7), "ACTIVE"),
    "rollback_unsigned_on_keyed": (b"", msg(MsgType.ROLLBACK, Rollback(0).pack(), seq=7), Code.UNSIGNED, KEY),
    "rollback_forged_on_keyed": (b"", msg(MsgType.ROLLBACK, Rollback(0, 1, bytes(32)).pack(), seq=7),
                                 Code.BAD_SIGNATURE, KEY),
    "update_counter_not_above_the_device": (b"", msg(MsgType.UPDATE, req.update(
        ONE_CHANGE, bytes(32), MODEL, encoding=Encoding.SPARSE_INT8, counter=0, key=KEY).pack(), seq=7), Code.STALE, KEY),
    "sync_bytes": (b"", b"\x00\x00\x00", "SILENT"),
}
STATUS_REQ = msg(MsgType.STATUS_REQ, seq=8)


def hostile_type(wire):
    """The message type in a hostile frame's header."""
    return cobs.decode(wire[:-1])[3]


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_frame_is_named_like_the_python_device(run_c, name):
    prelude, hostile, expected, *keyed = CORPUS[name]
    key = keyed[0] if keyed else None
    wire = prelude + hostile + STATUS_REQ
    c_out, c_image = run_c(wire, key=key)
    py_out, py_image = run_python(wire, key=key)
    assert_same_replies(c_out, py_out)
    replies = frames(c_out)
    answer = [(k, p) for k, s, p in replies if s == 7]
    status = Status.unpack(replies[-1][2])
    if expected is None:  # noise: dropped and counted, never answered
        assert answer == [] and status.dropped == 1
    elif expected == "SILENT":
        assert answer == [] and status.dropped == 0
    elif expected == "NACK":
        assert answer == [(MsgType.NACK, struct.pack("<IB", 0, Code.GAP))]
    elif expected == "ACTIVE":
        assert answer == [(MsgType.ACTIVE, struct.pack("<I", 0) + img.digest(START))]
    else:
        assert answer == [(MsgType.ERROR, bytes([expected, hostile_type(hostile)]))]
        assert status.last_error == expected
    assert c_image.tobytes() == py_image.tobytes() == START.tobytes()  # the weights are untouched


def test_corpus_and_decodes_under_sanitizers(run_sanitized, run_c):
    """Every corpus frame and a valid update of each encoding, watched by ASan and UBSan: no read or
    write outside the caller's buffers, no undefined behaviour, the same answers."""
    streams = [(prelude + hostile + STATUS_REQ, keyed[0] if keyed else None)
               for prelude, hostile, _, *keyed in CORPUS.values()]
    for encoding in Encoding:
        base = START if encoding == Encoding.SPARSE_INT8 else None
        update = enc.encode(special_image(0), LAYERS, encoding, base=base)
        streams.append((session(update, encoding) + commit(img.digest(enc.decode(update, LAYERS, encoding, base))), None))
    for wire, key in streams:
        (out, image), (expected, expected_image) = run_sanitized(wire, key=key), run_c(wire, key=key)
        assert out == expected and image.tobytes() == expected_image.tobytes()


def test_device_type_is_refused_before_its_length(run_c):
    """PROTOCOL.md §1: a type the device never accepts is BAD_TYPE, whatever its payload."""
    wire = raw(kind=MsgType.ACK, payload=bytes(3))
    assert frames(run_c(wire)[0]) == [(MsgType.ERROR, 7, bytes([Code.BAD_TYPE, MsgType.ACK]))]


def test_python_device_refuses_a_device_type_before_its_length():
    replies = frames(run_python(raw(kind=MsgType.ACK, payload=bytes(3)))[0])
    assert replies == [(MsgType.ERROR, 7, bytes([Code.BAD_TYPE, MsgType.ACK]))]




@settings(max_examples=200, deadline=None)
@given(st.lists(hostile.frames, max_size=25), st.booleans(), st.sampled_from([None, KEY]))
def test_random_streams_answer_like_the_python_device(run_c, stream, delimit, key):
    """Noise and malformed frames, delimited or run together, to a device with and without a key: the
    same replies byte for byte, and the weights never change."""
    wire = b"".join(w + b"\x00" if delimit else w for w in stream) + b"\x00" + STATUS_REQ
    c_out, c_image = run_c(wire, key=key)
    py_out, py_image = run_python(wire, key=key)
    assert_same_replies(c_out, py_out)
    assert c_image.tobytes() == py_image.tobytes() == START.tobytes()


# ---- decoding: bit for bit the host's decode ----

def special_image(seed):
    """An image with float16 subnormals, signed zeros, large and tiny values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(size(LAYERS)) * 10 ** rng.uniform(-8, 4, size(LAYERS))).astype(np.float32)
    x[:6] = [6e-8, -3e-6, 6.1e-5, -0.0, 65504, 1e-30]
    return x


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize("seed", [0, 1])
def test_decoded_image_is_the_hosts_bit_for_bit(run_c, encoding, seed):
    target = special_image(seed)
    base = START if encoding == Encoding.SPARSE_INT8 else None
    update = enc.encode(target, LAYERS, encoding, base=base)
    expected = enc.decode(update, LAYERS, encoding, base)
    wire = session(update, encoding) + commit(img.digest(expected))
    c_out, c_image = run_c(wire)
    assert frames(c_out)[-1] == (MsgType.ACTIVE, 7, struct.pack("<I", 9) + img.digest(expected))
    assert c_image.tobytes() == expected.tobytes()
    assert_same_replies(c_out, run_python(wire)[0])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Encoding)), st.integers(0, 99), st.sampled_from(["flip", "truncate", "extend"]), st.data())
def test_damaged_updates_decode_like_the_host(run_c, encoding, seed, how, data):
    """A valid update with bytes flipped, cut or added, committed with the digest the host's decode
    gives (if it decodes): the same ACTIVE or BAD_UPDATE, and the same image, as the Python device."""
    base = START if encoding == Encoding.SPARSE_INT8 else None
    update = bytearray(enc.encode(special_image(seed), LAYERS, encoding, base=base))
    if how == "flip":
        for i in data.draw(st.lists(st.integers(0, len(update) - 1), min_size=1, max_size=4)):
            update[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del update[data.draw(st.integers(0, len(update) - 1)):]
    else:
        update += data.draw(st.binary(min_size=1, max_size=8))  # past the slot: TOO_LARGE
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            digest = img.digest(enc.decode(bytes(update), LAYERS, encoding, base))
    except ProtocolError:
        digest = bytes(32)
    wire = (session(bytes(update), encoding) if update else msg(MsgType.BEGIN, Begin(9, 0, 0, encoding, 0).pack()))
    wire += commit(digest) + STATUS_REQ
    c_out, c_image = run_c(wire)
    py_out, py_image = run_python(wire)
    assert_same_replies(c_out, py_out)
    assert c_image.tobytes() == py_image.tobytes()


@pytest.mark.parametrize("keyed", [False, True])
def test_one_frame_updates_install_like_the_python_device(run_c, keyed):
    """UPDATEs that install (f16, then a signed sparse delta against it), one resent: the same replies,
    byte for byte, and the same image, bit for bit."""
    key = KEY if keyed else None
    wire = b""
    first = enc.decode(GOOD16, LAYERS, Encoding.F16)
    second = enc.decode(ONE_CHANGE, LAYERS, Encoding.SPARSE_INT8, first)
    for data, encoding, base, image, update_id, counter in ((GOOD16, Encoding.F16, 0, first, 9, 1),
                                                            (ONE_CHANGE, Encoding.SPARSE_INT8, 9, second, 10, 2)):
        u = req.update(data, img.digest(image), MODEL, update_id, base, encoding, counter, key)
        frame = raw(kind=MsgType.UPDATE, payload=u.pack())
        wire += frame + frame  # the second: a resent UPDATE, answered ACTIVE
    c_out, c_image = run_c(wire + STATUS_REQ, key=key, max_frame=256)
    py_out, py_image = run_python(wire + STATUS_REQ, key=key, max_frame=256)
    assert_same_replies(c_out, py_out)
    replies = frames(c_out)
    assert [k for k, _, _ in replies] == [MsgType.ACTIVE] * 4 + [MsgType.STATUS]
    assert replies[3][2] == struct.pack("<I", 10) + img.digest(second)
    assert c_image.tobytes() == py_image.tobytes() == second.tobytes()
    assert Status.unpack(replies[-1][2]).previous_id == 9


@pytest.mark.parametrize("key_len", [1, 16, 64, 65, 100])
def test_signed_update_commits_with_any_key_length(run_c, key_len):
    """HMAC keys longer than SHA-256's 64-byte block are hashed first (RFC 2104), as Python's hmac does."""
    key = bytes(range(7, 7 + key_len))
    update = enc.encode(START + 1, LAYERS, Encoding.F32)
    digest = img.digest(START + 1)
    wire = session(update, key=key) + signed_commit(update, digest, key)
    c_out, c_image = run_c(wire, key=key)
    assert frames(c_out)[-1] == (MsgType.ACTIVE, 7, struct.pack("<I", 9) + digest)
    assert c_image.tobytes() == (START + 1).tobytes()


def test_wide_outputs_cross_cobs_blocks(run_c):
    """OUTPUT frames longer than 254 bytes (several COBS blocks) decode to the host's values."""
    layers = (Layer(100, 4, 0),)
    image = np.random.default_rng(3).standard_normal(size(layers)).astype(np.float32)
    x = np.array([1, -2, 0.5, 3], np.float32)
    wire = msg(MsgType.INFER, Vector(x).pack(), seq=5) + msg(MsgType.HELLO_REQ, seq=6)
    c_out, _ = run_c(wire, layers=layers, image=image, max_frame=1024)
    assert_same_replies(c_out, run_python(wire, layers=layers, image=image, max_frame=1024)[0])
    (kind, _, y), _ = frames(c_out)
    assert kind == MsgType.OUTPUT and np.allclose(np.frombuffer(y, "<f4"), img.forward(image, layers, x), atol=1e-5)


# ---- the C device on a pty, driven by the host ----

X = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)
FACTORY = learned_head(seed=99, n=0)
SLOT_24 = 4 * size(layers_of(FACTORY))  # the slot of the 24-32-4 head on the pty


class CDevice:
    """rx_pty_main serving a pty, its slots persisted in `state` (survives kill -9 and restarts)."""

    def __init__(self, exe, port, tmp_path, key=None, extra=()):
        self.state = tmp_path / "state.bin"
        head = write_head(tmp_path / "head.bin", layers_of(FACTORY), image_of(FACTORY))
        self.args = [str(exe), str(head), str(self.state), "--pty", port, *extra]
        if key is not None:
            (tmp_path / "key").write_bytes(key)
            self.args += ["--key", str(tmp_path / "key")]
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready and self.proc.stdout.readline() == b"ready\n", self.proc.stderr.read1().decode()

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(5) == 0, self.proc.stderr.read().decode()

    def image(self):
        """The active slot as persisted: (update id, image)."""
        data = self.state.read_bytes()
        _, _, id0, id1, _, _, _, active, *_ = STATE.unpack_from(data)
        size = (len(data) - STATE.size) // 2
        at = STATE.size + active * size
        return (id0, id1)[active], np.frombuffer(data[at:at + size], "<f4")


@pytest.fixture
def c_rig(exe, tmp_path):
    """make(key=None, extra=(), **faults) -> (relay, device): the C device behind a seeded Relay."""
    made = []

    def make(key=None, extra=(), **faults):
        relay = Relay(**faults)
        made.append((relay, CDevice(exe, relay.device.path, tmp_path, key, extra)))
        return made[-1]

    yield make
    for relay, device in made:
        device.stop()
        relay.close()


def outputs(port):
    return np.array([host.infer(port, x) for x in X])


def forward(head):
    return np.array([img.forward(image_of(head), layers_of(head), x) for x in X])


@pytest.mark.parametrize("encoding", ["f32", "f16", "int8", "int8-tensor"])
def test_every_encoding_installs_the_hosts_decoded_weights(c_rig, encoding):
    relay, device = c_rig()
    images = {}
    head = learned_head()
    report = host.push(relay.host.path, head, encoding=encoding, verify=True, images=images)
    assert report.encoding == encoding and report.parity <= 1e-5
    mid = model_id(layers_of(head))
    active_id, image = device.image()
    assert active_id == report.update_id and image.tobytes() == images[(mid, report.update_id)].tobytes()
    assert host.status(relay.host.path).active_id == report.update_id


def test_sparse_pushes_carry_the_residual(c_rig):
    """Budgeted sparse pushes: the device holds the host's mirror bit for bit, and the residual to
    the learned weights shrinks on every push (PROTOCOL.md §4); one that fits the slot ends it."""
    relay, device = c_rig()
    images, mid = {}, model_id(layers_of(FACTORY))
    assert host.push(relay.host.path, learned_head(n=10), encoding="sparse", images=images).encoding == "f32"
    target = image_of(learned_head(n=40))
    residuals = [np.abs(device.image()[1] - target)]
    for budget in [None, None, SLOT_24]:
        report = host.push(relay.host.path, learned_head(n=40), encoding="sparse", budget=budget, verify=True,
                           images=images)
        active_id, image = device.image()
        assert report.encoding == "sparse" and report.parity <= 1e-5 and active_id == report.update_id
        assert image.tobytes() == images[(mid, report.update_id)].tobytes()
        residuals.append(np.abs(image - target))
        assert np.all(residuals[-1] <= residuals[-2]) and np.linalg.norm(residuals[-1]) < np.linalg.norm(residuals[-2])
    assert residuals[-1].max() <= residuals[-2].max() / 250  # max|delta| / 254, plus float32 rounding


def test_keyed_device_refuses_unsigned_and_forged_updates(c_rig):
    relay, device = c_rig(key=KEY)
    head = learned_head()
    for key, code in [(None, Code.UNSIGNED), (b"x" * 16, Code.BAD_SIGNATURE)]:
        with pytest.raises(ProtocolError) as e:
            host.push(relay.host.path, head, key=key, images={})
        assert e.value.code == code
        assert device.image()[0] == 0 and np.abs(outputs(relay.host.path) - forward(FACTORY)).max() <= 1e-5
    report = host.push(relay.host.path, head, key=KEY, verify=True, images={})
    assert report.parity <= 1e-5 and device.image()[0] == report.update_id


@pytest.mark.parametrize("fault", ["drop", "corrupt", "duplicate", "reorder"])
def test_faulty_line_still_completes(c_rig, fault):
    relay, device = c_rig(seed=1, **{fault: 0.3})
    head = learned_head(seed=2)
    report = host.push(relay.host.path, head, window=6, timeout=0.1, retries=60, verify=True, images={})
    assert relay.faults[fault] > 0 and report.parity <= 1e-5
    assert device.image()[1].tobytes() == image_of(head).tobytes()


def test_kill_mid_transfer_keeps_old_weights_then_completes(c_rig):
    relay, device = c_rig()
    head = learned_head()

    def kill_halfway(have, total):
        if have > total // 2 and device.proc.poll() is None:
            device.kill()

    with pytest.raises(DeviceTimeout):
        host.push(relay.host.path, head, window=2, timeout=0.1, retries=3, progress=kill_halfway, images={})
    assert device.proc.poll() is not None  # the push failed because the device died halfway
    device.start()
    assert device.image()[0] == 0 and np.abs(outputs(relay.host.path) - forward(FACTORY)).max() <= 1e-5
    assert host.status(relay.host.path).have == 0  # staging is RAM: the restarted device begins again
    report = host.push(relay.host.path, head, verify=True, images={})
    assert report.resumed_from == 0 and report.parity <= 1e-5
    device.kill()  # the new weights survive a kill after COMMIT
    device.start()
    assert host.status(relay.host.path).active_id == report.update_id
    assert np.abs(outputs(relay.host.path) - forward(head)).max() <= 1e-5


def test_cut_cable_resumes_where_the_device_stopped(c_rig):
    relay, device = c_rig()
    head = learned_head()

    def cut_halfway(have, total):
        if have > total // 2:
            relay.cut.set()

    with pytest.raises(DeviceTimeout):
        host.push(relay.host.path, head, window=2, timeout=0.1, retries=3, progress=cut_halfway, images={})
    relay.cut.clear()
    held = host.status(relay.host.path).have
    assert 0 < held < SLOT_24 and device.image()[0] == 0
    report = host.push(relay.host.path, head, verify=True, images={})
    assert report.resumed_from == held and report.parity <= 1e-5


def test_restart_checks_the_persisted_slots(c_rig):
    """At init the receiver hashes the slots its record names: a damaged inactive slot is dropped
    (no ROLLBACK to it); a damaged active slot, or a record of another head, refuses to boot
    (EFB_RX_BAD_STATE)."""
    relay, device = c_rig()
    report = host.push(relay.host.path, learned_head(), images={})  # slot 1 active, factory in slot 0
    device.kill()
    data = bytearray(device.state.read_bytes())
    data[STATE.size] ^= 1  # slot 0's first byte
    device.state.write_bytes(data)
    device.start()
    s = host.status(relay.host.path)
    assert (s.active_id, s.previous_id) == (report.update_id, 0xFFFFFFFF)
    device.kill()
    data[STATE.size + SLOT_24] ^= 1  # slot 1's first byte
    device.state.write_bytes(data)
    proc = subprocess.run(device.args, check=False, capture_output=True, timeout=10)
    assert proc.returncode == 3 and b"efb_rx_init failed: 7" in proc.stderr  # EFB_RX_BAD_STATE
    data[STATE.size + SLOT_24] ^= 1
    device.state.write_bytes(data)
    tanh_head = write_head(device.state.with_name("tanh.bin"),  # the same sizes: only model_id tells
                           [Layer(l.n_out, l.n_in, 2) for l in layers_of(FACTORY)], image_of(FACTORY))
    proc = subprocess.run([device.args[0], str(tanh_head), *device.args[2:]], check=False, capture_output=True,
                          timeout=10)
    assert proc.returncode == 3 and b"efb_rx_init failed: 7" in proc.stderr
    device.start()


def test_rollback_flips_and_persists(c_rig):
    relay, device = c_rig()
    head = learned_head()
    report = host.push(relay.host.path, head, images={})
    assert host.rollback(relay.host.path).active_id == 0
    device.kill()
    device.start()
    s = host.status(relay.host.path)
    assert (s.active_id, s.previous_id) == (0, report.update_id)
    assert np.abs(outputs(relay.host.path) - forward(FACTORY)).max() <= 1e-5
    assert host.rollback(relay.host.path).active_id == report.update_id  # and forward again
    assert np.abs(outputs(relay.host.path) - forward(head)).max() <= 1e-5


def test_device_refuses_an_encoding_it_does_not_accept(c_rig):
    relay, device = c_rig(extra=["--encodings", "0x1"])  # F32 only
    with pytest.raises(ProtocolError) as e:
        host.push(relay.host.path, learned_head(), encoding="f16", images={})
    assert e.value.code == Code.BAD_ENCODING and device.image()[0] == 0
    assert host.push(relay.host.path, learned_head(), encoding="f32", images={}).encoding == "f32"


def test_failed_persist_keeps_the_old_weights(c_rig):
    relay, device = c_rig(extra=["--fail-persist"])
    with pytest.raises(ProtocolError) as e:
        host.push(relay.host.path, learned_head(), images={})
    assert e.value.code == Code.STORAGE
    s = host.status(relay.host.path)
    assert (s.active_id, s.previous_id) == (0, 0xFFFFFFFF) and device.image()[0] == 0
    assert np.abs(outputs(relay.host.path) - forward(FACTORY)).max() <= 1e-5


def signed_push(target, update_id, counter, key=KEY, seq=1):
    """A whole signed chunked push of `target` (f32) at `counter`: BEGIN, CHUNKs, COMMIT."""
    data = enc.encode(target, LAYERS, Encoding.F32)
    b = req.begin(data, MODEL, update_id, counter=counter, key=key)
    out = msg(MsgType.BEGIN, b.pack(), seq)
    for at in range(0, len(data), 40):
        out += msg(MsgType.CHUNK, Chunk(at, data[at:at + 40]).pack(), seq)
    return out + msg(MsgType.COMMIT, req.commit(b, img.digest(target), MODEL, key).pack(), seq)


def test_replays_and_splices_answer_like_the_python_device(run_c):
    """One keyed device through a downgrade (push 1 replayed after push 2), a splice (push 1's BEGIN
    and COMMIT around zero CHUNKs), an unsigned and a forged ROLLBACK, a signed one and its replay,
    and an unsigned BEGIN in a signed session: the C receiver answers byte for byte as the Python
    device, refuses each by name and ends on push 2's weights with push 1 in the rollback slot."""
    first, second = signed_push(START + 1, 11, 1, seq=1), signed_push(START + 2, 12, 2, seq=2)
    spliced = msg(MsgType.BEGIN, req.begin(enc.encode(START + 1, LAYERS, Encoding.F32), MODEL, 11, counter=1,
                                           key=KEY).pack(), 3)
    spliced += msg(MsgType.CHUNK, Chunk(0, bytes(40)).pack(), 3)
    spliced += msg(MsgType.COMMIT, Commit(11, img.digest(START + 1)).pack(), 3)
    back = msg(MsgType.ROLLBACK, req.rollback(11, MODEL, 3, KEY).pack(), 6)
    wire = (first + second + first + spliced
            + msg(MsgType.ROLLBACK, req.rollback(11, MODEL, 3).pack(), 4)  # unsigned
            + msg(MsgType.ROLLBACK, Rollback(11, 3, bytes(32)).pack(), 5)  # forged
            + back + msg(MsgType.ROLLBACK, req.rollback(12, MODEL, 4, KEY).pack(), 7) + back  # back, forth, replay
            + session(GOOD, key=KEY, counter=5) + msg(MsgType.BEGIN, Begin(13, 0, 8, 0, 0).pack(), 8)
            + msg(MsgType.HELLO_REQ, seq=9) + STATUS_REQ)
    c_out, c_image = run_c(wire, key=KEY)
    py_out, py_image = run_python(wire, key=KEY)
    assert_same_replies(c_out, py_out)
    replies = frames(c_out)
    refused = [(s, Code(p[0]), MsgType(p[1])) for k, s, p in replies if k == MsgType.ERROR]
    assert (2, Code.STALE, MsgType.BEGIN) not in refused and (1, Code.STALE, MsgType.BEGIN) in refused  # the replay
    assert (3, Code.STALE, MsgType.BEGIN) in refused and (3, Code.NOT_IN_SESSION, MsgType.COMMIT) in refused
    assert {(4, Code.UNSIGNED, MsgType.ROLLBACK), (5, Code.BAD_SIGNATURE, MsgType.ROLLBACK),
            (6, Code.STALE, MsgType.ROLLBACK), (8, Code.UNSIGNED, MsgType.BEGIN)} <= set(refused)
    hello = Hello.unpack(next(p for k, s, p in replies if k == MsgType.HELLO))
    status = Status.unpack(replies[-1][2])
    assert (hello.active_id, hello.counter) == (12, 5)  # the session's counter (5) is the floor now
    assert (status.state, status.previous_id, status.have) == (1, 11, len(GOOD))  # the session survived
    assert c_image.tobytes() == py_image.tobytes() == (START + 2).tobytes()
