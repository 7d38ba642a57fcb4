"""One contract, run on every learning rule (river-style estimator checks)."""

import numpy as np
import pytest

import edgefdfa
from rule_variants import VARIANTS, spec  # tests/unit is on sys.path (pytest's prepend mode)

SIZES = [12, 16, 16, 4]


def make(variant, **kw):
    rule, options = spec(variant)
    return edgefdfa.MLP(SIZES, rule=rule, loss="ce", seed=3, **options, **kw)


def samples(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], n)


@pytest.fixture(params=VARIANTS)
def rule(request):
    return request.param


def test_same_seed_same_result(rule):
    X, y = samples()
    a, b = make(rule), make(rule)
    losses_a = [a.learn_one(x, t) for x, t in zip(X, y)]
    losses_b = [b.learn_one(x, t) for x, t in zip(X, y)]
    assert losses_a == losses_b
    assert np.array_equal(a.net.params, b.net.params)


def test_different_seed_different_weights(rule):
    assert not np.array_equal(make(rule).net.params, edgefdfa.MLP(SIZES, rule=spec(rule)[0], seed=4, **spec(rule)[1]).net.params)


def test_input_not_mutated(rule):
    X, y = samples(5)
    X0 = X.copy()
    learner = make(rule)
    for x, t in zip(X, y):
        learner.learn_one(x, t)
    learner.learn_many(X, y)
    assert np.array_equal(X, X0)


def test_predicts_before_learning(rule):
    learner = make(rule)
    x = samples(1)[0][0]
    p = learner.predict_proba_one(x)
    assert p.shape == (SIZES[-1],) and np.isclose(p.sum(), 1.0) and (p >= 0).all()
    assert learner.predict_one(x) == int(np.argmax(p))


def test_learning_changes_weights_and_lowers_loss_on_repeated_sample(rule):
    learner = make(rule, lr=0.01)
    x, y = samples(1)[0][0], 2
    before = learner.net.params.copy()
    first = learner.learn_one(x, y)
    assert not np.array_equal(before, learner.net.params)
    for _ in range(300):
        last = learner.learn_one(x, y)
    assert last < first


def test_predict_does_not_learn(rule):
    learner = make(rule)
    before = learner.net.params.copy()
    learner.predict_one(samples(1)[0][0])
    assert np.array_equal(before, learner.net.params)


def test_learn_many_one_update_per_batch(rule):
    X, y = samples(70)
    learner = make(rule, batch_size=32)
    loss = learner.learn_many(X, y)
    assert np.isfinite(loss)
    assert learner.n_seen == 70 and learner.n_updates == 3  # 32 + 32 + 6


def test_learn_many_of_one_row_equals_learn_one(rule):
    X, y = samples(10)
    a, b = make(rule), make(rule)
    for x, t in zip(X, y):
        a.learn_one(x, t)
        b.learn_many(x[None, :], [t])
    assert np.allclose(a.net.params, b.net.params, atol=1e-6)


def test_regression_with_mse(rule):
    rng = np.random.default_rng(0)
    name, options = spec(rule)
    learner = edgefdfa.MLP([3, 16, 2], rule=name, loss="mse", seed=0, lr=0.005 if name.startswith("fg") else 0.05,
                           **options)
    X = rng.uniform(-1, 1, (400, 3)).astype(np.float32)
    Y = np.stack([X[:, 0] - 0.5 * X[:, 1], 0.3 * X[:, 2]], axis=1)
    first = np.mean([learner.learn_one(x, t) for x, t in zip(X[:50], Y[:50])])
    for _ in range(4):
        for x, t in zip(X, Y):
            learner.learn_one(x, t)
    last = np.mean([np.mean((learner.predict_one(x) - t) ** 2) for x, t in zip(X[:50], Y[:50])])
    assert last < 0.5 * first
