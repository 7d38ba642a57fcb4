"""Non-IID streams for emulated devices from the shipped BasicMotions recordings (80 of 100 steps,
6 IMU channels, 4 activities): each device sees a few activities, some devices wear the watch
upside down (x and y of both sensors reversed, as in the demo), and a held-out set of windows from
recordings no device sees, in every orientation the fleet has. Files are written as `edgefdfa
train` reads them: per-step .npz streams (X (steps, 6), y (steps,)) and held-out windows."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from .. import datasets
from ..demo import FLIP

WINDOW, HOP = 32, 8


@dataclass(frozen=True)
class Split:
    streams: list[Path]  # one per device, per-step .npz
    held_out: Path  # windows (n, WINDOW, 6) with labels
    classes: list[tuple[int, ...]]  # the activities each device sees
    flipped: list[bool]  # whether each device wears the watch upside down


def recordings() -> tuple[np.ndarray, np.ndarray]:
    """All 80 recordings as (80, 100, 6) steps x channels, and their labels."""
    ds = datasets.load("basicmotions")
    X = np.concatenate([ds.X_train, ds.X_test]).transpose(0, 2, 1)
    return np.ascontiguousarray(X), np.concatenate([ds.y_train, ds.y_test]).astype(np.intp)


def windows(series: np.ndarray) -> np.ndarray:
    """Every WINDOW-step window, hop HOP, inside one recording: (n, WINDOW, 6)."""
    return np.stack([series[t:t + WINDOW] for t in range(0, len(series) - WINDOW + 1, HOP)])


def make(out: Path, n_devices: int = 8, per_device: int = 2, flipped: tuple[int, ...] | None = None,
         held_out_share: float = 0.2, seed: int = 0) -> Split:
    """Write the devices' streams and the held-out set to `out`. Device d sees the d-th pair of
    activities (cycling through all pairs); `flipped` devices (default: every other one) are upside
    down. Each activity's training recordings are dealt out among the devices that see it."""
    X, y = recordings()
    rng = np.random.default_rng(seed)
    K = int(y.max()) + 1
    groups = list(combinations(range(K), per_device))
    classes = [groups[d % len(groups)] for d in range(n_devices)]
    flips = [d % 2 == 1 for d in range(n_devices)] if flipped is None else [d in flipped for d in range(n_devices)]
    held, owned = [], {d: [] for d in range(n_devices)}
    for k in range(K):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_held = max(1, round(len(idx) * held_out_share))
        held += list(idx[:n_held])
        seers = [d for d in range(n_devices) if k in classes[d]]
        for j, i in enumerate(idx[n_held:]):
            if seers:
                owned[seers[j % len(seers)]].append(i)
    out.mkdir(parents=True, exist_ok=True)
    streams = []
    for d in range(n_devices):
        order = rng.permutation(owned[d])
        steps = np.concatenate([X[i] for i in order]) * (FLIP if flips[d] else 1)
        labels = np.repeat(y[order], X.shape[1])
        streams.append(out / f"device{d}.npz")
        np.savez(streams[-1], X=steps.astype(np.float32), y=labels)
    orientations = sorted(set(flips))
    hw = [(windows(X[i]) * (FLIP if f else 1), np.full(len(windows(X[i])), y[i])) for i in held for f in orientations]
    held_out = out / "held-out.npz"
    np.savez(held_out, X=np.concatenate([w for w, _ in hw]).astype(np.float32), y=np.concatenate([t for _, t in hw]))
    return Split(streams, held_out, classes, flips)
