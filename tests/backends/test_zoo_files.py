"""The zoo of third-party model files (tests/zoo, made by tools/make_zoo.py): every file the manifest lists is
there, runs in its bare interpreter (LiteRT / onnxruntime, external data read from beside the file) and
reproduces its recorded outputs on the shipped inputs; each is the form it claims (int8 files hold int8
tensors, float16 files dequantize float16 weights, ...), and its head as described matches its dense weights.
No TensorFlow or PyTorch is needed: the files and their inputs are shipped."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefdfa.formats.tflite import schema  # the flatbuffer schema: reads a file's ops and tensors as stored
from zoo_files import MANIFEST, ZOO, file_of  # tests/backends is on sys.path (pytest's prepend mode)

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT runs the zoo's .tflite files")
ort = pytest.importorskip("onnxruntime")

INPUTS = dict(np.load(ZOO / MANIFEST["inputs"]))
DENSE_ONNX = {"Gemm", "MatMul", "QGemm", "QLinearMatMul", "MatMulInteger"}
ONNX_FILES = [e for e in MANIFEST["files"] if e["format"] == "onnx"]
CLASSIFIERS = [e for e in MANIFEST["files"] if e["head"]["loss"] == "ce" and e["data"]["inputs_key"] != "wakeword_features"]


@pytest.fixture(params=MANIFEST["files"], ids=lambda e: e["file"])
def entry(request):
    return request.param


def interpreter(path: Path):
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def as_input(x: np.ndarray, dtype, quantization) -> np.ndarray:
    """A shipped float input as an integer input tensor takes it: round(x / scale) + zero point, clipped."""
    if x.dtype == dtype:
        return x
    scale, zero = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def run(path: Path, X: np.ndarray) -> np.ndarray:
    """Each input in turn through one interpreter (stateful files carry their state from one to the next)."""
    if path.suffix == ".tflite":
        it = interpreter(path)
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        rows = []
        for x in X:
            it.set_tensor(inp["index"], as_input(x[None], inp["dtype"], inp["quantization"]))
            it.invoke()
            rows.append(it.get_tensor(out["index"]).ravel().copy())
        return np.array(rows)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.array([session.run(None, {name: x[None]})[0].ravel() for x in X])


def test_file_reproduces_its_reference_outputs(entry):
    path = file_of(entry)
    assert path.exists(), path
    got = run(path, INPUTS[entry["data"]["inputs_key"]])
    ref = np.array(entry["reference_outputs"]["values"], dtype=entry["reference_outputs"]["dtype"])
    assert got.dtype == ref.dtype and got.shape == ref.shape
    if np.issubdtype(ref.dtype, np.integer):  # integer kernels are exact on this machine kind
        assert np.array_equal(got, ref), np.abs(got.astype(int) - ref.astype(int)).max()
    else:
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-6), np.abs(got - ref).max()


@pytest.mark.parametrize("entry", CLASSIFIERS, ids=lambda e: e["file"])
def test_classifier_outputs_mean_something(entry):
    """The files were trained on the shipped data: most of the 8 reference inputs get their true class."""
    labels = INPUTS[entry["data"]["inputs_key"].split("_")[0] + "_labels"]
    ref = np.array(entry["reference_outputs"]["values"])
    assert np.mean(ref.argmax(1) == labels) >= 0.75


# --- forms: what the file holds, read from the file itself ---

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def tflite_view(path: Path):
    """The file's own graph, read from its flatbuffer: (interpreter, tensors by index with numpy dtype and
    shape, ops with names, each FULLY_CONNECTED with its weight tensor as stored: through a DEQUANTIZE if any)."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    graph = model.subgraphs[0]
    dtype = lambda t: np.dtype(TYPE_NAMES[t]) if TYPE_NAMES[t] in np.sctypeDict else TYPE_NAMES[t]  # noqa: E731
    tensors = {i: dict(dtype=dtype(t.type), shape=np.asarray(t.shape)) for i, t in enumerate(graph.tensors)}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    ops = [dict(op_name=OP_NAMES[codes[op.opcodeIndex]], inputs=list(op.inputs), outputs=list(op.outputs))
           for op in graph.operators]
    producer = {o: op for op in ops for o in op["outputs"]}

    def stored(i):
        op = producer.get(i)
        return tensors[op["inputs"][0]] if op is not None and op["op_name"] == "DEQUANTIZE" else tensors[i]
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    return interpreter(path), tensors, ops, [(op, stored(op["inputs"][1])) for op in fcs]


