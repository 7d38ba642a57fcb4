"""edgefdfa.stream without devices: CSV rules, file replay, the frame codec, windows, delayed labels."""

import io
import struct
import sys
import threading
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefdfa.errors import BadSampleError, ConfigError, SourceError
from edgefdfa.stream import (DelayedLabels, FrameDecoder, RunningNorm, Stats, Window, decode_frame,
                             encode_frame, open_source)


def write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def take_all(spec, **kw):
    with open_source(spec, **kw) as src:
        return list(src), src.stats


# ---- CSV rules ----------------------------------------------------------------------------------

CSV = b"""a,b,c,label
1,2,3
1,2,3,4
1,2,3,4.0
1,2,3,4.5
-1.5e2,0,7,-2

nan,1,2
1,inf,2,0
1,2,3,nan
1e39,1,1
1,x,2
1,2,3,4,5
1,2
\xff\xfe,1,2
4,5,6,1
"""


def test_csv_rules(tmp_path):
    samples, stats = take_all(write(tmp_path / "a.csv", CSV), n_features=3)
    assert [s.y for s in samples] == [None, 4, 4, 4.5, -2, 1]
    assert [type(s.y) for s in samples[1:]] == [int, int, float, int, int]
    assert all(s.x.dtype == np.float32 and s.x.shape == (3,) for s in samples)
    np.testing.assert_array_equal(samples[4].x, [-150, 0, 7])
    assert stats.read == 6 and stats.skipped == 8
    assert stats.skipped_by == {"nan/inf": 4, "unparsable": 2, "field count": 2}
    assert [(r.reason, r.position) for r in stats.reports] == [
        ("nan/inf", 8), ("nan/inf", 9), ("nan/inf", 10), ("nan/inf", 11), ("unparsable", 12)]
    assert stats.reports[4].data == "1,x,2"
    assert str(stats) == "read 6, skipped 8 (field count 2, nan/inf 4, unparsable 2)"


def test_reports_are_bounded_and_a_header_is_only_the_first_line(tmp_path):
    text = "1,2,3\n" + "x,y,z\n" * 50
    samples, stats = take_all(write(tmp_path / "a.csv", text), n_features=3, max_reports=2)
    assert len(samples) == 1 and stats.skipped_by == {"unparsable": 50}
    assert [r.position for r in stats.reports] == [2, 3]


def test_crlf_lines_and_no_header(tmp_path):
    samples, stats = take_all(write(tmp_path / "a.csv", "1,2,0\r\n3,4,1\r\n"), n_features=2)
    assert [(s.x.tolist(), s.y) for s in samples] == [([1, 2], 0), ([3, 4], 1)] and stats.skipped == 0


# ---- file replay --------------------------------------------------------------------------------

def test_npz_replay(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    X[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 2, 3]))
    samples, stats = take_all(str(tmp_path / "d.npz"), n_features=3)
    assert [s.y for s in samples] == [0, 1, 3]
    np.testing.assert_array_equal(np.stack([s.x for s in samples]), X[[0, 1, 3]])
    assert samples[0].x.dtype == np.float32
    assert stats.skipped_by == {"nan/inf": 1} and stats.reports[0].position == 3


def test_npz_test_arrays_float_targets_and_unlabeled(tmp_path):
    X = np.ones((3, 2, 2), np.uint8)  # rows flatten to 4 features
    np.savez(tmp_path / "t.npz", X_test=X, y_test=np.array([0.5, 1.0, 2.0]))
    samples, _ = take_all(str(tmp_path / "t.npz"), n_features=4)
    assert [s.y for s in samples] == [0.5, 1.0, 2.0] and all(type(s.y) is float for s in samples)
    np.savez(tmp_path / "u.npz", X=np.zeros((2, 4)))
    samples, _ = take_all(str(tmp_path / "u.npz"), n_features=4)
    assert [s.y for s in samples] == [None, None]


