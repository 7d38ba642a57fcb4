"""Prequential (test-then-train) metrics over a stream, in fixed memory.

Each sample is scored before it is learned from. Classification tracks accuracy, regression the
mean absolute error; both track the loss. Cumulative values cover the whole stream, rolling values
the last `window` samples (a ring buffer allocated once).
"""

from __future__ import annotations

import time

import numpy as np


class Rolling:
    """Mean of the last `n` values, O(1) per update."""

    def __init__(self, n: int):
        self.values = np.zeros(n, dtype=np.float64)
        self.count = 0
        self.total = 0.0

    def update(self, value: float) -> None:
        i = self.count % len(self.values)
        self.total += value - self.values[i]
        self.values[i] = value
        self.count += 1

    @property
    def mean(self) -> float:
        n = min(self.count, len(self.values))
        return self.total / n if n else float("nan")


class Prequential:
    """Score-then-learn bookkeeping: call `score` with each prediction before learning."""

    def __init__(self, classification: bool, window: int = 500):
        self.classification = classification
        self.n = 0
        self.skipped = 0
        self._score_sum = 0.0  # correct predictions, or absolute errors
        self._loss_sum = 0.0
        self.n_loss = 0
        self.rolling_score = Rolling(window)
        self.rolling_loss = Rolling(window)
        self.start = time.monotonic()

    def score(self, prediction, target) -> float:
        """Record one prediction against its label; returns 1/0 (correct) or the absolute error."""
        if self.classification:
            value = float(int(prediction) == int(target))
        else:
            value = float(np.mean(np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(target))))
        self.n += 1
        self._score_sum += value
        self.rolling_score.update(value)
        return value

    def loss(self, value: float) -> None:
        self.n_loss += 1
        self._loss_sum += value
        self.rolling_loss.update(value)

    def snapshot(self) -> dict:
        """The current metrics, JSON-ready."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        name = "accuracy" if self.classification else "mae"
        return {
            "samples": self.n,
            f"{name}": self._score_sum / self.n if self.n else None,
            f"rolling_{name}": self.rolling_score.mean if self.n else None,
            "loss": self._loss_sum / self.n_loss if self.n_loss else None,
            "rolling_loss": self.rolling_loss.mean if self.n_loss else None,
            "samples_per_s": self.n / elapsed,
            "skipped": self.skipped,
        }
