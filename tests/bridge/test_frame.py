"""The frame codec and message layouts (NumPy only, no ports): round trips, and damage of every kind
is rejected with a named code and never decodes to a different valid frame."""

import zlib

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import protocol as p
from firmware_bridge.frame import MAX_FRAME_LIMIT, OVERHEAD, Frame, FrameError, FrameReader, decode, encode

kinds = st.sampled_from(list(p.MsgType))
seqs = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=300)


@given(kinds, seqs, payloads)
def test_round_trip(kind, seq, payload):
    wire = encode(kind, seq, payload)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert decode(wire[:-1]) == Frame(kind, seq, payload)


@given(st.lists(st.tuples(kinds, seqs, payloads), max_size=8), st.data())
def test_reader_joins_any_split(frames, data):
    wire = b"\x00" + b"".join(encode(*f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reader = FrameReader()
    got = [f for a, b in zip([0] + cuts, cuts + [len(wire)]) for f in reader.feed(wire[a:b])]
    assert got == [Frame(*f) for f in frames]


@given(kinds, seqs, payloads, st.data())
def test_corruption_is_rejected_with_a_name(kind, seq, payload, data):
    """Flip bytes, truncate or extend a record: it decodes to the original or fails with a code."""
    record = bytearray(encode(kind, seq, payload)[:-1])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        for i in data.draw(st.lists(st.integers(0, len(record) - 1), min_size=1, max_size=4)):
            record[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del record[data.draw(st.integers(0, len(record) - 1)):]
    else:
        record += data.draw(st.binary(min_size=1, max_size=8))
    try:
        frame = decode(bytes(record).replace(b"\x00", b"\x01"))
    except FrameError as e:
        assert isinstance(e.code, p.Code) and e.code != p.Code.OK
    else:
        assert frame == Frame(kind, seq, payload)


@given(st.binary(max_size=600))
def test_noise_never_crashes_the_reader(noise):
    reader = FrameReader(max_frame=128)
    for item in reader.feed(noise):
        assert isinstance(item, (Frame, FrameError))


def test_named_header_faults():
    with pytest.raises(FrameError) as e:
        decode(encode(1, 7, b"", version=1)[:-1])  # a version-1 peer
    assert e.value.code == p.Code.BAD_VERSION and e.value.seq == 7
    raw = b"XY\x01\x01\x07\x00\x00\x00"
    with pytest.raises(FrameError) as e:
        decode(cobs.encode(raw + zlib.crc32(raw).to_bytes(4, "little")))
    assert e.value.code == p.Code.BAD_MAGIC
    raw = b"EB\x02\x01\x07\x00\x05\x00"  # says 5 payload bytes, holds none
    with pytest.raises(FrameError) as e:
        decode(cobs.encode(raw + zlib.crc32(raw).to_bytes(4, "little")))
    assert e.value.code == p.Code.BAD_LENGTH
    with pytest.raises(FrameError) as e:
        decode(encode(3, 0, bytes(200))[:-1], max_frame=128)
    assert e.value.code == p.Code.TOO_LONG


def test_overlong_record_is_dropped_and_the_stream_recovers():
    reader = FrameReader(max_frame=64)
    got = list(reader.feed(b"\x01" * 500)) + list(reader.feed(b"\x01" * 10 + b"\x00" + encode(1, 3)))
    assert [type(g) for g in got] == [FrameError, Frame] and got[0].code == p.Code.TOO_LONG


messages = [
    p.Hello(1024, 0b11111, p.KEYED, 3728, 77, 5, 12, (p.Layer(32, 24, 1), p.Layer(4, 32, 0))),
    p.Begin(9, 0, 3728, p.Encoding.F16, 0, 3, bytes(range(32))),
    p.Begin(9, 0, 3728, p.Encoding.F16, p.SIGNED, 3, bytes(range(32)), bytes(range(1, 33))),
    p.Update(9, 0, p.Encoding.F16, p.SIGNED, 3, bytes(range(32)), bytes(range(1, 33)), b"data"),
    p.Chunk(1000, b"abc"), p.Commit(9, bytes(range(32))),
    p.Commit(9, bytes(32), bytes(range(32))), p.Ack(55), p.Nack(55, p.Code.GAP), p.Active(9, bytes(32)),
    p.Status(1, 2, 3, 4, 5, 6, 7, 8), p.Rollback(3, 4), p.Rollback(3, 4, bytes(32)), p.Error(p.Code.BAD_CRC, p.MsgType.CHUNK), p.Empty(),
]


@pytest.mark.parametrize("message", messages, ids=lambda m: type(m).__name__)
def test_message_round_trip_and_bad_lengths(message):
    kind = next(k for k, cls in p.MESSAGES.items() if cls is type(message))
    assert p.decode_message(kind, message.pack()) == message
    packed = message.pack()
    for bad in [packed + b"\x00"] + ([packed[:-1]] if packed else []):
        if isinstance(message, (p.Chunk, p.Update)) and len(bad) >= len(packed) - 4:
            continue  # a chunk's (an update's) data has any length
        with pytest.raises(p.ProtocolError) as e:
            p.decode_message(kind, bad)
        assert e.value.code == p.Code.BAD_LENGTH


def test_vector_and_unknown_type():
    v = p.decode_message(p.MsgType.INFER, p.Vector(np.arange(3, dtype=np.float32)).pack())
    assert v.values.tolist() == [0, 1, 2]
    with pytest.raises(p.ProtocolError) as e:
        p.decode_message(0x42, b"")
    assert e.value.code == p.Code.BAD_TYPE
    assert OVERHEAD == 12 and MAX_FRAME_LIMIT == 4096