@pytest.mark.parametrize("arrays,match", [
    ({"Z": np.zeros((2, 3))}, "no array 'X'"),
    ({"X": np.zeros((2, 5))}, r"expected numbers shaped \(n, 3\)"),
    ({"X": np.zeros((2, 3)), "y": np.zeros(3)}, "one number per row"),
])
def test_npz_refused(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SourceError, match=match):
        open_source(str(tmp_path / "bad.npz"), n_features=3)


def test_pacing_keeps_to_the_schedule(tmp_path):
    path = write(tmp_path / "a.csv", "".join(f"{i},{i}\n" for i in range(21)))
    start = time.monotonic()
    samples, _ = take_all(path, n_features=2, rate=100)
    elapsed = time.monotonic() - start
    assert len(samples) == 21
    assert 0.18 < elapsed < 0.6  # 20 periods of 10 ms
    assert 0.18 < samples[-1].t - samples[0].t < 0.6


def test_close_during_a_paced_wait_is_prompt(tmp_path):
    path = write(tmp_path / "a.csv", "1,1\n2,2\n")
    with open_source(path, n_features=2, rate=0.1) as src:  # the second sample is due in 10 s
        first = next(src)
        threading.Timer(0.1, src.close).start()
        start = time.monotonic()
        assert list(src) == [] and time.monotonic() - start < 1.0
    assert first.y is None


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x,y\n1,2\n\xff,1\n3,4\n")))
    samples, stats = take_all("-", n_features=1)
    assert [(s.x.tolist(), s.y) for s in samples] == [([1], 2), ([3], 4)]
    assert stats.skipped_by == {"unparsable": 1}
    assert not sys.stdin.closed  # stdin is not ours to close
    monkeypatch.setattr(sys, "stdin", io.StringIO("5,6\n"))  # a text stream works too
    assert [s.y for s in take_all("-", n_features=1)[0]] == [6]


def test_specs_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown source 'data\.txt'; accepted: serial://.*\.csv, \.npz, -"):
        open_source("data.txt", n_features=3)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(tmp_path / "missing.csv"), n_features=3)
    with pytest.raises(SourceError, match="cannot open serial port"):
        open_source("/dev/edgefdfa-no-such-port", n_features=3)
    with pytest.raises(ConfigError, match="rate"):
        open_source("loop://", n_features=3, rate=10)
    with pytest.raises(ConfigError, match="reconnect"):
        open_source(write(tmp_path / "a.csv", "1\n"), n_features=1, reconnect=True)
    with pytest.raises(ConfigError, match="n_features"):
        open_source(write(tmp_path / "a.csv", "1\n"), n_features=0)
    with pytest.raises(ConfigError, match="unknown option"):
        open_source("serial:///dev/ttyUSB0?bauds=9600", n_features=1)
    with pytest.raises(ConfigError, match="format"):
        open_source("loop://?format=json", n_features=1)


def test_a_pyserial_url_keeps_its_own_options():
    with open_source("loop://?logging=info&format=binary&baud=9600", n_features=2) as src:
        assert src.port_url == "loop://?logging=info" and src.baudrate == 9600


# ---- frame codec --------------------------------------------------------------------------------

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
labels = st.none() | st.integers(-2**31, 2**31 - 1) | f32


def frames_of(n):
    return st.tuples(st.lists(f32, min_size=n, max_size=n), labels)


def same(sample, x, y):
    return (np.array_equal(sample.x.view(np.uint32), np.asarray(x, np.float32).view(np.uint32))
            and sample.y == y and type(sample.y) is type(y))


def feed_in_chunks(decoder, data, cuts):
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [s for a, b in zip(bounds, bounds[1:]) for s in decoder.feed(data[a:b])]


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(1, 16).flatmap(lambda n: st.tuples(st.just(n), st.lists(frames_of(n), min_size=1, max_size=8))),
       st.lists(st.integers(0, 10_000), max_size=10))
