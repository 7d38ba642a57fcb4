"""The zoo of model files this project did not write (tests/zoo, made by tools/make_zoo.py with
Keras/TensorFlow, PyTorch and onnxruntime's quantizer, and files from public wheels), each end to end
as a user runs it: load -> the same outputs as the bare interpreter -> learn shifted labels from the
stream -> export in the file's own form -> the exported file runs in its interpreter (and, for
.tflite, in TensorFlow Lite for Microcontrollers) and agrees with the runtime's float head."""

import sys

import numpy as np
import pytest

import edgefdfa
from edgefdfa.backends import onnx as onnx_backend
from edgefdfa.backends import tflite as tflite_backend
from edgefdfa.datasets import load
from edgefdfa.export import export
from edgefdfa.formats import onnx as onnx_format
from edgefdfa.formats import tflite as tflite_format
from zoo_files import MANIFEST, ZOO, file_of  # tests/backends is on sys.path (pytest's prepend mode)

ENTRIES = MANIFEST["files"]
INPUTS = np.load(ZOO / "inputs.npz")
SESSIONS = {"onnx": onnx_backend.Session, "tflite": tflite_backend.Session}
FORMATS = {"onnx": onnx_format, "tflite": tflite_format}
LOSS = {"ce": "ce", "mse": "mse", "bce": "mse"}  # a sigmoid output learns as regression on 0/1 targets
CALIBRATION = 200  # stream samples seen before the export (the README says how many calibration needs)


