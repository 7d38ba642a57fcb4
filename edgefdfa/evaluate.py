"""Offline evaluation helpers: online training over a fixed data set, and test accuracy."""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import numpy as np

from . import datasets
from .learner import MLP, Learner


def fit_online(learner: Learner, X: np.ndarray, y: np.ndarray, epochs: int = 1, seed: int = 0,
               progress: bool = False, desc: str = "") -> float:
    """learn_one over every sample, in a fresh seeded order each epoch; returns the last epoch's mean loss."""
    order_rng = np.random.default_rng(seed)
    steps: Iterable[int] = range(epochs * len(X))
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc=desc, unit="sample", mininterval=0.5, leave=False)
    it = iter(steps)
    mean_loss = float("nan")
    for _ in range(epochs):
        total = 0.0
        for i in order_rng.permutation(len(X)):
            next(it)
            total += learner.learn_one(X[i], y[i])
        mean_loss = total / len(X)
    return mean_loss


def accuracy(learner: Learner, X: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose predicted class equals the label."""
    return float(np.mean([learner.predict_one(x) == t for x, t in zip(X, y)]))


def compare_rules(data: str, sizes: Sequence[int], rules: Sequence[str], epochs: int = 3, seed: int = 0,
                  progress: bool = False) -> list[dict]:
    """Train one learner per rule online on a shipped data set, same seed and budget; test each."""
    ds = datasets.load(data)
    rows = []
    for rule in rules:
        learner = MLP(sizes, rule=rule, loss="ce", seed=seed)
        start = time.perf_counter()
        loss = fit_online(learner, ds.X_train, ds.y_train, epochs, seed, progress, desc=f"{data} {rule}")
        seconds = time.perf_counter() - start
        cfg = learner.config
        rows.append(dict(data=data, sizes=list(cfg.sizes), rule=rule, optimizer=cfg.optimizer, lr=cfg.lr,
                         alpha=cfg.alpha if rule == "fdfa" else None, epochs=epochs, seed=seed,
                         train_loss=loss, test_accuracy=accuracy(learner, ds.X_test, ds.y_test),
                         us_per_sample=1e6 * seconds / (epochs * len(ds.X_train)), learner=learner))
    return rows
