"""The input-scale guard: one finite but absurd row (1e5 ... 1e20) no longer wrecks the head; it is
skipped and counted, and accuracy stays that of the clean stream (tools/bench_range_guard.py has the
full streams)."""

from pathlib import Path

import numpy as np
import pytest

from edgefdfa import ConfigError
from edgefdfa.datasets import load
from edgefdfa.model import load as load_model
from edgefdfa.online import OnlineRun, RunConfig
from edgefdfa.range_guard import RangeGuard
from edgefdfa.stream import Sample, Window

MODELS = Path(__file__).resolve().parents[2] / "models"


def digits_rows(n=200):
    ds = load("digits")
    return [(x.astype(np.float32), int(y)) for x, y in zip(ds.X_test[:n], ds.y_test[:n])]


def imu_rows(n_series=6):
    ds = load("basicmotions")
    return [(s[:, t].astype(np.float32), int(y)) for s, y in zip(ds.X_test[:n_series], ds.y_test[:n_series])
            for t in range(s.shape[1])]


def with_spikes(rows, value, at=(80, 120, 160)):
    out = list(rows)
    for k in sorted(at, reverse=True):
        out.insert(k, (np.full_like(rows[k][0], value), rows[k - 1][1]))
    return out


def prequential(model_file, rows, window=None, **config):
    model = load_model(MODELS / model_file)
    run = OnlineRun(model, RunConfig(**config), Window(window, 8, len(rows[0][0])) if window else None)
    with np.errstate(all="ignore"):
        run.run(Sample(x, y, float(i)) for i, (x, y) in enumerate(rows))
    return run, model


@pytest.mark.parametrize("value", [1e5, 1e10, 1e20])
def test_a_spike_on_digits_is_skipped_and_accuracy_is_that_of_the_clean_stream(value):
    rows = digits_rows()
    clean, _ = prequential("digits.onnx", rows)
    guarded, model = prequential("digits.onnx", with_spikes(rows, value))
    assert guarded.skipped_by == {"out of range": 3}
    assert abs(guarded.metrics.snapshot()["accuracy"] - clean.metrics.snapshot()["accuracy"]) <= 0.005
    assert np.isfinite(model.learner.net.params).all()


def test_without_the_guard_one_spike_wrecks_the_digits_head():
    """What the guard prevents (issue 11 item 2): the loss stays finite, accuracy collapses."""
    rows = digits_rows()
    clean, _ = prequential("digits.onnx", rows, range_guard="off")
    unguarded, _ = prequential("digits.onnx", with_spikes(rows, 1e5, at=(40,)), range_guard="off")
    assert unguarded.metrics.snapshot()["accuracy"] < clean.metrics.snapshot()["accuracy"] - 0.2


@pytest.mark.parametrize("value", [1e5, 1e20])
def test_a_spike_on_the_imu_stream_is_skipped_before_the_window(value):
    rows = imu_rows()
    clean, _ = prequential("imu-activity.onnx", rows, window=32)
    guarded, _ = prequential("imu-activity.onnx", with_spikes(rows, value, at=(150, 350, 500)), window=32)
    assert guarded.skipped_by == {"out of range": 3}
    assert abs(guarded.metrics.snapshot()["accuracy"] - clean.metrics.snapshot()["accuracy"]) <= 0.005


def test_clip_puts_the_values_on_the_band_edge():
    guard = RangeGuard(2, action="clip", margin=1.0, warmup=2)
    guard.check(np.array([0.0, 0.0], np.float32))
    guard.check(np.array([1.0, 2.0], np.float32))
    assert guard.check(np.array([0.5, 1.0], np.float32)).tolist() == [0.5, 1.0]
    # spans 1 and 2 (mean 1.5): bands [-1.5, 2.5] and [-2, 4]
    assert guard.check(np.array([1e20, -1e20], np.float32)).tolist() == [2.5, -2.0]


def test_a_lasting_change_of_scale_is_taken_as_the_new_normal():
    guard = RangeGuard(1, warmup=3, patience=4)
    for v in (0.0, 1.0, 0.5):
        guard.check(np.array([v], np.float32))
    kept = [guard.check(np.array([1000.0], np.float32)) is not None for _ in range(6)]
    assert kept == [False, False, False, True, True, True]


def test_a_constant_feature_is_judged_at_the_scale_of_the_others():
    guard = RangeGuard(2, margin=1.0, warmup=2)
    guard.check(np.array([0.0, 0.0], np.float32))
    guard.check(np.array([0.0, 4.0], np.float32))  # feature 0 constant, mean span 2
    assert guard.check(np.array([2.1, 2.0], np.float32)) is None  # band of feature 0: [-2, 2]
    assert guard.check(np.array([1.9, 2.0], np.float32)) is not None


def test_guard_state_round_trips_through_a_checkpoint(tmp_path):
    rows = digits_rows(120)
    samples = [Sample(x, y, 0.0) for x, y in with_spikes(rows, 1e5, at=(60, 90))]
    whole, model = prequential("digits.onnx", rows[:0])
    whole.run(samples)
    first, _ = prequential("digits.onnx", rows[:0])
    first.run(samples[:70])
    first.save(tmp_path / "c.npz")
    from edgefdfa.model import load_checkpoint

    resumed_model = load_checkpoint(tmp_path / "c.npz")
    resumed = OnlineRun(resumed_model)
    resumed.resume(tmp_path / "c.npz")
    resumed.run(samples, skip=resumed.consumed)
    assert resumed.range.n == whole.range.n and resumed.range.hi.tobytes() == whole.range.hi.tobytes()
    assert resumed_model.learner.net.params.tobytes() == model.learner.net.params.tobytes()


def test_bad_settings_are_config_errors():
    for kw in ({"action": "ignore"}, {"margin": 0}, {"warmup": 0}, {"patience": 1.5}):
        with pytest.raises(ConfigError):
            RangeGuard(3, **kw)
