"""Serial sources against real pseudo-terminals: the test writes to the master side as a sensor would.

Every wait is bounded: a reader runs in a thread and is closed (and the test failed) if it overruns.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

from edgefdfa.stream import encode_frame, open_source

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs POSIX pseudo-terminals")


class Sensor:
    """The master side of a fresh pty; `path` is the device a source opens."""

    def __init__(self):
        self.fd, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)

    def write(self, data: bytes):
        os.write(self.fd, data)

    def unplug(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@pytest.fixture
def sensors():
    made = []

    def make():
        made.append(Sensor())
        return made[-1]

    yield make
    for s in made:
        s.unplug()


def take(src, n=None, timeout=3.0, until=None):
    """Iterate `src` in a thread: n samples, or until `until(sample)`, or to the end; fail on overrun."""
    got, done = [], threading.Event()

    def run():
        for s in src:
            got.append(s)
            if len(got) == n or (until and until(s)):
                break
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not done.wait(timeout):
        src.close()
        thread.join(2)
        pytest.fail(f"reader overran {timeout} s with {len(got)} samples")
    return got


def test_csv_lines_with_bad_lines_mixed_in(sensors):
    sensor = sensors()
    with open_source(f"serial://{sensor.path}?baud=115200", n_features=3) as src:
        sensor.write(b"3,partial line\nt,ax,ay,label\r\n1,2,3,0\r\n4,5,nan,1\n7,8,9\n1,2\n"
                     b"\xff\xfe,1,2\n1e39,0,0,1\n1,two,3,1\n10,11,12,2.5\n")
        got = take(src, n=3)
        assert [(s.x.tolist(), s.y) for s in got] == [([1, 2, 3], 0), ([7, 8, 9], None), ([10, 11, 12], 2.5)]
        assert src.stats.skipped_by == {"nan/inf": 2, "field count": 1, "unparsable": 2}
        assert src.stats.read == 3 and not src.lost


def test_lines_split_across_writes(sensors):
    sensor = sensors()
    with open_source(f"serial://{sensor.path}", n_features=2) as src:
        sensor.write(b"\n1,")
        threading.Timer(0.15, sensor.write, [b"2,1\n3"]).start()
        threading.Timer(0.3, sensor.write, [b",4,0\n"]).start()
        assert [s.y for s in take(src, n=2)] == [1, 0]


def test_binary_frames(sensors):
    sensor = sensors()
    good = [(np.array([1, 2, 3], np.float32), 0), (np.array([-1, 0.5, 1e30], np.float32), 2.5),
            (np.array([4, 5, 6], np.float32), None)]
    corrupted = bytearray(encode_frame(np.array([9, 9, 9]), 1))
    corrupted[5] ^= 0x40
    with open_source(f"serial://{sensor.path}?baud=115200&format=binary", n_features=3) as src:
        sensor.write(b"\x05\x01half a frame\x00" + encode_frame(*good[0]) + bytes(corrupted)
                     + encode_frame(np.array([np.nan, 1, 2]), 1) + encode_frame(np.array([1, 2]), 1)
                     + encode_frame(*good[1]) + b"\x00\x00" + encode_frame(*good[2]))
        got = take(src, n=3)
        for s, (x, y) in zip(got, good):
            np.testing.assert_array_equal(s.x, x)
            assert s.y == y
        assert src.stats.skipped_by == {"bad frame": 2, "nan/inf": 1}
        assert [r.detail for r in src.stats.reports if r.reason == "bad frame"][1] == "n = 2 features, expected 3"


def test_unplugging_ends_the_iteration_cleanly(sensors):
    sensor = sensors()
    src = open_source(f"serial://{sensor.path}", n_features=1)
    sensor.write(b"\n1,0\n")
    assert [s.y for s in take(src, n=1)] == [0]
    sensor.unplug()
    assert take(src) == []
    assert src.lost and src.stats.lost_reason.startswith("device lost")
    src.close()


def test_close_from_another_thread_stops_a_quiet_port(sensors):
    sensor = sensors()
    src = open_source(sensor.path, n_features=1)  # a bare device path
    threading.Timer(0.2, src.close).start()
    start = time.monotonic()
    assert take(src) == []
    assert time.monotonic() - start < 1.0 and not src.lost


def test_close_from_a_signal_handler(sensors):
    sensor = sensors()
    src = open_source(f"serial://{sensor.path}", n_features=1)
    watchdog = threading.Timer(3.0, sensor.unplug)  # if close() failed, end the read as "lost"
    watchdog.start()
    old = signal.signal(signal.SIGALRM, lambda *_: src.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        assert list(src) == []  # iterating in the main thread, where the handler runs
        assert time.monotonic() - start < 1.0 and not src.lost
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        watchdog.cancel()


def point(link, target):
    """Make `link` a symlink to `target`, atomically, as udev does when a device reappears."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def test_reconnects_to_a_device_that_comes_back(sensors, tmp_path):
    first = sensors()
    link = tmp_path / "ttySENSOR"
    link.symlink_to(first.path)
    src = open_source(f"serial://{link}?baud=115200", n_features=2, reconnect=True)
    first.write(b"\n1,1,0\n")
    assert [s.x[0] for s in take(src, n=1)] == [1]

    point(link, tmp_path / "absent")  # first, so the reader never reopens a pty name recycled meanwhile
    first.unplug()
    second = sensors()
    stop = threading.Event()

    def come_back():  # the device reappears under the same name, then streams
        time.sleep(0.3)
        point(link, second.path)
        while not stop.wait(0.05):
            second.write(b"2,2,1\n")

    writer = threading.Thread(target=come_back, daemon=True)
    writer.start()
    try:
        got = take(src, timeout=4.0, until=lambda s: s.x[0] == 2)
    finally:
        stop.set()
        writer.join(2)
        src.close()
    assert got[-1].x.tolist() == [2, 2] and got[-1].y == 1
    assert src.stats.reconnects == 1 and not src.lost


def test_gives_up_when_the_device_stays_away(sensors, tmp_path):
    sensor = sensors()
    link = tmp_path / "ttySENSOR"
    link.symlink_to(sensor.path)
    src = open_source(f"serial://{link}?reconnect_timeout=0.5", n_features=1, reconnect=True)
    os.remove(link)
    sensor.unplug()
    start = time.monotonic()
    assert take(src) == []
    assert 0.4 < time.monotonic() - start < 2.5
    assert src.lost and "not back after 0.5 s" in src.stats.lost_reason
