"""Make the shipped models in models/ from the shipped real data, as .onnx and .tflite, plus
models/manifest.json. No TensorFlow or PyTorch: the graphs are written with the onnx helpers and
edgefdfa's own TFLite builder, and the heads are trained by edgefdfa's engine (BP).

  imu-activity   BasicMotions smartwatch IMU (4 activities). Input: one window of 32 samples x 6
                 channels (acc xyz, gyro xyz), time-major, raw sensor units. Backbone: per-channel
                 mean, std, min, max (24 features), standardised with training-set constants.
                 Head: dense 24-32 (relu) -> 32-4 -> softmax.
  digits         scikit-learn digits. Input: 64 pixels scaled to [0, 1]. An MLP 64-32 (relu) ->
                 32-10 -> softmax: every layer is dense, so the default head is the whole model.

Each file is run in its own interpreter on the test split before it is written to the manifest,
and must reproduce the NumPy pipeline it was trained with (1e-5).  python tools/make_models.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgefdfa
from edgefdfa.backends import onnx as onnx_backend
from edgefdfa.backends import tflite as tflite_backend
from edgefdfa.datasets import load
from edgefdfa.evaluate import fit_online
from edgefdfa.formats import onnx as onnx_format
from edgefdfa.formats import tflite as tflite_format

MODELS = Path(__file__).resolve().parent.parent / "models"
WINDOW, HOP = 32, 8
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
OPSET, IR = 17, 9


def windows(series: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6, T) series -> (m, WINDOW, 6) time-major windows with hop HOP, and their labels."""
    X, y = [], []
    for s, label in zip(series, labels):
        for start in range(0, s.shape[1] - WINDOW + 1, HOP):
            X.append(s[:, start:start + WINDOW].T)
            y.append(label)
    return np.asarray(X, np.float32), np.asarray(y)


def imu_features(X: np.ndarray) -> np.ndarray:
    """The backbone in NumPy, float32 like the graphs: (m, 32, 6) -> (m, 24) [mean | std | min | max]."""
    mean = X.mean(axis=1, dtype=np.float32)
    centred = X - mean[:, None, :]
    std = np.sqrt((centred * centred).mean(axis=1, dtype=np.float32))
    return np.concatenate([mean, std, X.min(axis=1), X.max(axis=1)], axis=1).astype(np.float32)


def train_head(F: np.ndarray, y: np.ndarray, sizes: list[int], epochs: int) -> edgefdfa.Learner:
    learner = edgefdfa.MLP(sizes, rule="bp", loss="ce", optimizer="adam", lr=1e-3, seed=0)
    fit_online(learner, F, y, epochs=epochs, seed=0)
    return learner


def head_layers(learner: edgefdfa.Learner) -> list[tuple[np.ndarray, np.ndarray, str]]:
    return [(W.copy(), b.copy(), act.name) for W, b, act in zip(learner.net.W, learner.net.b, learner.net.acts)]


