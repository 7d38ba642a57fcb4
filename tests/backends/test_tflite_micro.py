"""Exported .tflite files run in TensorFlow Lite for Microcontrollers (the `tflite-micro` package,
the kernels firmware runs) and reproduce the engine."""

import sys
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa.export import export

runtime = pytest.importorskip("tflite_micro", reason="pip install the test extra (tflite-micro; its wheels are x86-64 only: never on arm64)").runtime
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from make_models import held_out  # noqa: E402

sys.path.pop(0)


def micro_outputs(data: bytes, X: np.ndarray) -> np.ndarray:
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=64 * 1024)
    out = []
    for x in X:  # TFLM takes one sample per invoke
        interpreter.set_input(x[None].astype(np.float32), 0)
        interpreter.invoke()
        out.append(interpreter.get_output(0).ravel().copy())
    return np.array(out)


@pytest.mark.parametrize("name", ["imu-activity", "digits"])
def test_adapted_model_runs_in_tflite_micro(name, tmp_path):
    model = edgefdfa.load(ROOT / "models" / f"{name}.tflite", lr=0.05)
    X, y = held_out(name)
    for x, t in zip(X[:80], y[:80]):
        model.learn_one(x, t)
    export(model, tmp_path / "adapted.tflite", "tflite")
    expected = np.array([model.output_one(x) for x in X[:40]])
    assert np.allclose(micro_outputs((tmp_path / "adapted.tflite").read_bytes(), X[:40]), expected, atol=1e-5)


def test_head_of_an_onnx_model_runs_in_tflite_micro(tmp_path):
    """An ONNX model's learned head, exported alone as .tflite for a microcontroller."""
    model = edgefdfa.load(ROOT / "models" / "imu-activity.onnx")
    X, y = held_out("imu-activity")
    for x, t in zip(X[:40], y[:40]):
        model.learn_one(x, t)
    export(model, tmp_path / "head.tflite", "tflite")
    F = np.array([model.features(x) for x in X[:40]])
    assert np.allclose(micro_outputs((tmp_path / "head.tflite").read_bytes(), F),
                       [model.output_one(x) for x in X[:40]], atol=1e-5)
