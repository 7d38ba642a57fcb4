"""The rule contract on the degenerate heads users bring: one dense layer (a classifier on a
backbone), one output (regression), a hidden width of 1, two classes; every rule, every optimiser,
on the fused fast path and on the reference path (no BLAS)."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa import RULES, blas
from edgefdfa.errors import DivergedError
from edgefdfa.optimizers import OPTIMIZERS
from rule_variants import VARIANTS, spec  # tests/unit is on sys.path (pytest's prepend mode)

SHAPES = {  # name -> (sizes, loss)
    "one-layer": ([12, 10], "ce"),
    "one-output": ([12, 8, 1], "mse"),
    "one-layer-one-output": ([12, 1], "mse"),
    "width-1": ([12, 1, 4], "ce"),
    "two-classes": ([12, 6, 2], "ce"),
    "deep": ([12, 5, 4, 3, 2], "ce"),
}


def data(sizes, loss, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    if loss == "ce":
        return X, rng.integers(0, sizes[-1], n)
    return X, (X[:, :1] - 0.5 * X[:, 1:2]).repeat(sizes[-1], axis=1).astype(np.float32)


@pytest.fixture(params=["fast", "reference"])
def path(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setattr(blas, "available", False)
    elif not blas.available:
        pytest.skip("SciPy's BLAS is not installed: only the reference path exists")
    return request.param


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_learns_predicts_and_resumes(shape, variant, optimizer, path, tmp_path):
    sizes, loss = SHAPES[shape]
    rule, options = spec(variant)
    make = lambda: edgefdfa.MLP(sizes, rule=rule, loss=loss, optimizer=optimizer, seed=2,  # noqa: E731
                                lr=1e-4 if rule == "fg-w" else 0.01, **options)
    learner = make()
    assert learner.fused == (path == "fast" and RULES[rule].local and optimizer == "sgd")
    X, Y = data(sizes, loss)
    before = learner.net.params.copy()
    losses = [learner.learn_one(x, y) for x, y in zip(X[:20], Y[:20])]
    assert all(np.isfinite(losses)) and not np.array_equal(before, learner.net.params)
    assert np.isfinite(learner.learn_many(X[20:], Y[20:]))
    p = learner.predict_one(X[0])
    if loss == "ce":
        assert 0 <= p < sizes[-1]
    else:
        assert p.shape == (sizes[-1],)
    learner.save(tmp_path / "head.npz")
    again = edgefdfa.Learner.load(tmp_path / "head.npz")
    for x, y in zip(X[:5], Y[:5]):
        assert learner.learn_one(x, y) == again.learn_one(x, y)
    assert np.array_equal(learner.net.params, again.net.params)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_repeated_sample_lowers_its_loss(shape, variant, path):
    sizes, loss = SHAPES[shape]
    rule, options = spec(variant)
    learner = edgefdfa.MLP(sizes, rule=rule, loss=loss, seed=1, lr=1e-3 if rule == "fg-w" else 0.02, **options)
    X, Y = data(sizes, loss, n=1)
    first = learner.learn_one(X[0], Y[0])
    for _ in range(300):
        last = learner.learn_one(X[0], Y[0])
    assert last < first


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", ["one-layer", "width-1", "deep"])
def test_a_diverging_step_changes_nothing(shape, variant, batch, path):
    """A step that would leave a non-finite value raises DivergedError naming the learning rate and
    leaves the learner exactly as before: weights, feedback, optimiser state, counters, random stream."""
    sizes, loss = SHAPES[shape]
    rule, options = spec(variant)
    learner = edgefdfa.MLP(sizes, rule=rule, loss=loss, optimizer="adam" if batch else "sgd", lr=0.01, seed=0,
                           activation="identity", **options)  # a saturated or dead unit would make the huge step sound
    X, Y = data(sizes, loss, n=8)
    learner.learn_many(X, Y)  # some state to keep: feedback, moments
    arrays, meta = learner.state()
    saved = {k: v.copy() for k, v in arrays.items()}
    huge = np.full((3 if batch else 1, sizes[0]), 1e30, np.float32)  # finite, but its step is not
    # a wrong class: for the predicted one the softmax error, and so the step, is 0
    wrong = [(learner.predict_one(huge[0]) + 1) % sizes[-1]] * 3 if loss == "ce" else Y[:3]
    with pytest.raises(DivergedError, match="lr 0.01"):
        if batch:
            learner.learn_many(huge, wrong)
        else:
            learner.learn_one(huge[0], wrong[0])
    arrays_after, meta_after = learner.state()
    assert meta_after == meta
    for key, value in saved.items():
        assert np.array_equal(arrays_after[key], value), key
    assert np.isfinite(learner.learn_one(X[0], Y[0]))  # and it goes on learning


def test_fast_and_reference_fdfa_agree_on_a_one_layer_head(monkeypatch):
    if not blas.available:
        pytest.skip("SciPy's BLAS is not installed")
    X, Y = data([32, 10], "ce", n=50)
    fast = edgefdfa.MLP([32, 10], seed=0)
    fast_losses = [fast.learn_one(x, y) for x, y in zip(X, Y)]
    monkeypatch.setattr(blas, "available", False)
    ref = edgefdfa.MLP([32, 10], seed=0)
    assert fast_losses == pytest.approx([ref.learn_one(x, y) for x, y in zip(X, Y)], rel=1e-5)
    assert np.allclose(fast.net.params, ref.net.params, atol=1e-6)