def test_frame_round_trip(case, cuts):
    n, frames = case
    data = b"".join(encode_frame(np.array(x, np.float32), y) for x, y in frames)
    decoder = FrameDecoder(n, Stats())
    got = feed_in_chunks(decoder, data, cuts)
    assert len(got) == len(frames) and decoder.stats.skipped == 0
    assert all(same(s, x, y) for s, (x, y) in zip(got, frames))


def corrupt(data, edits, rng_bytes):
    """Apply edits (kind, position, length) to data: flip, delete, insert garbage."""
    data = bytearray(data)
    for (kind, pos, length), garbage in zip(edits, rng_bytes):
        pos %= len(data) + 1
        if kind == "flip" and pos < len(data):
            data[pos] ^= garbage[0] | 1
        elif kind == "delete":
            del data[pos:pos + length]
        else:
            data[pos:pos] = garbage[:length]
    return bytes(data)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(frames_of(3), min_size=1, max_size=6),
       st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert"]), st.integers(0, 500), st.integers(1, 12)),
                min_size=1, max_size=6),
       st.lists(st.binary(min_size=12, max_size=12), min_size=6, max_size=6),
       st.lists(st.integers(0, 500), max_size=5),
       st.binary(max_size=30))
def test_corruption_only_ever_skips(frames, edits, garbage, cuts, prefix):
    data = prefix + b"".join(encode_frame(np.array(x, np.float32), y) for x, y in frames)
    decoder = FrameDecoder(3, Stats())
    got = feed_in_chunks(decoder, corrupt(data, edits, garbage), cuts)
    it = iter(frames)  # every sample is an original one, in order, none invented
    assert all(any(same(s, x, y) for x, y in it) for s in got)


def raw_frame(version=1, flags=0, n=3, values=(1.0, 2.0, 3.0), label=b"", crc=None):
    body = struct.pack("<BBH", version, flags, n) + np.asarray(values, "<f4").tobytes() + label
    crc = zlib.crc32(body) if crc is None else crc
    return cobs.encode(body + struct.pack("<I", crc))


@pytest.mark.parametrize("frame,detail", [
    (raw_frame(version=2), "frame version 2; this receiver reads version 1"),
    (raw_frame(crc=1), "CRC mismatch"),
    (raw_frame(n=4), "do not match n = 4"),
    (raw_frame(flags=1), "do not match n = 3"),  # says labeled, has no label
    (raw_frame(flags=2), "unknown flags 0x02"),
    (raw_frame(flags=4), "unknown flags 0x04"),
    (raw_frame(n=2, values=(1.0, 2.0)), "n = 2 features, expected 3"),
    (b"\x02\x01", "too short"),
    (b"\x05\x01", "not COBS"),
])
def test_bad_frames_are_named(frame, detail):
    with pytest.raises(BadSampleError, match=detail):
        decode_frame(frame, 3)
    decoder = FrameDecoder(3, Stats())
    assert list(decoder.feed(frame + b"\x00")) == []
    assert decoder.stats.skipped_by == {"bad frame": 1} and detail in decoder.stats.reports[0].detail


def test_nan_frames_and_overlong_garbage():
    decoder = FrameDecoder(2, Stats(), wait_for_delimiter=True)
    chunks = [b"partial\x00" + encode_frame(np.array([np.nan, 1.0]), 1), b"\x01" * 100, b"\x01" * 100,
              b"\x00" + encode_frame(np.array([1.0, 2.0]), 7.5)]
    got = [s for chunk in chunks for s in decoder.feed(chunk)]
    assert len(got) == 1 and got[0].y == 7.5
    assert decoder.stats.skipped_by == {"nan/inf": 1, "bad frame": 1}
    assert decoder.stats.reports[1].detail == "longer than any valid frame"
    assert len(decoder._records._tail) == 0  # memory stayed bounded


def test_encoder_refuses_what_the_frame_cannot_carry():
    for x, y in [(np.zeros((2, 2)), None), (np.zeros(0), None), (np.zeros(2), 2**31), (np.zeros(2), "a")]:
        with pytest.raises(BadSampleError):
            encode_frame(x, y)


