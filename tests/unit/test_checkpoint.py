"""Checkpoints hold the whole learner, continue bit-identically, and are written atomically."""

import os

import numpy as np
import pytest

import edgefdfa
from edgefdfa import RULES, CheckpointError
from edgefdfa import checkpoint


def stream(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 20), dtype=np.float32), rng.integers(0, 5, n)


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_resumed_learner_continues_bit_identically(tmp_path, rule, optimizer):
    X, y = stream(120)
    kw = dict(rule=rule, optimizer=optimizer, seed=7)
    never_stopped = edgefdfa.MLP([20, 16, 16, 5], **kw)
    stopped = edgefdfa.MLP([20, 16, 16, 5], **kw)
    for x, t in zip(X[:60], y[:60]):
        never_stopped.learn_one(x, t)
        stopped.learn_one(x, t)
    stopped.save(tmp_path / "ckpt.npz")
    del stopped
    resumed = edgefdfa.Learner.load(tmp_path / "ckpt.npz")
    assert resumed.config == never_stopped.config
    for x, t in zip(X[60:], y[60:]):
        loss = never_stopped.learn_one(x, t)
        assert np.isfinite(loss) and resumed.learn_one(x, t) == loss
    assert resumed.net.params.tobytes() == never_stopped.net.params.tobytes()
    for a, b in zip(resumed.rule.state().values(), never_stopped.rule.state().values()):
        assert a.tobytes() == b.tobytes()
    assert (resumed.n_seen, resumed.n_updates) == (never_stopped.n_seen, never_stopped.n_updates) == (120, 120)


def test_checkpoint_is_plain_npz_without_pickle(tmp_path):
    learner = edgefdfa.MLP([20, 8, 5], rule="fdfa", seed=0)
    learner.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert {"params", "rule.B", "__meta__"} <= set(z.files)
        assert all(z[k].dtype != object for k in z.files)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    learner = edgefdfa.MLP([20, 8, 5], seed=0)
    learner.save(path)
    good = path.read_bytes()
    learner.learn_one(np.ones(20), 1)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        learner.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "other-npz", "other-version"])
def test_bad_checkpoint_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "c.npz"
    edgefdfa.MLP([20, 8, 5], seed=0).save(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "missing":
        path.unlink()
    elif damage == "other-npz":
        np.savez(path, weights=np.zeros(3))
    elif damage == "other-version":
        arrays, meta = checkpoint.load(path)
        checkpoint.save(path, arrays, {**meta, "version": 99})
    with pytest.raises(CheckpointError, match="c.npz"):
        edgefdfa.Learner.load(path)


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    learner = edgefdfa.MLP([20, 8, 5], seed=0)
    arrays, meta = learner.state()
    arrays["params"] = np.zeros(3, np.float32)
    checkpoint.save(path, arrays, meta)
    with pytest.raises(CheckpointError, match="shape"):
        edgefdfa.Learner.load(path)
