"""Sources of samples for the online loop, chosen by a spec string.

    >>> from edgefdfa.stream import open_source
    >>> with open_source("serial:///dev/ttyUSB0?baud=115200", n_features=6) as src:
    ...     for s in src:            # s.x: (6,) float32, s.y: int | float | None, s.t: arrival time
    ...         ...
    >>> print(src.stats)            # read 1200, skipped 3 (nan/inf 2, unparsable 1)

A new kind of source is a new module with an `open_*` function and one line in OPENERS.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from . import file, serial
from .delay import DelayedLabels
from .frame import FrameDecoder, decode_frame, encode_frame
from .source import Sample, Skip, Source, Stats
from .window import RunningNorm, Window

Opener = Callable[..., Source]  # (spec, *, n_features, rate, reconnect, max_reports) -> Source

# key: a URL scheme ("name://"), a path prefix ("/dev/"), a file suffix (".csv") or "-"
OPENERS: dict[str, Opener] = {
    "serial://": serial.open_spec,
    "/dev/": serial.open_spec,       # a bare device path, /dev/ttyUSB0
    "loop://": serial.open_spec,     # pyserial URLs
    "socket://": serial.open_spec,
    "rfc2217://": serial.open_spec,
    "hwgrep://": serial.open_spec,
    "spy://": serial.open_spec,
    ".csv": file.open_csv,
    ".npz": file.open_npz,
    "-": file.open_stdin,            # CSV lines on stdin
}


def open_source(spec: str, *, n_features: int, rate: float | None = None, reconnect: bool = False,
                max_reports: int = 5) -> Source:
    """Open the source `spec` names; `rate` paces file replay (samples/s), `reconnect` devices.

    `max_reports` skipped lines/frames are kept in `source.stats.reports`. An unknown spec is a
    ConfigError listing what is accepted; a source that cannot be opened is a SourceError.
    """
    opener = OPENERS.get(_kind(spec))
    if opener is None:
        raise ConfigError(f"unknown source {spec!r}; accepted: {', '.join(OPENERS)} "
                          "(e.g. serial:///dev/ttyUSB0?baud=115200&format=binary, data.csv, data.npz, -)")
    return opener(spec, n_features=n_features, rate=rate, reconnect=reconnect, max_reports=max_reports)


def _kind(spec: str) -> str:
    """The OPENERS key that `spec` falls under."""
    if "://" in spec:
        return spec.split("://", 1)[0] + "://"
    if spec.startswith("/dev/"):
        return "/dev/"
    if spec == "-":
        return "-"
    dot = spec.rfind(".")
    return spec[dot:].lower() if dot > spec.rfind("/") else spec


__all__ = ["open_source", "OPENERS", "Source", "Sample", "Stats", "Skip", "Window", "RunningNorm",
           "DelayedLabels", "encode_frame", "decode_frame", "FrameDecoder"]
