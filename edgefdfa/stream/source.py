"""What a source of samples is, and the checks every source shares.

A `Source` is an iterable of `Sample`s: one feature vector, its label if it has one, and when it
arrived. Every source applies the same rules, so a bad line from a file and a bad line from a
sensor are treated alike: a bad sample never reaches the caller; it is counted by reason in
`Source.stats`, and the first few are kept with their position so they can be shown to a person.

CSV rules (files, stdin and serial lines alike), for a source of `n_features` features:

- `n_features` fields: an unlabeled sample (`y is None`);
- `n_features + 1` fields: the features, then the label. An integral label is a class index
  (`"3"` and `"3.0"` give `3`); any other number is a float target (`"2.5"` gives `2.5`);
- any other count is skipped as "field count", a field that is not a number as "unparsable",
  NaN or Inf anywhere (also a value too large for float32) as "nan/inf";
- a first line that is not all numbers is a header and is skipped silently, and so are blank lines;
- a line longer than `max_line(n_features)` bytes (64 a field) is skipped as "too long" without
  being held in memory whole.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
import numpy as np

from ..errors import ConfigError

_POLL = 0.05  # s: the longest a wait goes without looking at request_stop()

Label = int | float | None  # class index, float target, or None for an unlabeled sample


@dataclass(slots=True)
class Sample:
    x: np.ndarray  # (n_features,) float32, finite; the caller's to keep
    y: Label       # None: unlabeled
    t: float       # time.monotonic() at arrival (replay time for files)


@dataclass(slots=True)
class Skip:
    """One skipped line or frame, kept for a person to read."""

    reason: str       # the key it is counted under in Stats.skipped_by
    position: int     # 1-based line, row or frame number in the source
    data: str         # the offending line or frame (hex), clipped to 80 characters
    detail: str = ""  # what exactly was wrong, where the reason alone does not say (bad frames)


@dataclass
class Stats:
    """What a source has delivered and what it has skipped, and why."""

    max_reports: int = 5  # how many skipped lines/frames to keep in `reports`
    read: int = 0         # samples delivered to the caller
    skipped: int = 0      # bad samples dropped (headers, blank lines and partial first lines are not counted)
    skipped_by: dict[str, int] = field(default_factory=dict)  # reason -> count
    reports: list[Skip] = field(default_factory=list)         # the first `max_reports` skips
    reconnects: int = 0              # times a lost device came back
    lost_reason: str | None = None   # why the source ended early, if it did

    def skip(self, reason: str, position: int, data: str, detail: str = "") -> None:
        self.skipped += 1
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1
        if len(self.reports) < self.max_reports:
            self.reports.append(Skip(reason, position, data[:80], detail))

    def __str__(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.skipped_by.items()))
        text = f"read {self.read}, skipped {self.skipped}" + (f" ({reasons})" if reasons else "")
        return text + (f"; lost: {self.lost_reason}" if self.lost_reason else "")


class Source:
    """An iterator of Samples over one file, stream or device; close it (or use `with`) when done.

    Subclasses provide `_samples()` (a generator of good samples) and `_release()` (idempotent:
    close the file or port), and `_interrupt()` if a read can block. `close()` may be called from
    another thread: it sets a flag and wakes a blocked read; the iterating thread then stops at its
    next step and releases the resource itself. A signal handler calls `request_stop()` instead, which
    only sets a flag: a handler runs in the interrupted thread, maybe inside a lock close() would take.
    """

    def __init__(self, n_features: int, max_reports: int = 5) -> None:
        if not isinstance(n_features, int) or n_features < 1:
            raise ConfigError(f"n_features must be a positive int, got {n_features!r}")
        if not isinstance(max_reports, int) or max_reports < 0:
            raise ConfigError(f"max_reports must be an int >= 0, got {max_reports!r}")
        self.n_features = n_features
        self.stats = Stats(max_reports)
        self._stop = threading.Event()
        self._stop_requested = False  # set by request_stop(), seen by every wait within _POLL seconds
        self._lock = threading.Lock()  # held while a thread runs the generator
        self._it = self._samples()

    @property
    def lost(self) -> bool:
        """True when the source ended because its device went away (the reason is in stats)."""
        return self.stats.lost_reason is not None

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> Sample:
        with self._lock:
            if self._stopping():
                self._release()
                raise StopIteration
            try:
                sample = next(self._it)
            except StopIteration:
                self._release()
                raise
            self.stats.read += 1
            return sample

    def request_stop(self) -> None:
        """End the iteration at its next step (within _POLL seconds of a wait). Only sets a flag, so it
        is the one call that is safe from a signal handler; the iterating thread closes the source."""
        self._stop_requested = True

    def close(self) -> None:
        """Stop the iteration and release the file or port; safe from another thread (not a signal handler)."""
        self._stop.set()
        self._interrupt()
        if self._lock.acquire(blocking=False):  # nobody is iterating: release now
            try:
                self._release()
            finally:
                self._lock.release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stopping(self) -> bool:
        return self._stop_requested or self._stop.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds`, in slices of _POLL so that request_stop() is seen; True (at once) if stopping."""
        end = time.monotonic() + seconds
        while not self._stopping():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, _POLL))
        return True

    def _samples(self) -> Iterator[Sample]:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake a read blocked in another thread; nothing to do for sources that never block long."""


_F32_MAX = float(np.finfo(np.float32).max)


def checked_sample(x: np.ndarray, y: Label, stats: Stats, position: int, data: str) -> Sample | None:
    """A Sample of float32 `x` and `y`, or None (counted as "nan/inf") if any value is not finite."""
    # one float64 sum of float32 values is finite exactly when every value is
    if not math.isfinite(np.add.reduce(x, dtype=np.float64)) or (y is not None and not math.isfinite(y)):
        stats.skip("nan/inf", position, data)
        return None
    return Sample(x, y, time.monotonic())


def label_from_text(value: float) -> int | float:
    """An integral number is a class index, anything else (NaN and Inf too) a float target."""
    return int(value) if value.is_integer() else value


def max_line(n_features: int) -> int:
    """The longest CSV line, in bytes, a source keeps: a generous 64 characters a field."""
    return 64 * (n_features + 2)


class CsvParser:
    """Turns CSV lines into Samples by the rules in the module docstring, counting what it skips."""

    def __init__(self, n_features: int, stats: Stats) -> None:
        self.n_features = n_features
        self.stats = stats
        self.position = 0         # lines seen, so reports name the line number
        self._may_be_header = True

    def restart(self) -> None:
        """A new stream begins (a device came back): its first line may be a header again."""
        self._may_be_header = True

    def too_long(self) -> None:
        """Count the next line as skipped for its length (its source dropped it unread)."""
        self.position += 1
        self.stats.skip("too long", self.position, "", f"a line longer than {max_line(self.n_features):,} bytes")

    def parse(self, line: str | bytes) -> Sample | None:
        self.position += 1
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                self.stats.skip("unparsable", self.position, repr(line))
                return None
        line = line.strip()
        if not line:
            return None
        fields = line.split(",")
        if self._may_be_header:
            self._may_be_header = False
            if not all(map(_is_number, fields)):
                return None
        n = self.n_features
        if len(fields) not in (n, n + 1):
            self.stats.skip("field count", self.position, line,
                            f"{len(fields)} fields, expected {n} or {n + 1}")
            return None
        try:
            values = [float(f) for f in fields]
        except ValueError:
            self.stats.skip("unparsable", self.position, line)
            return None
        y = label_from_text(values[n]) if len(values) > n else None
        # checked as Python floats, before the cast: NaN fails every comparison, and a value within
        # float32's range cannot overflow (cheaper per line than numpy's errstate and a reduce)
        if not all(-_F32_MAX <= v <= _F32_MAX for v in values[:n]) or (y is not None and not math.isfinite(y)):
            self.stats.skip("nan/inf", self.position, line)
            return None
        return Sample(np.array(values[:n], dtype=np.float32), y, time.monotonic())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Delimited:
    """Cuts a byte stream, fed in arbitrary chunks, into records ending in `delimiter`.

    Memory is bounded: a record longer than `max_len` is dropped, with everything up to the next
    delimiter, and reported as `None` in place of the record. With `wait_for_delimiter`, bytes
    before the first delimiter (a record cut in half when the stream was joined) are dropped.
    """

    def __init__(self, delimiter: bytes, max_len: int, *, wait_for_delimiter: bool) -> None:
        self.delimiter = delimiter
        self.max_len = max_len
        self.wait_for_delimiter = wait_for_delimiter
        self.restart()

    def restart(self) -> None:
        self._tail = b""
        self._discard = self.wait_for_delimiter  # drop bytes up to the next delimiter

    def feed(self, chunk: bytes) -> Iterator[bytes | None]:
        *records, self._tail = (self._tail + chunk).split(self.delimiter)
        for record in records:
            if self._discard:
                self._discard = False
            else:
                yield record
        if len(self._tail) > self.max_len:
            self._tail = b""
            if not self._discard:
                self._discard = True
                yield None
