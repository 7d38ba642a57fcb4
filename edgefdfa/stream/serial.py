"""A sensor on a serial port (through pyserial): CSV lines or binary frames, surviving unplugging.

    serial:///dev/ttyUSB0?baud=115200&format=csv    a device path; format csv (default) or binary
    /dev/ttyACM0                                    the same, with the defaults
    loop://  socket://host:port  rfc2217://...      any pyserial URL; our keys are taken out of its query

CSV lines end in \\n or \\r\\n; the first line after (re)connecting is dropped, because the sensor
may have been mid-line, and the line after it may be a header (source.py has the rules). Bytes
that are not UTF-8 are "unparsable". Binary frames are described in frame.py.

A read that times out is not an error (a quiet sensor); the loop reads with a short timeout so it
notices `close()`, which also wakes a blocked read at once. A device that disappears (an error on
read, the port closing) ends the iteration cleanly with `source.lost` set and the reason in
`source.stats.lost_reason`, unless `reconnect` is on: then the same port is reopened with a backoff
(0.1 s doubling to 2 s) for up to `reconnect_timeout` seconds (query key `reconnect_timeout`,
default 30) and the iteration goes on. The port must be there when the source is opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import serial as pyserial

from ..errors import ConfigError, SourceError
from .frame import FrameDecoder
from .source import CsvParser, Delimited, Sample, Source, Stats, max_line

READ_TIMEOUT = 0.1                 # s: how often a quiet port checks for close()
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0  # s: waits between reconnect attempts


class CsvDecoder:
    """Samples out of a byte stream of CSV lines fed in arbitrary chunks."""

    def __init__(self, n_features: int, stats: Stats, *, wait_for_delimiter: bool = True) -> None:
        self.parser = CsvParser(n_features, stats)
        self.stats = stats
        self._lines = Delimited(b"\n", max_line(n_features), wait_for_delimiter=wait_for_delimiter)

    def restart(self) -> None:
        """A new stream begins (a device came back): drop the partial line, expect a header."""
        self._lines.restart()
        self.parser.restart()

    def feed(self, chunk: bytes) -> Iterator[Sample]:
        for line in self._lines.feed(chunk):
            if line is None:
                self.parser.too_long()
                continue
            sample = self.parser.parse(line)
            if sample is not None:
                yield sample


DECODERS = {"csv": CsvDecoder, "binary": FrameDecoder}
_OUR_KEYS = {"baud", "format", "reconnect_timeout"}


class SerialSource(Source):
    """Samples from a serial port, opened at once (SourceError if it cannot be)."""

    def __init__(self, port: str, *, n_features: int, fmt: str = "csv", baudrate: int = 115200,
                 reconnect: bool = False, reconnect_timeout: float = 30.0, max_reports: int = 5) -> None:
        super().__init__(n_features, max_reports)
        if fmt not in DECODERS:
            raise ConfigError(f"unknown serial format {fmt!r}; choose one of {', '.join(map(repr, DECODERS))}")
        if not reconnect_timeout > 0:
            raise ConfigError(f"reconnect_timeout must be > 0 seconds, got {reconnect_timeout!r}")
        self.port_url = port
        self.baudrate = baudrate
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self._decoder = DECODERS[fmt](n_features, self.stats, wait_for_delimiter=True)
        self._port_lock = threading.Lock()  # held while the port is opened or closed
        self._port: pyserial.SerialBase | None = None
        self._open()

    def _open(self) -> None:
        with self._port_lock:
            try:
                port = pyserial.serial_for_url(self.port_url, baudrate=self.baudrate, timeout=READ_TIMEOUT)
            except (pyserial.SerialException, OSError, ValueError) as e:
                raise SourceError(f"cannot open serial port {self.port_url!r}: {e}") from e
            self._port = port
        self._decoder.restart()

    def _release(self) -> None:
        with self._port_lock:
            port, self._port = self._port, None
            if port is not None:
                port.close()

    def _interrupt(self) -> None:
        if not self._port_lock.acquire(blocking=False):
            return  # the port is being opened or closed: no read to wake, the stop flag suffices
        try:
            if self._port is not None:
                self._port.cancel_read()
        except (AttributeError, NotImplementedError, OSError, pyserial.SerialException):
            pass  # this transport cannot cancel: its read returns within READ_TIMEOUT anyway
        finally:
            self._port_lock.release()

    def _samples(self) -> Iterator[Sample]:
        while not self._stopping():
            try:
                port = self._port
                chunk = port.read(port.in_waiting or 1)
            except (pyserial.SerialException, OSError) as e:
                if self._stopping() or not self._come_back(f"device lost: {e}"):
                    return
                continue
            yield from self._decoder.feed(chunk)

    def _come_back(self, reason: str) -> bool:
        """After losing the device: True once it is open again, False to end the iteration."""
        self._release()
        if not self.reconnect:
            self.stats.lost_reason = reason
            return False
        give_up = time.monotonic() + self.reconnect_timeout
        delay = BACKOFF_FIRST
        while not self._wait(delay):  # close() during the wait ends the iteration, not lost
            try:
                self._open()
            except SourceError as e:
                if time.monotonic() >= give_up:
                    self.stats.lost_reason = f"{reason}; not back after {self.reconnect_timeout:g} s ({e})"
                    return False
                delay = min(2 * delay, BACKOFF_MAX)
                continue
            self.stats.reconnects += 1
            return True
        return False


def open_spec(spec: str, *, n_features: int, rate: float | None = None, reconnect: bool = False,
              max_reports: int = 5) -> SerialSource:
    """Open a serial:// URL, a bare device path or a pyserial URL (see the module docstring)."""
    if rate is not None:
        raise ConfigError(f"rate={rate!r} paces file replay; a serial source runs at the sensor's own rate")
    port, options = _split(spec)
    return SerialSource(port, n_features=n_features, reconnect=reconnect, max_reports=max_reports, **options)


def _split(spec: str) -> tuple[str, dict]:
    """(what pyserial opens, SerialSource keyword arguments) from a spec."""
    if "://" not in spec:
        return spec, {}
    url = urlsplit(spec)
    query = parse_qsl(url.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OUR_KEYS}
    if url.scheme == "serial":
        if url.netloc or not url.path.startswith("/"):
            raise ConfigError(f"{spec!r}: a serial URL needs an absolute device path, like serial:///dev/ttyUSB0")
        unknown = sorted({k for k, _ in query} - _OUR_KEYS)
        if unknown:
            raise ConfigError(f"{spec!r}: unknown option(s) {', '.join(unknown)}; "
                              f"serial URLs take {', '.join(sorted(_OUR_KEYS))}")
        port = url.path
    else:  # a pyserial URL: pass its own options on
        rest = urlencode([(k, v) for k, v in query if k not in _OUR_KEYS])
        port = spec.split("?", 1)[0] + (f"?{rest}" if rest else "")
    return port, _options(spec, ours)


def _options(spec: str, ours: dict[str, str]) -> dict:
    options: dict = {}
    try:
        if "baud" in ours:
            options["baudrate"] = int(ours["baud"])
        if "reconnect_timeout" in ours:
            options["reconnect_timeout"] = float(ours["reconnect_timeout"])
    except ValueError as e:
        raise ConfigError(f"{spec!r}: {e}") from None
    if options.get("baudrate", 1) <= 0:
        raise ConfigError(f"{spec!r}: baud must be a positive int, got {ours['baud']!r}")
    if "format" in ours:
        options["fmt"] = ours["format"]
    return options
