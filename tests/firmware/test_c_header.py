"""The exported C header, compiled with the system C compiler against the firmware forward pass
(firmware_bridge/c/edgefdfa_head.c), reproduces the engine: float32 to 1e-5, int8 on >= 99% of
argmaxes."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa.datasets import load
from edgefdfa.evaluate import fit_online

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "firmware_bridge" / "c"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-pedantic"]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (apt-get install gcc)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An FDFA learner trained online on digits, its checkpoint, and the test inputs."""
    ds = load("digits")
    learner = edgefdfa.MLP([64, 32, 16, 10], activation="tanh", rule="fdfa", seed=0)
    fit_online(learner, ds.X_train, ds.y_train, epochs=2)
    path = tmp_path_factory.mktemp("ckpt") / "digits.npz"
    learner.save(path)
    return learner, path, ds.X_test


def build_and_run(checkpoint, fmt, X, tmp_path):
    header = tmp_path / "head.h"
    proc = subprocess.run([sys.executable, "-m", "edgefdfa", "export", str(checkpoint), "--format", fmt,
                           "--out", str(header)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    exe = tmp_path / "head"
    subprocess.run(["cc", *CFLAGS, f"-I{C_DIR}", f"-I{tmp_path}", str(Path(__file__).with_name("head_main.c")),
                    str(C_DIR / "edgefdfa_head.c"), "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], input=X.astype("<f4").tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, "<f4").reshape(len(X), -1)


def engine_logits(learner, X):
    bt = learner.workspace.batch(1)
    rows = []
    for x in X:
        bt.x[0] = x
        learner.net.forward(bt, derivatives=False)
        rows.append(bt.y[0].copy())
    return np.array(rows)


def test_float32_header_matches_engine(trained, tmp_path):
    learner, checkpoint, X = trained
    c_out = build_and_run(checkpoint, "c", X, tmp_path)
    assert np.allclose(c_out, engine_logits(learner, X), atol=1e-5, rtol=1e-5)
    image = 4 * sum(W.size + b.size for W, b in zip(learner.net.W, learner.net.b))  # the bridge's slot_size
    assert f"#define HEAD_IMAGE_BYTES {image}u" in (tmp_path / "head.h").read_text()


def test_int8_header_agrees_on_argmax(trained, tmp_path):
    learner, checkpoint, X = trained
    c_out = build_and_run(checkpoint, "c-int8", X, tmp_path)
    agree = np.mean(c_out.argmax(1) == engine_logits(learner, X).argmax(1))
    assert agree >= 0.99, agree
    text = (tmp_path / "head.h").read_text()
    assert "static const int8_t head_w0[2048]" in text and "head_w0_scale[32]" in text


def test_int8_quantisation_follows_the_tflite_spec():
    from edgefdfa.head import quantize_per_channel

    W = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    W[3] = 0.0
    q, scale = quantize_per_channel(W)
    assert q.dtype == np.int8 and q.min() >= -127  # symmetric: -128 is never used
    assert np.array_equal(np.abs(q).max(axis=1)[[0, 1, 2, 4]], [127] * 4)  # one scale per output channel
    assert np.all(np.abs(W - q * scale[:, None]) <= scale[:, None] / 2 + 1e-7)
    assert scale[3] > 0 and not q[3].any()
