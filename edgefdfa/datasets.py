"""The small real data sets shipped in edgefdfa/data/ (made by tools/make_data.py), as float32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"
_SCALE = {"digits": 16.0, "mnist5k": 255.0, "basicmotions": 1.0}  # raw value range -> [0, 1] images


@dataclass(frozen=True)
class Dataset:
    name: str
    X_train: np.ndarray  # (n, ...) float32
    y_train: np.ndarray  # (n,) int
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str

    def validation_split(self, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(X_fit, y_fit, X_val, y_val): the last `fraction` of the training rows held out, for tuning."""
        n_val = int(len(self.X_train) * fraction)
        cut = len(self.X_train) - n_val
        return self.X_train[:cut], self.y_train[:cut], self.X_train[cut:], self.y_train[cut:]


def load(name: str) -> Dataset:
    """Load a shipped data set: 'digits', 'mnist5k' or 'basicmotions'."""
    if name not in _SCALE:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(map(repr, _SCALE))}")
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as z:
        scale = np.float32(1.0 / _SCALE[name])
        return Dataset(
            name=name,
            X_train=z["X_train"].astype(np.float32) * scale,
            y_train=z["y_train"].astype(np.intp),
            X_test=z["X_test"].astype(np.float32) * scale,
            y_test=z["y_test"].astype(np.intp),
            classes=tuple(str(c) for c in z["classes"]),
            source=str(z["source"]),
        )
