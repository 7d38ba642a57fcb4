"""Windows over a time series, and running per-channel normalisation, in fixed memory.

A sensor sends one time step (n_channels,) at a time; a model of motion or sound wants the last
`length` steps at once. `Window` keeps them in a ring buffer allocated once and, every `hop` steps,
copies them in time order into one preallocated output buffer. `RunningNorm` standardises channels
with a mean and variance that follow the stream (Welford's update), also in fixed memory.
Neither checks for NaN/Inf: the sources already drop such samples.
"""

from __future__ import annotations

import numpy as np

from .. import checkpoint
from ..errors import BadSampleError, ConfigError
from .source import Label


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


class Window:
    """(length, n_channels) float32 windows of a per-step stream, one every `hop` steps.

    The first window comes with the `length`-th step. `push` returns (window, label), where the
    label is the last step's (None if it had none), or None between windows. The window is always
    the same preallocated array, overwritten by the next window: copy it to keep it. A step
    allocates no array.
    """

    def __init__(self, length: int, hop: int, n_channels: int) -> None:
        for name, value in (("length", length), ("hop", hop), ("n_channels", n_channels)):
            _positive(name, value)
        self.length, self.hop, self.n_channels = length, hop, n_channels
        self._ring = np.zeros((length, n_channels), np.float32)  # (length, n_channels), oldest at _next
        self._out = np.zeros((length, n_channels), np.float32)   # (length, n_channels), time order
        self._next = 0   # ring row the next step goes to
        self._steps = 0  # steps pushed so far

    def push(self, x: np.ndarray, y: Label = None) -> tuple[np.ndarray, Label] | None:
        if np.shape(x) != (self.n_channels,):
            raise BadSampleError(f"a step must have shape ({self.n_channels},), got {np.shape(x)}")
        self._ring[self._next] = x
        self._next = (self._next + 1) % self.length
        self._steps += 1
        if self._steps < self.length or (self._steps - self.length) % self.hop:
            return None
        k = self.length - self._next  # rows from the oldest to the ring's end
        self._out[:k] = self._ring[self._next:]
        self._out[k:] = self._ring[:self._next]
        return self._out, y

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able values) a checkpoint needs to continue the windows exactly."""
        return {"ring": self._ring}, {"next": self._next, "steps": self._steps}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Put back `state()`, checked against this window (a CheckpointError otherwise)."""
        next_, steps = (checkpoint.number(meta, "next", lo=0, hi=self.length - 1, where="window "),
                        checkpoint.number(meta, "steps", lo=0, where="window "))
        checkpoint.restore(self._ring, arrays, "ring")
        self._next, self._steps = next_, steps


class RunningNorm:
    """Per-channel running mean and (population) variance, and standardisation by them.

    State is float64, so a long stream does not drift. Before the first `update`, `normalize`
    passes values through unchanged.
    """

    def __init__(self, n_channels: int, eps: float = 1e-6) -> None:
        _positive("n_channels", n_channels)
        if not eps > 0:
            raise ConfigError(f"eps must be > 0, got {eps!r}")
        self.eps = eps
        self.count = 0
        self.mean = np.zeros(n_channels)          # (n_channels,)
        self._m2 = np.zeros(n_channels)           # (n_channels,) sum of squared deviations
        self._a = np.empty(n_channels)            # (n_channels,) scratch
        self._b = np.empty(n_channels)            # (n_channels,) scratch

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able values) a checkpoint needs to continue the statistics exactly."""
        return {"mean": self.mean, "m2": self._m2}, {"count": self.count}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Put back `state()`, checked against these channels (a CheckpointError otherwise)."""
        count = checkpoint.number(meta, "count", lo=0, where="norm ")
        m2 = np.empty_like(self._m2)
        checkpoint.restore(m2, arrays, "m2")
        if (m2 < 0).any():
            raise checkpoint.CheckpointError("has a negative running variance ('m2')")
        checkpoint.restore(self.mean, arrays, "mean")
        self._m2[...], self.count = m2, count

    @property
    def var(self) -> np.ndarray:
        """(n_channels,) the population variance so far (a new array)."""
        return self._m2 / max(self.count, 1)

    def update(self, x: np.ndarray) -> None:
        """Take one step (n_channels,) into the statistics."""
        self.count += 1
        d, e = self._a, self._b
        np.subtract(x, self.mean, out=d)       # x - old mean
        np.multiply(d, 1.0 / self.count, out=e)
        self.mean += e
        np.subtract(x, self.mean, out=e)       # x - new mean
        np.multiply(d, e, out=e)
        self._m2 += e

    def normalize(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = (x - mean) / sqrt(var + eps) for x (..., n_channels); `out` may be `x`. Returns out."""
        if self.count == 0:
            np.copyto(out, x)
            return out
        std = self._a
        np.multiply(self._m2, 1.0 / self.count, out=std)
        std += self.eps
        np.sqrt(std, out=std)
        np.subtract(x, self.mean, out=out)
        np.divide(out, std, out=out)
        return out