def imu_onnx(mu: np.ndarray, inv_sd: np.ndarray, head) -> bytes:
    """Backbone (Reduce*, Sub, Mul, Sqrt, Concat, Sub, Mul) + Gemm head + Softmax, opset 17 (axes as attributes)."""
    inits = [numpy_helper.from_array(mu, "feature_mean"), numpy_helper.from_array(inv_sd, "feature_inv_std")]
    nodes = [
        helper.make_node("ReduceMean", ["window"], ["mean_k"], "mean_keep", keepdims=1, axes=[1]),
        helper.make_node("Sub", ["window", "mean_k"], ["centred"], "centre"),
        helper.make_node("Mul", ["centred", "centred"], ["sq"], "square"),
        helper.make_node("ReduceMean", ["sq"], ["var"], "variance", keepdims=0, axes=[1]),
        helper.make_node("Sqrt", ["var"], ["std"], "std"),
        helper.make_node("ReduceMean", ["window"], ["mean"], "mean", keepdims=0, axes=[1]),
        helper.make_node("ReduceMin", ["window"], ["min"], "min", keepdims=0, axes=[1]),
        helper.make_node("ReduceMax", ["window"], ["max"], "max", keepdims=0, axes=[1]),
        helper.make_node("Concat", ["mean", "std", "min", "max"], ["raw_features"], "features", axis=1),
        helper.make_node("Sub", ["raw_features", "feature_mean"], ["shifted"], "standardise_shift"),
        helper.make_node("Mul", ["shifted", "feature_inv_std"], ["features"], "standardise_scale"),
    ]
    prev = "features"
    for l, (W, b, act) in enumerate(head):
        inits += [numpy_helper.from_array(W, f"fc{l}.weight"), numpy_helper.from_array(b, f"fc{l}.bias")]
        out = f"fc{l}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{l}.weight", f"fc{l}.bias"], [out], f"fc{l}", transB=1))
        if act == "relu":
            nodes.append(helper.make_node("Relu", [out], [f"{out}_relu"], f"fc{l}_relu"))
            out = f"{out}_relu"
        prev = out
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], "softmax", axis=-1))
    graph = helper.make_graph(
        nodes, "imu_activity",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, WINDOW, len(CHANNELS)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, head[-1][0].shape[0]])], inits)
    model = helper.make_model(graph, producer_name="edgefdfa tools/make_models.py",
                              opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def imu_tflite(mu: np.ndarray, inv_sd: np.ndarray, head) -> bytes:
    """The same graph in TFLite: MEAN/REDUCE_MIN/REDUCE_MAX, SUB, MUL, SQRT, CONCATENATION, SUB, MUL,
    FULLY_CONNECTED (fused relu), FULLY_CONNECTED, SOFTMAX."""
    g = tflite_format.Builder()
    x = g.input("window", (1, WINDOW, len(CHANNELS)))
    axis = g.const(np.array([1], np.int32), "axis1")
    n = len(CHANNELS)
    mean_k = g.op("MEAN", [x, axis], (1, 1, n), keep_dims=True)
    centred = g.op("SUB", [x, mean_k], (1, WINDOW, n))
    sq = g.op("MUL", [centred, centred], (1, WINDOW, n))
    std = g.op("SQRT", [g.op("MEAN", [sq, axis], (1, n), keep_dims=False)], (1, n))
    mean = g.op("MEAN", [x, axis], (1, n), keep_dims=False)
    lo = g.op("REDUCE_MIN", [x, axis], (1, n), keep_dims=False)
    hi = g.op("REDUCE_MAX", [x, axis], (1, n), keep_dims=False)
    raw = g.op("CONCATENATION", [mean, std, lo, hi], (1, 4 * n), axis=1)
    shifted = g.op("SUB", [raw, g.const(mu[None, :], "feature_mean")], (1, 4 * n))
    h = g.op("MUL", [shifted, g.const(inv_sd[None, :], "feature_inv_std")], (1, 4 * n))
    for l, (W, b, act) in enumerate(head):
        h = g.fully_connected(h, W, b, act, name=f"fc{l}")
    return g.finish([x], [g.op("SOFTMAX", [h], (1, head[-1][0].shape[0]), name="probabilities")])


def imu_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    ds = load("basicmotions")
    Xtr, ytr = windows(ds.X_train, ds.y_train)
    Xte, yte = windows(ds.X_test, ds.y_test)
    return Xtr, ytr, Xte, yte, list(ds.classes)


def held_out(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Real test-split inputs and labels for a shipped model, shaped as one model input each."""
    if stem.startswith("imu-activity"):
        _, _, X, y, _ = imu_data()
        return X, y
    ds = load("digits")
    return ds.X_test, ds.y_test


def file_accuracy(data: bytes, session_cls, X: np.ndarray, y: np.ndarray, expected: np.ndarray) -> float:
    """Run a written file in its interpreter on the test split; it must match the NumPy pipeline."""
    session = session_cls(data)
    out = np.array([session.run(x[None]).ravel() for x in X])
    assert np.allclose(out, expected, atol=1e-5), np.abs(out - expected).max()
    return float(np.mean(out.argmax(1) == y))


def numpy_head(learner: edgefdfa.Learner, F: np.ndarray) -> np.ndarray:
    """The head's class probabilities, as the files' final Softmax gives them."""
    return np.array([learner.predict_proba_one(f) for f in F])


def main() -> None:
    MODELS.mkdir(exist_ok=True)
    entries = []

    Xtr, ytr, Xte, yte, classes = imu_data()
    Ftr = imu_features(Xtr)
    mu, sd = Ftr.mean(axis=0), Ftr.std(axis=0)
    inv_sd = (1.0 / np.maximum(sd, 1e-6)).astype(np.float32)
    standardise = lambda F: ((F - mu) * inv_sd).astype(np.float32)  # noqa: E731
    imu = train_head(standardise(Ftr), ytr, [24, 32, len(classes)], epochs=60)
    head = head_layers(imu)
    expected = numpy_head(imu, standardise(imu_features(Xte)))
    files = {"imu-activity.onnx": (imu_onnx(mu.astype(np.float32), inv_sd, head), onnx_backend.Session),
             "imu-activity.tflite": (imu_tflite(mu.astype(np.float32), inv_sd, head), tflite_backend.Session)}
    accuracy = {name: file_accuracy(data, cls, Xte, yte, expected) for name, (data, cls) in files.items()}
    for name, (data, _) in files.items():
        (MODELS / name).write_bytes(data)
    entries.append(dict(
        name="imu-activity", files=list(files), classes=classes,
        input=dict(name="window", shape=[1, WINDOW, len(CHANNELS)], layout="time-major: 32 consecutive samples x 6 channels",
                   channels=CHANNELS, sample_rate_hz=10, units="raw sensor units as recorded (accelerometer, gyroscope)"),
        normalisation="none outside the model: the backbone standardises its 24 features with training-set constants",
        backbone="per-channel mean, std, min, max over the window (24 features), standardised; frozen",
        head="dense 24-32 relu, dense 32-4, softmax (trainable)",
        made_by="tools/make_models.py: BasicMotions (aeon) windows of 32, hop 8; head trained by edgefdfa BP, Adam lr 1e-3, 60 passes, seed 0",
        data=dict(train_windows=len(Xtr), test_windows=len(Xte)),
        test_accuracy=accuracy))

    ds = load("digits")
    digits = train_head(ds.X_train, ds.y_train, [64, 32, 10], epochs=20)
    head = head_layers(digits)
    expected = numpy_head(digits, ds.X_test)
    files = {"digits.onnx": (onnx_format.dense_model(head, softmax=True), onnx_backend.Session),
             "digits.tflite": (tflite_format.dense_model(head, softmax=True), tflite_backend.Session)}
    accuracy = {name: file_accuracy(data, cls, ds.X_test, ds.y_test, expected) for name, (data, cls) in files.items()}
    for name, (data, _) in files.items():
        (MODELS / name).write_bytes(data)
    entries.append(dict(
        name="digits", files=list(files), classes=list(ds.classes),
        input=dict(shape=[1, 64], layout="8x8 image, row-major"), normalisation="pixels 0..16 divided by 16",
        backbone="none: every layer is dense, so the default head is the whole model (load(..., head=1) keeps layer 0 frozen)",
        head="dense 64-32 relu, dense 32-10, softmax",
        made_by="tools/make_models.py: scikit-learn digits; trained by edgefdfa BP, Adam lr 1e-3, 20 passes, seed 0",
        data=dict(train=len(ds.X_train), test=len(ds.X_test)),
        test_accuracy=accuracy))

    (MODELS / "manifest.json").write_text(json.dumps(dict(models=entries), indent=1) + "\n")
    for e in entries:
        print(f"{e['name']}: {', '.join(e['files'])}; test accuracy {e['test_accuracy']}")


if __name__ == "__main__":
    main()
