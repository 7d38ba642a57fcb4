"""Drift detection on the loss stream: the Page-Hinkley test (Page 1954; as in river and MOA).

It accumulates how far each loss sits above the running mean (less a tolerance `delta`) and
signals drift when that sum rises more than `threshold` above its running minimum, i.e. when the
loss has gone up and stayed up. After a signal the detector starts afresh.
"""

from __future__ import annotations

from typing import Any

from . import checkpoint


class PageHinkley:
    """Detects an increase in the mean of a stream. `min_samples` guards the start-up."""

    # defaults: no false alarm on the demo's stationary part, the sensor flip found ~20 windows in
    def __init__(self, delta: float = 0.005, threshold: float = 20.0, min_samples: int = 30):
        self.delta, self.threshold, self.min_samples = delta, threshold, min_samples
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.cumulative = 0.0
        self.minimum = 0.0

    def update(self, value: float) -> bool:
        """Add one value; True when drift is detected (the detector then resets)."""
        self.n += 1
        self.mean += (value - self.mean) / self.n
        self.cumulative += value - self.mean - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.n >= self.min_samples and self.cumulative - self.minimum > self.threshold:
            self.reset()
            return True
        return False

    def state(self) -> dict[str, float]:
        """What `update` has accumulated, JSON-able (floats round-trip exactly)."""
        return {"n": self.n, "mean": self.mean, "cumulative": self.cumulative, "minimum": self.minimum}

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back `state()`, checked (a CheckpointError otherwise); the settings stay this detector's."""
        n = checkpoint.number(state, "n", lo=0, where="drift ")
        mean, cumulative, minimum = (checkpoint.number(state, key, float, where="drift ")
                                     for key in ("mean", "cumulative", "minimum"))
        self.n, self.mean, self.cumulative, self.minimum = n, mean, cumulative, minimum
