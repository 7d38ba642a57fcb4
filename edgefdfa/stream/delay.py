"""Prequential evaluation with delayed labels, in fixed memory.

In the field a label often comes later than the reading it belongs to (the outcome is known a
few samples on). The loop predicts each sample as it arrives, keeps its features, and learns from
it only once its label is `delay` samples old:

    delayed = DelayedLabels(delay=50, n_features=6)
    for s in source:
        y_hat = learner.predict_one(s.x)
        due = delayed.push(s.x, s.y)
        if due is not None:
            learner.learn_one(*due)

The last `delay + 1` samples sit in a ring buffer allocated once.
"""

from __future__ import annotations

import math

import numpy as np

from .. import checkpoint
from ..errors import BadSampleError, ConfigError
from .source import Label


class DelayedLabels:
    """A ring of the last delay + 1 samples; `push` hands back the one whose label is now due."""

    def __init__(self, delay: int, n_features: int) -> None:
        if not isinstance(delay, int) or delay < 0:
            raise ConfigError(f"delay must be an int >= 0, got {delay!r}")
        if not isinstance(n_features, int) or n_features < 1:
            raise ConfigError(f"n_features must be a positive int, got {n_features!r}")
        self.delay = delay
        self._x = np.zeros((delay + 1, n_features), np.float32)  # (delay + 1, n_features)
        self._y: list[Label] = [None] * (delay + 1)
        self._next = 0          # ring slot the next push goes to
        self._filling = delay   # pushes left before the first label is due

    def push(self, features: np.ndarray, y: Label) -> tuple[np.ndarray, Label] | None:
        """Store a sample; return (features, label) of the sample pushed `delay` pushes ago.

        None while the ring fills and when that sample is unlabeled. The returned features are a
        view into the ring, valid until the next push: copy them to keep them.
        """
        if np.shape(features) != self._x.shape[1:]:
            raise BadSampleError(f"features must have shape {self._x.shape[1:]}, got {np.shape(features)}")
        slot = self._next
        self._x[slot] = features
        self._y[slot] = y
        self._next = (slot + 1) % (self.delay + 1)
        if self._filling:
            self._filling -= 1
            return None
        due = self._next  # the oldest slot: pushed `delay` pushes before `slot` (itself when delay=0)
        label = self._y[due]
        return None if label is None else (self._x[due], label)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able values) a checkpoint needs: the samples still waiting for their labels."""
        return {"x": self._x}, {"y": list(self._y), "next": self._next, "filling": self._filling}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Put back `state()`, checked against this delay (a CheckpointError otherwise)."""
        y = checkpoint.field(meta, "y", list, "delay ")
        if len(y) != self.delay + 1 or not all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and math.isfinite(v) for v in y):
            raise checkpoint.CheckpointError(f"has delay 'y' = {y!r:.60}, not {self.delay + 1} labels or nulls")
        next_ = checkpoint.number(meta, "next", lo=0, hi=self.delay, where="delay ")
        filling = checkpoint.number(meta, "filling", lo=0, hi=self.delay, where="delay ")
        checkpoint.restore(self._x, arrays, "x")
        self._y, self._next, self._filling = list(y), next_, filling
