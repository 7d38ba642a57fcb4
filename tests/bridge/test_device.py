"""The device's state machine without a port: hostile and malformed frames are refused with a named
code, nothing is written outside its buffers, and the active weights change only on a verified COMMIT."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefdfa.head import Layer, size
from firmware_bridge import encoding as enc
from firmware_bridge import image as img
from firmware_bridge.emulator import Device
from firmware_bridge.frame import FrameReader, encode
from firmware_bridge.protocol import (
    SIGNED,
    Active,
    Begin,
    Chunk,
    Code,
    Commit,
    Encoding,
    Error,
    MsgType,
    Nack,
    Rollback,
    Update,
    VERSION,
    Vector,
    model_id,
)
from tests.bridge import hostile
from tests.bridge import wire as req

LAYERS = (Layer(3, 4, 1), Layer(2, 3, 0))
START = np.arange(size(LAYERS), dtype=np.float32) / 10
MODEL = model_id(LAYERS)


def device(**kw):
    return Device(LAYERS, START, max_frame=128, **kw)


def send(dev, kind, message=None, seq=1, version=VERSION, raw=None):
    """The replies (type, message) of the device to one frame."""
    wire = encode(kind, seq, raw if raw is not None else message.pack(), version=version)
    return [(k, m) for item in FrameReader(dev.max_frame).feed(wire) for k, _, m in dev.handle(item)]


def error(replies):
    (kind, m), = replies
    assert kind == MsgType.ERROR, replies
    return Code(m.code)


def test_named_refusals():
    dev = device()
    assert error(send(dev, MsgType.HELLO_REQ, raw=b"", version=1)) == Code.BAD_VERSION
    assert error(send(dev, MsgType.CHUNK, Chunk(0, b"x"))) == Code.NOT_IN_SESSION
    assert error(send(dev, MsgType.COMMIT, Commit(5, bytes(32)))) == Code.NOT_IN_SESSION
    assert error(send(dev, MsgType.BEGIN, raw=b"\x01\x02")) == Code.BAD_LENGTH
    assert error(send(dev, 0x42, raw=b"")) == Code.BAD_TYPE
    assert error(send(dev, MsgType.ACK, raw=b"\0\0\0\0")) == Code.BAD_TYPE
    assert error(send(dev, MsgType.BEGIN, Begin(1, 0, dev.slot_size + 1, 0, 0))) == Code.TOO_LARGE
    assert error(send(dev, MsgType.BEGIN, Begin(1, 0, 8, 9, 0))) == Code.BAD_ENCODING
    assert error(send(dev, MsgType.BEGIN, Begin(0, 0, 8, 0, 0))) == Code.BAD_FLAGS
    assert error(send(dev, MsgType.BEGIN, Begin(1, 7, 8, Encoding.SPARSE_INT8, 0))) == Code.BASE_MISMATCH
    assert error(send(dev, MsgType.INFER, Vector(np.zeros(5, np.float32)))) == Code.BAD_INPUT
    assert error(send(dev, MsgType.ROLLBACK, Rollback(3))) == Code.NO_PREVIOUS
    assert send(dev, MsgType.BEGIN, req.begin(bytes(8), MODEL, 1))[0][0] == MsgType.ACK
    assert error(send(dev, MsgType.CHUNK, Chunk(0xFFFFFFF0, b"abcd"))) == Code.OUT_OF_BOUNDS
    assert error(send(dev, MsgType.CHUNK, Chunk(6, b"abcd"))) == Code.OUT_OF_BOUNDS
    assert send(dev, MsgType.CHUNK, Chunk(4, b"abcd")) == [(MsgType.NACK, Nack(0, Code.GAP))]
    assert send(dev, MsgType.CHUNK, Chunk(4, b"abcd")) == []  # one NACK per gap
    assert error(send(dev, MsgType.COMMIT, Commit(1, bytes(32)))) == Code.INCOMPLETE
    send(dev, MsgType.CHUNK, Chunk(0, bytes(8)))
    assert error(send(dev, MsgType.COMMIT, Commit(1, bytes(32)))) == Code.BAD_UPDATE  # 8 bytes is not a head
    assert np.array_equal(dev.weights, START) and dev.last_error == Code.BAD_UPDATE
    assert dev.staging == bytearray(bytes(8) + bytes(dev.slot_size - 8))


def test_bad_digest_and_forged_hmac_keep_the_weights():
    target = START + 1
    update = enc.encode(target, LAYERS, Encoding.F32)
    for key, hmac_key, code in [(None, None, Code.BAD_DIGEST), (b"k" * 16, b"x" * 16, Code.BAD_SIGNATURE)]:
        dev = device(key=key)
        begin = req.begin(update, MODEL, 9, key=key)
        send(dev, MsgType.BEGIN, begin)
        for at in range(0, len(update), 40):
            send(dev, MsgType.CHUNK, Chunk(at, update[at:at + 40]))
        digest = img.digest(target) if hmac_key else img.digest(START)
        assert error(send(dev, MsgType.COMMIT, req.commit(begin, digest, MODEL, hmac_key))) == code
        assert np.array_equal(dev.weights, START) and dev.valid == [True, False]
        assert (dev.session is None) == (code == Code.BAD_DIGEST)  # a forged COMMIT changes nothing


def test_commit_swaps_and_is_idempotent():
    dev = device()
    target = START * 2
    update = enc.encode(target, LAYERS, Encoding.F16)
    send(dev, MsgType.BEGIN, req.begin(update, MODEL, 9, encoding=Encoding.F16))
    send(dev, MsgType.CHUNK, Chunk(0, update[:40]))
    send(dev, MsgType.CHUNK, Chunk(40, update[40:]))
    digest = img.digest(enc.decode(update, LAYERS, Encoding.F16))
    first = send(dev, MsgType.COMMIT, Commit(9, digest))
    assert first == send(dev, MsgType.COMMIT, Commit(9, digest)) == [(MsgType.ACTIVE, Active(9, digest))]
    assert np.allclose(dev.weights, target, atol=1e-2) and dev.ids == [0, 9]


def test_update_is_begin_chunk_and_commit_in_one_frame():
    update = enc.encode(START * 2, LAYERS, Encoding.F16)
    digest = img.digest(enc.decode(update, LAYERS, Encoding.F16))
    begin, commit = req.begin(update, MODEL, 9, encoding=Encoding.F16), Commit(9, digest)
    chunked, one = device(), device()
    send(chunked, MsgType.BEGIN, begin)
    send(chunked, MsgType.CHUNK, Chunk(0, update))
    expected = send(chunked, MsgType.COMMIT, commit)
    whole = req.update(update, digest, MODEL)
    assert send(one, MsgType.UPDATE, whole) == expected == [(MsgType.ACTIVE, Active(9, digest))]
    assert np.array_equal(one.slots, chunked.slots) and one.ids == chunked.ids and one.session is None
    assert send(one, MsgType.UPDATE, whole) == expected  # resent: nothing changes
    assert one.ids == [0, 9] and one.active == 1
    assert error(send(one, MsgType.UPDATE, req.update(update, bytes(32), MODEL))) == Code.BAD_DIGEST
    assert one.active == 1 and np.array_equal(one.weights, chunked.weights)


def test_update_refusals_are_named_and_a_refused_update_keeps_the_session():
    update = enc.encode(START + 1, LAYERS, Encoding.F16)
    decoded, key = enc.decode(update, LAYERS, Encoding.F16), b"k" * 16
    digest = img.digest(decoded)
    dev = Device(LAYERS, START, key=key, max_frame=256)  # a signed update of 46 bytes is a 136-byte frame
    good = req.update(update, digest, MODEL, counter=2, key=key)
    assert error(send(dev, MsgType.UPDATE, raw=good.pack()[:46])) == Code.BAD_LENGTH  # no data
    assert error(send(dev, MsgType.UPDATE, raw=good.pack()[:78])) == Code.BAD_LENGTH  # signed: the hmac, no data
    assert error(send(dev, MsgType.UPDATE, req.update(update, digest, MODEL))) == Code.UNSIGNED
    session = req.begin(bytes(40), MODEL, 5, counter=1, key=key)
    send(dev, MsgType.BEGIN, session)
    send(dev, MsgType.CHUNK, Chunk(0, bytes(8)))
    assert error(send(dev, MsgType.UPDATE, req.update(update, digest, MODEL, encoding=7, key=key))) == Code.BAD_ENCODING
    assert (dev.session.update_id, dev.have) == (5, 8)  # as a refused BEGIN: the session goes on
    forged = Update(9, 0, Encoding.F16, SIGNED, 2, digest, bytes(32), update)
    assert error(send(dev, MsgType.UPDATE, forged)) == Code.BAD_SIGNATURE
    stale = req.update(update, digest, MODEL, counter=1, key=key)  # not above the session's
    assert error(send(dev, MsgType.UPDATE, stale)) == Code.STALE
    assert (dev.session.update_id, dev.have) == (5, 8) and np.array_equal(dev.weights, START)
    assert send(dev, MsgType.UPDATE, good) == [(MsgType.ACTIVE, Active(9, digest))]
    assert np.array_equal(dev.weights, decoded) and dev.counter == 2 and dev.session is None


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile.frames, max_size=30))
def test_hostile_streams_never_crash_or_change_the_weights(stream):
    dev = device()
    reader = FrameReader(dev.max_frame)
    for wire in stream:
        for item in reader.feed(wire + b"\x00"):
            for kind, _, m in dev.handle(item):
                if kind == MsgType.ERROR:
                    assert Code(m.code) != Code.OK and isinstance(m, Error)
    assert np.array_equal(dev.weights, START) and len(dev.staging) == dev.slot_size
    assert dev.slots.shape == (2, START.size)


def commit_f32(dev, target, update_id):
    """A complete float32 update of `target`, in two chunks, committed and made active."""
    update = enc.encode(target, LAYERS, Encoding.F32)
    send(dev, MsgType.BEGIN, req.begin(update, MODEL, update_id))
    send(dev, MsgType.CHUNK, Chunk(0, update[:40]))
    send(dev, MsgType.CHUNK, Chunk(40, update[40:]))
    send(dev, MsgType.COMMIT, Commit(update_id, img.digest(target)))


def test_rollback_is_idempotent():
    dev = device()
    commit_f32(dev, START + 1, update_id=4)
    assert dev.ids[dev.active] == 4
    for _ in range(2):
        assert send(dev, MsgType.ROLLBACK, Rollback(0))[0][1].active_id == 0
    assert np.array_equal(dev.weights, START)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_infer_runs_the_active_slot(n):
    dev = device()
    x = np.arange(4, dtype=np.float32) - n
    (kind, out), = send(dev, MsgType.INFER, Vector(x))
    assert kind == MsgType.OUTPUT and np.allclose(out.values, img.forward(START, LAYERS, x))


def test_rollback_during_a_sparse_session_fails_its_commit_by_name():
    dev = device()
    commit_f32(dev, START + 1, update_id=4)
    target = START + 1
    target[[2, 7]] += 0.5  # a sparse change: two weights
    delta = enc.encode(target, LAYERS, Encoding.SPARSE_INT8, base=START + 1)
    send(dev, MsgType.BEGIN, req.begin(delta, MODEL, 5, 4, Encoding.SPARSE_INT8))
    for at in range(0, len(delta), 40):
        send(dev, MsgType.CHUNK, Chunk(at, delta[at:at + 40]))
    send(dev, MsgType.ROLLBACK, Rollback(0))
    digest = img.digest(enc.decode(delta, LAYERS, Encoding.SPARSE_INT8, START + 1))
    assert error(send(dev, MsgType.COMMIT, Commit(5, digest))) == Code.BASE_MISMATCH
    assert np.array_equal(dev.weights, START)
