"""Bad input raises a clear error from the project's hierarchy and leaves the learner untouched."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa import BadSampleError, ConfigError, EdgeFDFAError


def snapshot(learner):
    state = [learner.net.params.tobytes(), learner.rng.bit_generator.state, learner.n_seen]
    state += [v.tobytes() for v in learner.rule.state().values()]
    state += [v.tobytes() for v in learner.optimizer.state().values()]
    return state


GOOD_X = np.linspace(0, 1, 6)
BAD_SAMPLES = [
    (np.zeros(5), 1, "shape"),
    (np.zeros((2, 6)), 1, "shape"),
    (np.array(["a"] * 6), 1, "dtype"),
    ([0, 1, None, 0, 0, 0], 1, "dtype"),
    (np.array([0, 1, np.nan, 0, 0, 0]), 1, r"x\[2\]"),
    (np.array([0, 1, 0, 0, 0, np.inf]), 1, r"x\[5\]"),
    (np.array([0, 1e40, 0, 0, 0, 0]), 1, "finite float32"),
    (GOOD_X, 3, "outside the classes"),
    (GOOD_X, -1, "outside the classes"),
    (GOOD_X, 1.5, "not a class index"),
    (GOOD_X, "cat", "not a class index"),
    (GOOD_X, None, "not a class index"),
]


@pytest.mark.parametrize("rule", ["fdfa", "bp"])
@pytest.mark.parametrize("x,y,message", BAD_SAMPLES)
def test_bad_sample_rejected_and_nothing_changes(rule, x, y, message):
    learner = edgefdfa.MLP([6, 8, 3], rule=rule, optimizer="adam", seed=0)
    learner.learn_one(GOOD_X, 0)
    before = snapshot(learner)
    with pytest.raises(BadSampleError, match=message):
        learner.learn_one(x, y)
    assert snapshot(learner) == before
    assert isinstance(BadSampleError("x"), (EdgeFDFAError, ValueError))


def test_a_bad_row_in_a_batch_means_nothing_is_learned():
    learner = edgefdfa.MLP([6, 8, 3], seed=0, batch_size=4)
    X = np.tile(GOOD_X, (10, 1))
    X[7, 2] = np.nan
    before = snapshot(learner)
    with pytest.raises(BadSampleError, match=r"X\[7\]\[2\]"):
        learner.learn_many(X, np.zeros(10, int))
    assert snapshot(learner) == before
    with pytest.raises(BadSampleError, match="rows"):
        learner.learn_many(X[:3], [0, 1])


def test_integral_labels_of_any_numeric_type_are_accepted():
    learner = edgefdfa.MLP([6, 8, 3], seed=0)
    for y in (2, np.int64(2), 2.0, np.float32(2)):
        learner.learn_one(GOOD_X, y)
    learner.learn_one(GOOD_X.tolist(), 1)  # plain lists are fine
    assert learner.n_seen == 5


def test_bad_regression_targets():
    learner = edgefdfa.MLP([6, 8, 2], loss="mse", seed=0)
    for y, message in [([1.0], "2 number"), ([1.0, np.nan], "not finite"), ("ab", "2 number")]:
        with pytest.raises(BadSampleError, match=message):
            learner.learn_one(GOOD_X, y)


@pytest.mark.parametrize("kw,message", [
    (dict(rule="sgd"), "unknown rule 'sgd'"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(activation="gelu"), "unknown activation"),
    (dict(optimizer="rmsprop"), "unknown optimizer"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(alpha=1.5), "alpha"),
    (dict(sigma=-1.0), "sigma"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_settings_are_named(kw, message):
    with pytest.raises(ConfigError, match=message):
        edgefdfa.MLP([6, 8, 3], **kw)


def test_large_finite_values_pass_the_cheap_check():
    """x . x overflows float32 for values like 1e20; the exact check behind it still accepts them."""
    learner = edgefdfa.MLP([6, 8, 3], rule="bp", seed=0)
    big = np.array([0, 1e20, -3e19, 0, 0, 0], dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(big @ big)
    learner.predict_proba_one(big)
    assert np.array_equal(learner._x, big)