# ---- Window and RunningNorm ---------------------------------------------------------------------

@pytest.mark.parametrize("length,hop", [(1, 1), (5, 1), (5, 2), (4, 4), (3, 7)])
def test_window_matches_sliding_window_view(length, hop):
    rng = np.random.default_rng(length * 10 + hop)
    data = rng.standard_normal((40, 3)).astype(np.float32)
    window = Window(length, hop, 3)
    got, labels, outs = [], [], set()
    for t, x in enumerate(data):
        out = window.push(x, t)
        if out is not None:
            got.append(out[0].copy())
            labels.append(out[1])
            outs.add(id(out[0]))
    want = np.lib.stride_tricks.sliding_window_view(data, length, axis=0)[::hop]  # (k, 3, length)
    np.testing.assert_array_equal(np.stack(got), want.transpose(0, 2, 1))
    assert labels == list(range(length - 1, 40, hop))
    assert len(outs) == 1  # one preallocated output buffer


def test_window_refuses_a_wrong_step():
    with pytest.raises(BadSampleError, match=r"\(3,\)"):
        Window(4, 1, 3).push(np.zeros(4))
    with pytest.raises(ConfigError, match="hop"):
        Window(4, 0, 3)


def test_running_norm_matches_numpy():
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((300, 4)) * [1, 10, 0.1, 100] + [0, 5, -3, 1e3]).astype(np.float32)
    norm = RunningNorm(4, eps=1e-6)
    out = np.empty(4, np.float32)
    np.testing.assert_array_equal(norm.normalize(data[0], out), data[0])  # before any update
    for t, x in enumerate(data):
        norm.update(x)
        seen = data[: t + 1].astype(np.float64)
        np.testing.assert_allclose(norm.mean, seen.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm.var, seen.var(axis=0), rtol=1e-7, atol=1e-9)
    want = (data - data.mean(axis=0, dtype=np.float64)) / np.sqrt(data.var(axis=0, dtype=np.float64) + 1e-6)
    np.testing.assert_allclose(norm.normalize(data[5], out), want[5], rtol=1e-5)
    windows = data[:10].copy()
    np.testing.assert_allclose(norm.normalize(windows, windows), want[:10], rtol=1e-5, atol=1e-6)


# ---- DelayedLabels ------------------------------------------------------------------------------

@pytest.mark.parametrize("delay", [0, 1, 5])
def test_delayed_labels_come_back_in_order(delay):
    delayed = DelayedLabels(delay, 2)
    got = []
    for i in range(20):
        y = None if i % 7 == 3 else i  # some samples are unlabeled
        due = delayed.push(np.array([i, -i], np.float32), y)
        if i < delay:
            assert due is None
        elif due is not None:
            np.testing.assert_array_equal(due[0], [due[1], -due[1]])
            got.append((i, due[1]))
    assert got == [(i, i - delay) for i in range(delay, 20) if (i - delay) % 7 != 3]
    assert delayed._x.shape == (delay + 1, 2) and len(delayed._y) == delay + 1  # bounded


# ---- fixed memory -------------------------------------------------------------------------------

def steady_growth(step, steps=10_000):
    for i in range(200):  # warm-up
        step(i)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(steps):
            step(i)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


def test_window_and_delayed_labels_do_not_grow():
    xs = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    window, delayed, norm = Window(32, 4, 8), DelayedLabels(100, 8), RunningNorm(8)
    out = np.empty(8, np.float32)

    def step(i):
        x = xs[i % 64]
        window.push(x, i)
        delayed.push(x, float(i))
        norm.update(x)
        norm.normalize(x, out)

    growth, peak = steady_growth(step)
    assert growth < 1024, f"grew by {growth} bytes"
    assert peak < 4096, f"peak {peak} bytes above steady state"  # no per-step copies of buffers
