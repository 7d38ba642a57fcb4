"""The shipped full-integer model (models/imu-activity-int8.tflite, made by tools/make_zoo.py with
TensorFlow's converter) as a user runs it: `edgefdfa info`, `train` from a sensor file, `export` back
to int8, and `push --encoding int8` to a device serving on a virtual cable."""

import os
import re
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa.backends import tflite as backend
from edgefdfa.datasets import load
from edgefdfa.formats import tflite as tflite_format

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "imu-activity-int8.tflite"
pytestmark = pytest.mark.skipif(backend.NAME is None, reason="no TFLite interpreter installed")


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edgefdfa", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """The BasicMotions test recordings as one CSV sensor stream (6 channels + label), the watch strapped
    on upside down (x and y reversed) from the middle on."""
    ds = load("basicmotions")
    path = tmp_path_factory.mktemp("imu") / "imu.csv"
    rows = []
    for i in range(len(ds.X_test)):
        for t in range(100):
            x = ds.X_test[i][:, t].copy()
            if i >= len(ds.X_test) // 2:
                x[[0, 1, 3, 4]] *= -1
            rows.append(",".join(f"{v:.6g}" for v in x) + f",{int(ds.y_test[i])}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_info_names_the_quantization():
    result = cli("info", MODEL)
    assert result.returncode == 0, result.stderr
    assert "2 dense layer(s)" in result.stdout and "quantized (int8 weights, int32 bias, int8 activations)" in result.stdout
    assert re.search(r"the head stops where operator \d+ \(\w+\) is not a dense layer", result.stdout)


def test_info_on_a_file_load_refuses_says_why(tmp_path):
    g = tflite_format.Builder()
    x = g.input("x", (1, 4))
    (tmp_path / "relu.tflite").write_bytes(g.finish([x], [g.op("RELU", [x], (1, 4))]))
    result = cli("info", tmp_path / "relu.tflite")
    assert result.returncode == 2
    assert "input    x (1, 4) float32" in result.stdout and "head     0 dense layer(s)" in result.stdout
    assert "load     refused: relu.tflite: nothing trainable" in result.stdout
    assert "Traceback" not in result.stderr


def test_train_export_and_push_int8(stream, tmp_path):
    out = tmp_path / "run"
    result = cli("train", MODEL, "--data", stream, "--window", 32, "--hop", 8, "--lr", 0.05, "--out", out)
    assert result.returncode == 0, result.stderr
    adapted = out / "imu-activity-int8-adapted.tflite"
    assert "(int8, as the file had it)" in result.stdout and adapted.exists()
    model = edgefdfa.load_checkpoint(out / "checkpoint.npz")
    assert np.isfinite(model.learner.ranges).all()  # calibrated from the stream
    exported = tmp_path / "again.tflite"
    result = cli("export", out / "checkpoint.npz", "--format", "tflite", "--out", exported)
    assert result.returncode == 0, result.stderr
    assert exported.read_bytes() == adapted.read_bytes()
    head = tflite_format.split(exported.read_bytes(), None, exported.name).head
    assert [d.form for d in head] == ["int8", "int8"]
    assert abs(len(exported.read_bytes()) - len(MODEL.read_bytes())) < 512
    ds = load("basicmotions")
    windows = [s[:, t:t + 32].T.astype(np.float32) for s in ds.X_train[:20] for t in range(0, 68, 8)]
    session = backend.Session(exported.read_bytes())
    agree = np.mean([np.argmax(session.run(w[None])) == model.predict_one(w) for w in windows])
    assert agree >= 0.95

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    device = subprocess.Popen([sys.executable, "-m", "edgefdfa", "device", "--pty", "--model", MODEL], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([device.stdout], [], [], 60)
        assert ready, device.stderr.read()
        port = device.stdout.readline().strip()
        result = cli("push", out / "checkpoint.npz", "--port", port, "--encoding", "int8", "--verify")
        assert result.returncode == 0, result.stderr
        assert "(int8)" in result.stdout and "parity max|device-host| 0" in result.stdout
    finally:
        device.terminate()
        device.wait(timeout=10)
        device.stdout.close()
        device.stderr.close()