def stream(key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Real inputs and labels in the layout the file takes, shuffled once, from the shipped data."""
    if key.startswith("digits"):
        digits = load("digits")
        X, y = digits.X_train, digits.y_train
        X = {"digits_flat": X, "digits_hwc": X.reshape(-1, 8, 8, 1), "digits_chw": X.reshape(-1, 1, 8, 8)}[key]
    elif key == "imu_window":
        sys.path.insert(0, str(ZOO.parents[1] / "tools"))
        try:
            from make_models import held_out
        finally:
            sys.path.pop(0)
        X, y = held_out("imu-activity")
    elif key == "sine_x":  # the sine model's own task, shifted: 0.5 sin(x) + 0.2
        X = np.random.default_rng(0).uniform(0, 2 * np.pi, (800, 1))
        return X.astype(np.float32), (0.5 * np.sin(X) + 0.2).astype(np.float32)
    else:
        return None  # no audio data set ships for the wake-word model's features
    order = np.random.default_rng(0).permutation(len(X))
    return X[order].astype(np.float32), y[order]


def real_outputs(entry: dict, values: np.ndarray) -> np.ndarray:
    """The recorded reference outputs as real values (an int8 output dequantized)."""
    scale, zero_point = entry["output"].get("quantization", (0.0, 0))
    return (values - zero_point) * scale if entry["output"]["dtype"] in ("int8", "uint8") and scale else values


def micro_runs(data: bytes) -> bool:
    """Whether TensorFlow Lite for Microcontrollers runs a file at all: it has no dynamic-range (hybrid)
    kernels and allocates no tensor of a dynamic shape, so some source files are not for it."""
    micro = pytest.importorskip("tflite_micro", reason="pip install the test extra (tflite-micro)").runtime
    try:
        micro.Interpreter.from_bytes(data, arena_size=256 * 1024)
    except RuntimeError:
        return False
    return True


def micro_outputs(data: bytes, X: np.ndarray) -> np.ndarray:
    """The file's outputs in TensorFlow Lite for Microcontrollers, real values (int8 I/O (de)quantized)."""
    micro = pytest.importorskip("tflite_micro", reason="pip install the test extra (tflite-micro)").runtime
    interpreter = micro.Interpreter.from_bytes(data, arena_size=256 * 1024)
    into, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    outputs = []
    for x in X:  # one sample per invoke
        x = x[None]
        if np.issubdtype(into["dtype"], np.integer):
            q = into["quantization_parameters"]
            x = np.clip(np.round(x / q["scales"][0]) + q["zero_points"][0], -128, 127)
        interpreter.set_input(x.astype(into["dtype"]), 0)
        interpreter.invoke()
        y = interpreter.get_output(0).reshape(-1).astype(np.float32)
        if np.issubdtype(out["dtype"], np.integer):
            q = out["quantization_parameters"]
            y = (y - q["zero_points"][0]) * q["scales"][0]
        outputs.append(y)
    return np.array(outputs)


@pytest.fixture(params=ENTRIES, ids=lambda e: e["file"])
def entry(request):
    """A zoo entry whose file the installed interpreter runs as it is (tflite-runtime 2.14 predates
    the operator versions TensorFlow 2.21's converter writes for dynamic-range layers)."""
    e = request.param
    if e["format"] == "tflite" and tflite_backend.NAME is None:
        pytest.skip("no TFLite interpreter installed")
    try:
        SESSIONS[e["format"]](FORMATS[e["format"]].read(file_of(e))[0], name=e["file"])
    except edgefdfa.BadModelError as exc:
        if "Didn't find op" not in str(exc):
            raise
        pytest.skip(f"{tflite_backend.NAME} cannot run the file itself: {str(exc).splitlines()[0]}")
    return e


def test_loads_and_matches_the_bare_interpreter(entry):
    model = edgefdfa.load(file_of(entry), loss=LOSS[entry["head"]["loss"]])
    X = INPUTS[entry["data"]["inputs_key"]]
    if np.issubdtype(X.dtype, np.integer):  # int8 features recorded as int8: the real values they stand for
        scale, zero_point = entry["input"]["quantization"]
        X = (X.astype(np.float32) - zero_point) * np.float32(scale)
    got = np.array([model.output_one(x) for x in X])
    ref = real_outputs(entry, np.array(entry["reference_outputs"]["values"], np.float32)).reshape(got.shape)
    forms = {layer.form for layer in model.split.head}
    if forms <= {"float32", "float16"}:
        assert np.abs(got - ref).max() < 1e-4
    else:  # the runtime's head is the dequantized float head: quantization error, same decisions
        assert np.abs(got - ref).max() < 0.02 * np.abs(ref).max() + 0.05
        if got.shape[1] > 1:
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 7 / 8


def test_learns_and_exports_in_its_own_form(entry, tmp_path):
    data = stream(entry["data"]["inputs_key"])
    if data is None:
        pytest.skip(f"no shipped data for {entry['data']['inputs_key']}")
    path = file_of(entry)
    loss = LOSS[entry["head"]["loss"]]
    model = edgefdfa.load(path, loss=loss, lr=0.02)
    X, y = data
    K = model.learner.n_outputs
    if y.dtype.kind == "f":
        targets = y
    else:  # a shifted task: the next class, or its value scaled to [0, 1]
        targets = (y + 1) % K if loss == "ce" else (((y + 1) % 10) / 9.0).reshape(-1, 1).astype(np.float32)
    n = min(500, len(X) // 2)  # learn on n, judge on up to 300 others
    m = min(300, len(X) - n)
    for x, t in zip(X[:n], targets[:n]):  # the online loop: observe (the prediction), then learn
        _, features = model.observe(x)
        model.learner.learn_one(features, t)
    held = X[n:n + m]
    runtime = np.array([model.output_one(x) for x in held])
    if loss == "ce":
        assert (runtime.argmax(1) == targets[n:n + m]).mean() > 0.6  # it learned the shifted labels
    out = tmp_path / entry["file"]
    export(model, out, entry["format"])
    fmt = FORMATS[entry["format"]]
    before = fmt.split(fmt.read(path)[0], None, path.name).head
    after = fmt.split(fmt.read(out)[0], None, out.name).head
    assert [layer.form for layer in after] == [layer.form for layer in before]  # its own form
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    original = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    assert size < 1.2 * original + 4096
    session = SESSIONS[entry["format"]](fmt.read(out)[0])  # dequantizes an int8 output
    exported = np.array([session.run(x[None]).reshape(-1) for x in held])
    if {layer.form for layer in after} <= {"float32"}:
        assert np.abs(exported - runtime).max() < 1e-4
    elif K > 1:
        assert (exported.argmax(1) == runtime.argmax(1)).mean() >= 0.95
    else:
        assert np.abs(exported - runtime).max() < 0.1 * (np.abs(runtime).max() + 1e-3)
    if entry["format"] == "tflite" and micro_runs(path.read_bytes()):  # as firmware would run it
        outputs = micro_outputs(out.read_bytes(), held[:60])
        if K > 1:
            assert (outputs.argmax(1) == exported[:60].argmax(1)).mean() >= 0.95
        else:
            assert np.abs(outputs - exported[:60]).max() < 0.05 * (np.abs(exported).max() + 1e-3)
