"""FDFA's `tangents` option: k perturbations per sample, and the feedback moves by the mean of their
d u^T. Checked against a float64 computation on the same draws, on the degenerate shapes too."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa.errors import ConfigError

SHAPES = {"deep": ([7, 5, 4, 3], "ce"), "width-1": ([6, 1, 4], "ce"), "one-output": ([6, 8, 1], "mse")}


def tangent_outputs(W, b, x, us):
    """d = dy/dt along one draw u (a list per hidden layer), relu hidden layers, identity output, float64."""
    h, t = np.asarray(x, np.float64), None
    for l, (Wl, bl) in enumerate(zip(W, b)):
        a = Wl @ h + bl
        ta = np.zeros_like(a) if t is None else Wl @ t
        if l == len(W) - 1:
            return ta
        h, t = np.maximum(a, 0.0), (a > 0) * ta + us[l]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_first_feedback_update_is_the_mean_over_k_draws(shape, k):
    sizes, loss = SHAPES[shape]
    alpha, sigma = 0.2, 0.5
    learner = edgefdfa.MLP(sizes, rule="fdfa", loss=loss, alpha=alpha, sigma=sigma, tangents=k, seed=4)
    W = [w.astype(np.float64) for w in learner.net.W]
    b = [v.astype(np.float64) for v in learner.net.b]
    twin = np.random.default_rng()
    twin.bit_generator.state = learner.rng.bit_generator.state
    draws = [[sigma * twin.standard_normal(n, dtype=np.float32).astype(np.float64) for n in sizes[1:-1]]
             for _ in range(k)]
    x = np.linspace(-1, 1, sizes[0], dtype=np.float32)
    learner.learn_one(x, 0 if loss == "ce" else [0.3])
    for l in range(len(sizes) - 2):
        expected = alpha / (k * sigma ** 2) * sum(np.outer(tangent_outputs(W, b, x, us), us[l]) for us in draws)
        assert np.allclose(learner.rule.B[l], expected, atol=1e-5), (shape, k, l)
    assert learner.rng.bit_generator.state == twin.bit_generator.state  # exactly k draws consumed


def test_one_layer_head_is_unaffected():
    x = np.linspace(0, 1, 12, dtype=np.float32)
    a, b = edgefdfa.MLP([12, 10], tangents=4, seed=0), edgefdfa.MLP([12, 10], seed=0)
    for t in range(3):
        assert a.learn_one(x, t) == b.learn_one(x, t)
    assert np.array_equal(a.net.params, b.net.params)


def test_more_tangents_lower_the_feedback_noise():
    """Same sample, many independent first steps: the spread of B after one update falls about k-fold."""
    x = np.linspace(-1, 1, 10, dtype=np.float32)
    spread = {}
    for k in (1, 8):
        Bs = []
        for seed in range(40):
            learner = edgefdfa.MLP([10, 6, 3], tangents=k, alpha=1.0, seed=0)
            learner.rng = np.random.default_rng(100 + seed)
            learner.rule.rng = learner.rng
            learner.learn_one(x, 1)
            Bs.append(learner.rule.B[0].copy())
        spread[k] = np.var(np.stack(Bs), axis=0).sum()
    assert spread[8] < spread[1] / 4


def test_bad_tangents_refused():
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="tangents"):
            edgefdfa.MLP([4, 3, 2], tangents=bad)
