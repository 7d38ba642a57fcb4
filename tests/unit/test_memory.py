"""Memory is fixed at construction: steady-state learning allocates nothing that stays."""

import tracemalloc

import numpy as np
import pytest

import edgefdfa
from edgefdfa import RULES


CASES = [("fdfa", "sgd", 10_000)] + [(r, "sgd", 2_000) for r in sorted(RULES) if r != "fdfa"] + [
    ("fdfa", "momentum", 2_000), ("fdfa", "adam", 2_000)]


@pytest.mark.parametrize("rule,optimizer,steps", CASES)
def test_no_growth_in_steady_state(rule, optimizer, steps):
    sizes = [64, 128, 128, 10]
    learner = edgefdfa.MLP(sizes, rule=rule, optimizer=optimizer, seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((100, sizes[0]), dtype=np.float32)
    y = rng.integers(0, 10, 100)
    param_bytes = learner.net.params.nbytes
    for i in range(200):  # warm-up: caches, lazily built views
        learner.learn_one(X[i % 100], y[i % 100])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(steps):
            learner.learn_one(X[i % 100], y[i % 100])
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024, f"grew by {after - before} bytes"
    # no step-sized temporaries either: a per-step copy of the parameters would show in the peak
    assert peak - before < param_bytes / 4, f"peak {peak - before} bytes above steady state"
