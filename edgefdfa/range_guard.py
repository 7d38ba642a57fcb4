"""The input-scale guard: a per-feature range learned from the stream, in fixed memory, that keeps a
finite but absurd value (a 1e5 on a sensor that reads 0..1) away from the weights.

A single such row is enough to wreck a head for good while its loss stays finite, so the divergence
guard never sees it. The guard learns each feature's [lo, hi] from the first `warmup` samples and from
every sample it accepts afterwards. A sample with a value beyond `margin` spans outside that range
(a span: the feature's hi - lo, at least the mean span of all features, so a feature that has been
constant is judged at the scale of the others) is skipped ("skip", the default) or has its values
clipped to the band ("clip"). A real change of scale, unlike a spike, lasts: after `patience`
out-of-range samples in a row the guard takes them as the new normal and widens the range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import checkpoint
from .errors import ConfigError

ACTIONS = ("skip", "clip", "off")
_FLOOR = 1e-6  # the least span, for a stream whose every feature has been constant


class RangeGuard:
    """`check(x)` gives x, x clipped into the learned band, or None (skip the sample)."""

    def __init__(self, n_features: int, action: str = "skip", margin: float = 3.0, warmup: int = 50,
                 patience: int = 20):
        if action not in ACTIONS:
            raise ConfigError(f"unknown range guard action {action!r}; choose one of {', '.join(ACTIONS)}")
        if not (isinstance(margin, (int, float)) and 0 < margin < float("inf")):
            raise ConfigError(f"range margin must be a positive number of spans, got {margin!r}")
        for name, value in (("warmup", warmup), ("patience", patience)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"range guard {name} must be an int >= 1, got {value!r}")
        self.action, self.margin, self.warmup, self.patience = action, float(margin), warmup, patience
        self.lo = np.full(n_features, np.inf, np.float64)
        self.hi = np.full(n_features, -np.inf, np.float64)
        self.n = 0        # samples the range has learned from
        self.streak = 0   # out-of-range samples in a row
        self._band_lo = np.empty(n_features, np.float64)
        self._band_hi = np.empty(n_features, np.float64)
        self._clipped = np.empty(n_features, np.float32)

    def check(self, x: np.ndarray) -> np.ndarray | None:
        """x (flat, n_features) if it is within the band; else None ("skip") or a clipped copy ("clip")."""
        if self.action == "off":
            return x
        if self.n < self.warmup or self._within(x):
            self.streak = 0
            self._learn(x)
            return x
        self.streak += 1
        if self.streak >= self.patience:  # not a spike: the scale has changed
            self._learn(x)
            return x
        if self.action == "skip":
            return None
        np.clip(x, self._band_lo, self._band_hi, out=self._clipped, casting="unsafe")
        return self._clipped

    def _within(self, x: np.ndarray) -> bool:
        span = self.hi - self.lo
        np.maximum(span, max(float(span.mean()), _FLOOR), out=span)
        span *= self.margin
        np.subtract(self.lo, span, out=self._band_lo)
        np.add(self.hi, span, out=self._band_hi)
        return bool(((x >= self._band_lo) & (x <= self._band_hi)).all())

    def _learn(self, x: np.ndarray) -> None:
        np.minimum(self.lo, x, out=self.lo)
        np.maximum(self.hi, x, out=self.hi)
        self.n += 1

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able counters) for a checkpoint. Checkpoints hold finite arrays only, so a guard
        that has seen nothing (lo/hi still infinite) is saved as zeros with n = 0."""
        if self.n == 0:
            return {"lo": np.zeros_like(self.lo), "hi": np.zeros_like(self.hi)}, {"n": 0, "streak": 0}
        return {"lo": self.lo, "hi": self.hi}, {"n": self.n, "streak": self.streak}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Put back `state()`, checked (a CheckpointError naming what does not fit)."""
        lo, hi = np.empty_like(self.lo), np.empty_like(self.hi)
        checkpoint.restore(lo, arrays, "lo")
        checkpoint.restore(hi, arrays, "hi")
        n = checkpoint.number(meta, "n", lo=0, where="range guard ")
        streak = checkpoint.number(meta, "streak", lo=0, where="range guard ")
        if n and (lo > hi).any():
            raise checkpoint.CheckpointError("has a range guard whose lo exceeds its hi")
        self.n, self.streak = n, streak
        if self.n == 0:
            self.lo.fill(np.inf)
            self.hi.fill(-np.inf)
            return
        self.lo[...], self.hi[...] = lo, hi