def check_tflite_form(path: Path, form: str) -> None:
    it, tensors, ops, dense = tflite_view(path)
    names = {op["op_name"] for op in ops}
    io = [d["dtype"] for d in it.get_input_details() + it.get_output_details()]
    weight = [w["dtype"] for _, w in dense]
    fc_out = [tensors[op["outputs"][0]]["dtype"] for op, _ in dense]
    assert dense, "no FULLY_CONNECTED"
    if form == "int8-io":
        assert all(d in (np.int8, np.uint8) for d in io), io
    else:
        assert all(d == np.float32 for d in io), io
    if form == "float32":
        assert all(t["dtype"] not in (np.int8, np.float16) for t in tensors.values())
    elif form == "float16":
        assert "DEQUANTIZE" in names and all(w == np.float16 for w in weight), weight
        assert all(d == np.float32 for d in fc_out)
    elif form == "dynamic":  # hybrid kernels: int8 weights, float activations, no QUANTIZE
        assert np.int8 in weight and all(d == np.float32 for d in fc_out) and "QUANTIZE" not in names, weight
    elif form in ("int8", "int8-io"):
        assert all(w == np.int8 for w in weight) and all(d == np.int8 for d in fc_out), (weight, fc_out)
        biases = [tensors[op["inputs"][2]]["dtype"] for op, _ in dense if len(op["inputs"]) > 2 and op["inputs"][2] >= 0]
        assert all(b == np.int32 for b in biases), biases
        if form == "int8":
            assert {"QUANTIZE", "DEQUANTIZE"} <= names
    else:
        raise AssertionError(f"unknown tflite form {form!r}")


def onnx_view(path: Path):
    """(nodes, initializer dtypes by name, producing node by output name) without reading external data."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name: onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return model, inits, producer


def check_onnx_form(path: Path, form: str) -> None:
    model, inits, producer = onnx_view(path)
    ops = {n.op_type for n in model.graph.node}
    dense = [n for n in model.graph.node if n.op_type in DENSE_ONNX]
    assert dense, "no Gemm/MatMul"
    weight_of = {"Gemm": 1, "MatMul": 1, "QGemm": 3, "QLinearMatMul": 3, "MatMulInteger": 1}
    if form == "float32":
        assert not ops & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
        assert all(np.dtype(d) in (np.float32, np.int64) for d in inits.values()), inits
    elif form == "qdq":  # float Gemm/MatMul whose weight is DequantizeLinear(int8 initializer)
        for n in dense:
            dq = producer[n.input[1]]
            assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]] == np.int8, n.name
        assert "QuantizeLinear" in ops
    elif form in ("qoperator", "onnx-dynamic"):
        kinds = {"qoperator": {"QGemm", "QLinearMatMul"}, "onnx-dynamic": {"MatMulInteger"}}[form]
        assert all(n.op_type in kinds for n in dense), [n.op_type for n in dense]
        assert all(inits[n.input[weight_of[n.op_type]]] == np.int8 for n in dense)
        if form == "onnx-dynamic":
            assert "DynamicQuantizeLinear" in ops
    else:
        raise AssertionError(f"unknown onnx form {form!r}")


def test_file_is_the_form_it_claims(entry):
    path = file_of(entry)
    (check_tflite_form if path.suffix == ".tflite" else check_onnx_form)(path, entry["form"])


@pytest.mark.parametrize("entry", ONNX_FILES, ids=lambda e: e["file"])
def test_external_data_lies_beside_the_file(entry):
    path = file_of(entry)
    model = onnx.load(str(path), load_external_data=False)
    external = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    assert sorted(external) == entry["external_data"]
    for name in external:
        assert (path.parent / name).is_file(), name
    if "default export" in entry["made_by"].get("tool", ""):
        assert external, "torch's default export was recorded as writing external data"


def dense_shapes(path: Path) -> list[tuple[int, int]]:
    """Each dense layer's (smaller, larger) weight dimensions, in graph order."""
    if path.suffix == ".tflite":
        return [tuple(sorted(w["shape"].tolist())) for _, w in tflite_view(path)[3]]
    model, inits, producer = onnx_view(path)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    shapes = []
    for n in model.graph.node:
        if n.op_type in DENSE_ONNX:
            w = n.input[{"QGemm": 3, "QLinearMatMul": 3}.get(n.op_type, 1)]
            if w not in dims:  # QDQ: the weight comes through a DequantizeLinear
                w = producer[w].input[0]
            shapes.append(tuple(sorted(dims[w])))
    return shapes


def test_head_described_matches_the_file(entry):
    """The manifest's 'dense A-B' layers, as a person reads them, are the file's dense weights."""
    described = [tuple(sorted(map(int, m))) for m in re.findall(r"dense (\d+)-(\d+)", entry["head"]["layers"])]
    assert described and dense_shapes(file_of(entry))[-len(described):] == described


def test_shipped_int8_imu_model_is_full_integer_and_classifies():
    """models/imu-activity-int8.tflite (made by make_zoo.py): int8 inside, float I/O, and it agrees with the
    shipped float file on the reference windows, which it mostly classifies right."""
    models = ZOO.parents[1] / "models"
    path = models / MANIFEST["models_entry"]["files"][0]
    check_tflite_form(path, "int8")
    X = INPUTS["imu_window"]
    q, f = run(path, X), run(models / "imu-activity.tflite", X)
    assert np.mean(q.argmax(1) == INPUTS["imu_labels"]) >= 0.75
    assert np.mean(q.argmax(1) == f.argmax(1)) >= 0.75
