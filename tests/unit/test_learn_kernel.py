"""The C learning step (firmware_bridge/c/edgefdfa_learn.c, through the extension type in
edgefdfa/_head.c) against the NumPy rules (EDGEFDFA_NATIVE=0) on the same perturbations u.

The bound: float32 sums in another order differ in the last bits, and those differences grow as they
feed later steps. Measured, they stay below 1e-6 over 1,000 SGD steps on digits; the tests allow
1e-5 (absolute, on weights of size ~0.1-1, feedback and losses), far below any learned change."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa import native
from edgefdfa.datasets import load
from edgefdfa.errors import DivergedError
from edgefdfa.learner import MAX_STEP_SUMSQ

from test_head_shapes import SHAPES, data  # tests/unit is on sys.path (pytest's prepend mode)
from test_rule_contract import SIZES as CONTRACT_SIZES

BOUND = 1e-5
SHAPES = {**SHAPES, "contract": (CONTRACT_SIZES, "ce")}
KERNEL_RULES = sorted(native.RULES)

pytestmark = pytest.mark.skipif(not native.built(), reason="the extension was not built (needs gcc, python3-dev)")


@pytest.fixture(autouse=True)
def both_paths(monkeypatch):
    """This file compares the two paths, so a learner is compiled unless numpy_learner made it, even
    in a run under EDGEFDFA_NATIVE=0."""
    monkeypatch.delenv("EDGEFDFA_NATIVE", raising=False)


def numpy_learner(monkeypatch, *args, **kw):
    monkeypatch.setenv("EDGEFDFA_NATIVE", "0")
    learner = edgefdfa.MLP(*args, **kw)
    monkeypatch.delenv("EDGEFDFA_NATIVE")
    assert not learner.learns_compiled
    return learner


def draws(learner):
    """The u the learner's next FDFA step will draw, layer by layer as rules/base.py draws them."""
    g = np.random.Generator(np.random.PCG64())
    g.bit_generator.state = learner.rng.bit_generator.state
    sigma = learner.config.sigma
    return np.concatenate([g.standard_normal(n, dtype=np.float32) * np.float32(sigma)
                           for n in learner.config.sizes[1:-1]] or [np.zeros(0, np.float32)])


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("rule", KERNEL_RULES)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_kernel_steps_as_the_numpy_rule_does(shape, rule, activation, monkeypatch):
    """edgefdfa_learn_step driven directly on its own copies of the weights and feedback, with the u
    the NumPy learner draws: the same outputs, losses, weights and feedback, step by step."""
    sizes, loss = SHAPES[shape]
    ref = numpy_learner(monkeypatch, sizes, activation=activation, rule=rule, loss=loss, seed=4, lr=0.05)
    params, x = ref.net.params.copy(), np.zeros(sizes[0], np.float32)
    head, _, _ = native.head(tuple(sizes), list(ref.config.activations), params, x)
    hidden = sum(sizes[1:-1])
    feedback = ref.rule.state()["B"].copy() if rule != "bp" and hidden else None
    u = np.zeros(hidden, np.float32) if rule == "fdfa" and hidden else None
    target, output = np.zeros(sizes[-1], np.float32), np.zeros(sizes[-1], np.float32)
    head.learning(native.code(native.RULES, rule), native.code(native.LOSSES, loss), ref.config.alpha,
                  ref.config.sigma, MAX_STEP_SUMSQ, feedback, u, target if loss == "mse" else None, output)
    X, Y = data(sizes, loss, n=30)
    for step, (xi, yi) in enumerate(zip(X, Y)):
        if u is not None:
            u[...] = draws(ref)
        x[...] = xi
        if loss == "mse":
            target[...] = yi
        expected = ref.output_one(xi)
        assert head.learn(int(yi) if loss == "ce" else 0, ref.optimizer.lr) == native.constant("LEARN_OK")
        assert head.loss == pytest.approx(ref.learn_one(xi, yi), abs=BOUND), step
        assert np.allclose(output, expected, atol=BOUND, rtol=0), step
        assert np.allclose(params, ref.net.params, atol=BOUND, rtol=0), step
        if feedback is not None:
            assert np.allclose(feedback, ref.rule.state()["B"], atol=BOUND, rtol=0), step
    assert not np.array_equal(params, numpy_learner(monkeypatch, sizes, activation=activation, rule=rule,
                                                    loss=loss, seed=4).net.params)  # it learned


DIGITS_HEADS = {  # name -> MLP arguments, on digits' 64 features and 10 classes
    "one-layer": dict(sizes=[64, 10]),
    "width-1": dict(sizes=[64, 1, 10]),
    "64-128-10": dict(sizes=[64, 128, 10]),
    "tanh-64-32-16-10": dict(sizes=[64, 32, 16, 10], activation="tanh"),
    "sigmoid-64-32-10": dict(sizes=[64, 32, 10], activation="sigmoid"),
    "mse-64-32-10": dict(sizes=[64, 32, 10], loss="mse"),
}


@pytest.fixture(scope="module")
def digits():
    ds = load("digits")
    return ds.X_train, ds.y_train


