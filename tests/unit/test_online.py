"""The online loop's guards: test-then-train order, refused diverging steps, drift reactions."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa.online import OnlineRun, RunConfig
from edgefdfa.stream import Sample


def stream(n, seed=0, shift_at=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)).astype(np.float32) * 3
    out = []
    for k in range(n):
        y = int(rng.integers(0, 3))
        x = centres[y] + rng.normal(size=8).astype(np.float32) * 0.3
        if shift_at is not None and k >= shift_at:
            x = -x  # the sensor flips
        out.append(Sample(x, y, float(k)))
    return out


def test_each_sample_is_scored_before_it_is_learned():
    learner = edgefdfa.MLP([8, 16, 3], seed=0)
    run = OnlineRun(learner)
    sample = stream(1)[0]
    expected = int(np.argmax(learner.predict_proba_one(sample.x))) == sample.y
    run.step(sample)
    assert run.metrics.snapshot()["accuracy"] == float(expected) and learner.n_seen == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point of this test
def test_a_diverging_step_is_refused_and_reported():
    learner = edgefdfa.MLP([8, 16, 3], rule="bp", lr=1e4, seed=0)  # a learning rate that blows up
    run = OnlineRun(learner)
    run.run(stream(300))
    diverged = [e for e in run.events if e["kind"] == "diverged"]
    assert diverged and "lr 10000" in diverged[0]["detail"]
    assert np.isfinite(learner.net.params).all()
    assert learner.n_seen < 300 - len(diverged) + 1


def pretrained(rule="fdfa", lr=0.01):
    learner = edgefdfa.MLP([8, 16, 16, 3], rule=rule, lr=lr, seed=0)
    OnlineRun(learner).run(stream(800, seed=1))  # learn the regime before the flip
    return learner


def test_drift_is_found_after_the_flip_and_boosts_the_learning_rate_for_a_while():
    learner = pretrained()
    run = OnlineRun(learner, RunConfig(drift="boost-lr", boost=4.0, boost_samples=50))
    run.run(stream(600, seed=2, shift_at=300))
    drifts = [e for e in run.events if e["kind"] == "drift"]
    assert drifts and all(e["sample"] > 300 for e in drifts)  # found after the flip, not before
    assert learner.optimizer.lr == 0.01  # the boost ended


def test_reset_feedback_forgets_fdfa_feedback():
    learner = pretrained()
    assert learner.rule.flat.any()
    run = OnlineRun(learner, RunConfig(drift="reset-feedback"))
    run._react()
    assert not learner.rule.flat.any() and "reset" in run.events[-1]["detail"]


def test_adapting_beats_frozen_after_a_shift():
    scores = {}
    for learn in (False, True):
        run = OnlineRun(pretrained(), RunConfig(learn=learn))
        run.run(stream(1000, seed=2, shift_at=200))
        scores[learn] = run.metrics.rolling_score.mean  # the last 200 samples, all after the flip
    assert scores[True] > scores[False] + 0.3, scores


def test_a_sample_the_backbone_overflows_on_is_skipped_as_bad_not_a_crash():
    """Issue 11 item 4: 1e20s make the IMU backbone's std overflow; the run counts it and goes on."""
    from pathlib import Path

    from edgefdfa.datasets import load
    from edgefdfa.model import load as load_model
    from edgefdfa.stream import Window

    ds = load("basicmotions")
    steps = [Sample(s[:, t].astype(np.float32), int(y), 0.0) for s, y in zip(ds.X_test[:3], ds.y_test[:3])
             for t in range(100)]
    steps.insert(150, Sample(np.full(6, 1e20, np.float32), steps[149].y, 0.0))
    model = load_model(Path(__file__).resolve().parents[2] / "models" / "imu-activity.onnx")
    run = OnlineRun(model, RunConfig(range_guard="off"), Window(32, 8, 6))  # the guard would skip it first
    run.run(steps)
    assert run.skipped_by == {"bad input": 4}  # the four windows that hold the row
    assert run.consumed == len(steps) and np.isfinite(model.learner.net.params).all()


@pytest.mark.parametrize("native", ["1", "0"])
def test_learn_one_exposes_the_prediction_it_computed_before_its_update(native, monkeypatch):
    monkeypatch.setenv("EDGEFDFA_NATIVE", native)
    for loss in ("ce", "mse"):
        learner = edgefdfa.MLP([8, 16, 3], loss=loss, seed=0)
        for s in stream(20):
            target = s.y if loss == "ce" else np.eye(3, dtype=np.float32)[s.y]
            before, proba = learner.output_one(s.x), learner.predict_proba_one(s.x)
            learner.learn_one(s.x, target)
            assert np.allclose(learner.last_output(), before, atol=1e-6)
            assert np.allclose(learner.last_output(probabilities=True), proba, atol=1e-6)
            assert not np.allclose(learner.output_one(s.x), before, atol=0, rtol=0)  # the update came after


def test_test_then_train_runs_the_head_once_per_labelled_sample(monkeypatch):
    learner, twin = edgefdfa.MLP([8, 16, 3], seed=0), edgefdfa.MLP([8, 16, 3], seed=0)
    passes = []
    monkeypatch.setattr(learner, "output_one", lambda *a, **k: passes.append(1) or twin.output_one(*a, **k))
    run = OnlineRun(learner)
    samples = stream(200)
    run.run(samples)
    assert passes == [] and learner.n_seen == 200  # learn_one's forward pass was the prediction
    hits = 0
    for s in samples:  # the same scores as predicting first, then learning
        hits += int(np.argmax(twin.predict_proba_one(s.x))) == s.y
        twin.learn_one(s.x, s.y)
    assert run.metrics.snapshot()["accuracy"] == hits / 200
