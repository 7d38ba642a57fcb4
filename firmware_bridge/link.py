"""Frames over a serial port with bounded waits: what both the host and the emulator speak through.

`open_port` takes a device path or any pyserial URL (`loop://`, `socket://host:port`, `rfc2217://`).
"""

from __future__ import annotations

import time
from collections import deque

import serial

from edgefdfa.errors import SourceError

from .frame import MAX_FRAME_LIMIT, Frame, FrameError, FrameReader, encode
from .protocol import DeviceTimeout

POLL = 0.005  # seconds a single read may block


def open_port(port: str, baud: int = 115200) -> serial.SerialBase:
    """A pyserial port for a path or URL, read timeout POLL; SourceError if it cannot be opened."""
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=POLL, write_timeout=5)
    except (serial.SerialException, ValueError) as e:
        raise SourceError(f"cannot open serial port {port!r}: {e}") from None


class Link:
    """Send frames and receive them (or the FrameErrors of bad records) with a deadline; counts bytes."""

    def __init__(self, port: serial.SerialBase, max_frame: int = MAX_FRAME_LIMIT) -> None:
        self.port = port
        self.reader = FrameReader(max_frame)
        self.pending: deque[Frame | FrameError] = deque()
        self.bytes_out = self.bytes_in = 0

    def send(self, kind: int, seq: int, payload: bytes = b"") -> None:
        wire = encode(kind, seq, payload)
        try:
            self.port.write(wire)
        except (serial.SerialException, OSError) as e:
            raise _gone(self.port, e) from None
        self.bytes_out += len(wire)

    def receive(self, timeout: float) -> Frame | FrameError | None:
        """The next frame or bad record, or None when `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if time.monotonic() >= deadline:
                return None
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise _gone(self.port, e) from None
            self.bytes_in += len(data)
            self.pending.extend(self.reader.feed(data))
        return self.pending.popleft()


def _gone(port: serial.SerialBase, error: Exception) -> DeviceTimeout:
    """A port that went away (a cut cable, an unplugged adapter, a dead device) as the bridge's own error."""
    return DeviceTimeout(f"serial port {port.name or port!r} went away: {error}")
