"""Replay of recorded samples: a CSV file, CSV lines on stdin, or the arrays of an NPZ file.

Replay runs as fast as it can, or at `rate` samples per second. Pacing keeps to a schedule (sample
i is due at start + i / rate), so time spent by the caller between samples is not added on; a
caller that falls behind gets the overdue samples at once until it has caught up. A sample's `t`
is the time it was handed out.

CSV lines follow the rules in source.py. Files and stdin are read line by line, each read bounded
by source.max_line: a longer line is skipped ("too long") and read past in pieces of that size, so
memory stays bounded whatever the input. `close()` from another thread takes effect at the next line
or at end of input.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np

from ..errors import ConfigError, SourceError
from .source import CsvParser, Sample, Source, checked_sample, max_line


class Replay(Source):
    """A Source that paces the samples of `_records()` at `rate` samples/s (None: no pacing)."""

    def __init__(self, n_features: int, rate: float | None, max_reports: int) -> None:
        super().__init__(n_features, max_reports)
        if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate < float("inf")):
            raise ConfigError(f"rate must be a positive number of samples per second, got {rate!r}")
        self.rate = rate

    def _records(self) -> Iterable[Sample]:
        raise NotImplementedError

    def _samples(self) -> Iterator[Sample]:
        if self.rate is None:
            yield from self._records()
            return
        period = 1.0 / self.rate
        start = time.monotonic()
        for i, sample in enumerate(self._records()):
            wait = start + i * period - time.monotonic()
            if wait > 0 and self._wait(wait):
                return
            sample.t = time.monotonic()
            yield sample


class CsvSource(Replay):
    """CSV lines from a binary (or text) stream; `own` says whether close() closes the stream."""

    def __init__(self, lines: IO, *, n_features: int, rate: float | None = None, max_reports: int = 5,
                 own: bool = True) -> None:
        super().__init__(n_features, rate, max_reports)
        self._lines = lines
        self._own = own
        self._parser = CsvParser(n_features, self.stats)
        self._max = max_line(n_features)

    def _records(self) -> Iterator[Sample]:
        while line := self._lines.readline(self._max + 1):
            if len(line) > self._max and line[-1:] not in (b"\n", "\n"):
                self._read_past_line()
                self._parser.too_long()
                continue
            sample = self._parser.parse(line)
            if sample is not None:
                yield sample

    def _read_past_line(self) -> None:
        """Read the rest of an overlong line, a bounded piece at a time."""
        while (piece := self._lines.readline(self._max + 1)) and piece[-1:] not in (b"\n", "\n"):
            pass

    def _release(self) -> None:
        if self._own:
            self._lines.close()


class NpzSource(Replay):
    """The rows of an NPZ file's `X` (n, n_features) with labels from its optional `y` (n,).

    A file without `X` may hold `X_test` and `y_test` instead (the shipped data sets do). Rows of
    more than one dimension are flattened in C order, so `X` may be (n, channels, steps) with
    channels * steps == n_features. Integer labels are class indices and float labels float
    targets, as their dtype says. A row or label with NaN/Inf is skipped as "nan/inf".
    """

    def __init__(self, path: str, *, n_features: int, rate: float | None = None, max_reports: int = 5) -> None:
        super().__init__(n_features, rate, max_reports)
        self.X, self.y = _load_npz(path, n_features)  # (n, n_features), (n,) or None

    def _records(self) -> Iterator[Sample]:
        for i, row in enumerate(self.X):
            y = None if self.y is None else self.y[i].item()
            sample = checked_sample(row.astype(np.float32), y, self.stats, i + 1, repr(row.tolist()))
            if sample is not None:
                yield sample

    def _release(self) -> None:
        """The arrays are in memory: nothing to close."""


def _load_npz(path: str, n_features: int) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z.files
            arrays = {k: z[k] for k in ("X", "y", "X_test", "y_test") if k in names}
    except (OSError, ValueError) as e:  # missing, not an NPZ, or holding object arrays
        raise SourceError(f"cannot read {path!r} as NPZ: {e}") from e
    xkey, ykey = ("X", "y") if "X" in arrays else ("X_test", "y_test")
    if xkey not in arrays:
        raise SourceError(f"{path}: no array 'X' (nor 'X_test'); it has {', '.join(names) or 'none'}")
    X, y = arrays[xkey], arrays.get(ykey)
    if X.ndim < 2 or math.prod(X.shape[1:]) != n_features or X.dtype.kind not in "biuf":
        raise SourceError(f"{path}: {xkey} has dtype {X.dtype} and shape {X.shape}; "
                          f"expected numbers shaped (n, {n_features})")
    if y is not None and (y.shape != (len(X),) or y.dtype.kind not in "biuf"):
        raise SourceError(f"{path}: {ykey} has dtype {y.dtype} and shape {y.shape}; "
                          f"expected one number per row of {xkey}, shaped ({len(X)},)")
    if y is not None and y.dtype.kind == "b":
        y = y.astype(np.intp)
    return X.reshape(len(X), n_features), y


def open_csv(spec: str, *, n_features: int, rate: float | None = None, reconnect: bool = False,
             max_reports: int = 5) -> CsvSource:
    _no_reconnect(spec, reconnect)
    try:
        lines = open(spec, "rb")
    except OSError as e:
        raise SourceError(f"cannot open {spec!r}: {e}") from e
    try:
        return CsvSource(lines, n_features=n_features, rate=rate, max_reports=max_reports)
    except ConfigError:
        lines.close()
        raise


def open_npz(spec: str, *, n_features: int, rate: float | None = None, reconnect: bool = False,
             max_reports: int = 5) -> NpzSource:
    _no_reconnect(spec, reconnect)
    return NpzSource(spec, n_features=n_features, rate=rate, max_reports=max_reports)


def open_stdin(spec: str, *, n_features: int, rate: float | None = None, reconnect: bool = False,
               max_reports: int = 5) -> CsvSource:
    _no_reconnect(spec, reconnect)
    lines = getattr(sys.stdin, "buffer", sys.stdin)  # bytes, so a bad byte skips one line only
    return CsvSource(lines, n_features=n_features, rate=rate, max_reports=max_reports, own=False)


def _no_reconnect(spec: str, reconnect: bool) -> None:
    if reconnect:
        raise ConfigError(f"reconnect=True is for devices; {spec!r} is replayed once")