@pytest.mark.parametrize("rule", KERNEL_RULES)
@pytest.mark.parametrize("head", sorted(DIGITS_HEADS))
def test_compiled_and_numpy_learners_agree_over_1000_digits_steps(head, rule, digits, monkeypatch):
    kw = dict(DIGITS_HEADS[head])
    sizes = kw.pop("sizes")
    compiled = edgefdfa.MLP(sizes, rule=rule, seed=0, **kw)
    reference = numpy_learner(monkeypatch, sizes, rule=rule, seed=0, **kw)
    assert compiled.learns_compiled
    X, y = digits
    onehot = np.eye(10, dtype=np.float32)
    worst = 0.0
    for i in range(1000):
        target = onehot[y[i % len(y)]] if kw.get("loss") == "mse" else y[i % len(y)]
        a, b = compiled.learn_one(X[i % len(X)], target), reference.learn_one(X[i % len(X)], target)
        worst = max(worst, abs(a - b))
        assert np.allclose(compiled.last_output(), reference.last_output(), atol=BOUND)
    assert worst <= BOUND
    assert np.allclose(compiled.net.params, reference.net.params, atol=BOUND, rtol=0)
    for key, value in compiled.rule.state().items():
        assert np.allclose(value, reference.rule.state()[key], atol=BOUND, rtol=0), key
    assert compiled.rng.bit_generator.state == reference.rng.bit_generator.state  # the same draws taken
    assert (compiled.n_seen, compiled.n_updates) == (reference.n_seen, reference.n_updates) == (1000, 1000)


def test_a_checkpoint_continues_on_the_other_path(digits, monkeypatch, tmp_path):
    X, y = digits
    compiled = edgefdfa.MLP([64, 32, 10], seed=1)
    for i in range(100):
        compiled.learn_one(X[i], y[i])
    compiled.save(tmp_path / "c.npz")
    monkeypatch.setenv("EDGEFDFA_NATIVE", "0")
    resumed = edgefdfa.Learner.load(tmp_path / "c.npz")
    monkeypatch.delenv("EDGEFDFA_NATIVE")
    assert not resumed.learns_compiled
    for i in range(100, 200):
        assert compiled.learn_one(X[i], y[i]) == pytest.approx(resumed.learn_one(X[i], y[i]), abs=BOUND)
    assert np.allclose(compiled.net.params, resumed.net.params, atol=BOUND)


def test_ranges_are_tracked_by_the_compiled_step(digits, monkeypatch):
    X, y = digits
    compiled, reference = edgefdfa.MLP([64, 16, 10], seed=0), numpy_learner(monkeypatch, [64, 16, 10], seed=0)
    for learner in (compiled, reference):
        learner.track_ranges()
        for i in range(50):
            learner.learn_one(X[i], y[i])
    assert np.isfinite(compiled.ranges).all()
    assert np.allclose(compiled.ranges, reference.ranges, atol=BOUND)


def test_a_diverging_compiled_step_is_refused_as_numpy_refuses_it(monkeypatch):
    sizes = [12, 6, 3]
    messages = []
    for learner in (edgefdfa.MLP(sizes, activation="identity", seed=0),
                    numpy_learner(monkeypatch, sizes, activation="identity", seed=0)):
        huge = np.full(sizes[0], 1e30, np.float32)
        arrays, meta = learner.state()
        saved = {k: v.copy() for k, v in arrays.items()}
        with pytest.raises(DivergedError) as e:
            learner.learn_one(huge, (learner.predict_one(huge) + 1) % sizes[-1])
        messages.append(str(e.value))
        after, meta_after = learner.state()
        assert meta_after == meta and all(np.array_equal(after[k], v) for k, v in saved.items())
    assert messages[0] == messages[1] and "gradient norm" in messages[0]


def test_what_the_kernel_refuses_by_itself():
    """Arguments the learner never passes are refused with the kernel's own codes, nothing written."""
    params, x = np.ones(4 * 3 + 3, np.float32), np.ones(4, np.float32)
    head, _, _ = native.head((4, 3), ["identity"], params, x)
    output = np.zeros(3, np.float32)
    head.learning(native.code(native.RULES, "bp"), native.code(native.LOSSES, "ce"), 0.1, 1.0, MAX_STEP_SUMSQ,
                  None, None, None, output)
    before = params.copy()
    assert head.learn(3, 0.1) == native.constant("LEARN_BAD_LABEL")
    x[0] = np.nan
    assert native.DIVERGED[head.learn(0, 0.1)] == "loss"
    assert np.array_equal(params, before)
    with pytest.raises(ValueError, match="params must be 15 float32"):
        native.head((4, 3), ["identity"], np.ones(14, np.float32), x)
    with pytest.raises(ValueError, match="needs feedback"):
        h, _, _ = native.head((4, 2, 3), ["relu", "identity"], np.ones(4 * 2 + 2 + 2 * 3 + 3, np.float32), x)
        h.learning(native.code(native.RULES, "dfa"), 0, 0.1, 1.0, 1e30, None, None, None, output)
