"""Prequential metrics against plain NumPy, and the drift detector on streams with known change points."""

import numpy as np

from edgefdfa.drift import PageHinkley
from edgefdfa.metrics import Prequential, Rolling


def test_rolling_mean_matches_numpy():
    values = np.random.default_rng(0).random(1000)
    r = Rolling(50)
    for i, v in enumerate(values):
        r.update(v)
        assert np.isclose(r.mean, values[max(0, i - 49):i + 1].mean())


def test_prequential_accuracy_and_mae():
    m = Prequential(classification=True, window=3)
    for pred, target in [(1, 1), (0, 1), (2, 2), (2, 2), (0, 0)]:
        m.score(pred, target)
    s = m.snapshot()
    assert s["accuracy"] == 0.8 and s["rolling_accuracy"] == 1.0 and s["samples"] == 5
    r = Prequential(classification=False)
    r.score(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    assert r.snapshot()["mae"] == 1.5


def test_page_hinkley_finds_a_rise_and_not_noise():
    rng = np.random.default_rng(1)
    stable = rng.normal(0.3, 0.1, 3000)
    detector = PageHinkley(threshold=20.0)
    assert not any(detector.update(v) for v in stable)  # no false alarm on a stationary stream
    shifted = np.concatenate([rng.normal(0.3, 0.1, 1000), rng.normal(1.5, 0.1, 500)])
    detector = PageHinkley(threshold=20.0)
    hits = [i for i, v in enumerate(shifted) if detector.update(v)]
    assert hits and 1000 <= hits[0] < 1050  # found within 50 samples of the change
