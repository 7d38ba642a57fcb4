"""Quantized ONNX heads as onnxruntime.quantization writes them (static QDQ and QOperator, per tensor and
per channel, int8 and uint8, calibrated on real digits; dynamic): split reads them dequantized with their form, the
backbone hands over float32 features, and write_head puts a learned head back in the file's own form,
which onnxruntime runs in agreement with the float head."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from edgefdfa import BadModelError
from edgefdfa.backends.onnx import Session
from edgefdfa.datasets import load
from edgefdfa.formats import onnx as fmt
from edgefdfa.formats import onnx_quant
from head_reference import head_forward  # tests/backends is on sys.path (pytest's prepend mode)
from test_onnx import conv_model

DIGITS = load("digits")
ACT = {"relu": lambda z: np.maximum(z, 0), "identity": lambda z: z, "tanh": np.tanh,
       "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def ridge(H, y, n_classes, shift=0):
    """The least-squares (W, b) mapping features H to one-hot labels (y + shift) % n_classes."""
    Y = np.eye(n_classes)[(y + shift) % n_classes]
    Hb = np.c_[H, np.ones(len(H))]
    sol = np.linalg.solve(Hb.T @ Hb + 1e-2 * np.eye(Hb.shape[1]), Hb.T @ Y)
    return sol[:-1].T.astype(np.float32), sol[-1].astype(np.float32)


def trained_mlp(sizes, use_gemm):
    """A float MLP on digits: random relu layers, then a ridge-fitted output layer (a real classifier)."""
    rng = np.random.default_rng(0)
    layers, H = [], DIGITS.X_train
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        W = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
        b = rng.normal(0, .1, n_out).astype(np.float32)
        layers.append((W, b, "relu"))
        H = np.maximum(H @ W.T + b, 0)
    layers.append((*ridge(H, DIGITS.y_train, sizes[-1]), "identity"))
    return fmt.dense_model(layers, softmax=True, use_gemm=use_gemm)


def trained_cnn():
    """conv_model (Conv -> Relu -> Flatten -> Gemm -> Relu -> Gemm) with its last layer refitted."""
    data = conv_model()
    split = fmt.split(data, 1, "cnn.onnx")
    H = Session(split.backbone).run(DIGITS.X_train.reshape(-1, 1, 8, 8))
    W, b = ridge(H, DIGITS.y_train, 10)
    return fmt.write_head(data, [(W, b)], "cnn.onnx")


class Digits(CalibrationDataReader):
    """200 real training samples, one at a time, for static calibration."""

    def __init__(self, name, shape):
        self.samples = iter([{name: x.reshape(shape)} for x in DIGITS.X_train[:200]])

    def get_next(self):
        return next(self.samples, None)


FILES = {  # name: (float model, how it is quantized)
    "qdq_gemm": ("mlp_gemm", "qdq", False), "qdq_gemm_per_channel": ("mlp_gemm", "qdq", True),
    "qdq_matmul": ("mlp_matmul", "qdq", False), "qdq_matmul_per_channel": ("mlp_matmul", "qdq", True),
    "qop_gemm": ("mlp_gemm", "qop", False), "qop_gemm_per_channel": ("mlp_gemm", "qop", True),
    "qop_matmul": ("mlp_matmul", "qop", False), "qop_matmul_per_channel": ("mlp_matmul", "qop", True),
    "dynamic_gemm": ("mlp_gemm", "dynamic", False), "dynamic_matmul": ("mlp_matmul", "dynamic", False),
    "dynamic_per_channel": ("mlp_matmul", "dynamic", True),
    "dynamic_fused": ("mlp_gemm", "dynamic_fused", False),  # onnxruntime's optimizer: DynamicQuantizeMatMul
    "qdq_uint8": ("mlp_gemm", "qdq_u8", False), "qop_uint8_per_channel": ("mlp_matmul", "qop_u8", True),
    "qdq_cnn": ("cnn", "qdq", True), "qop_cnn": ("cnn", "qop", True), "dynamic_cnn": ("cnn", "dynamic", False),
    "qdq_one_layer": ("one_layer", "qdq", False), "qop_one_layer": ("one_layer", "qop", True),
    "dynamic_one_layer": ("one_layer", "dynamic", False),
}
FLOAT = {"mlp_gemm": lambda: trained_mlp([64, 32, 10], True), "mlp_matmul": lambda: trained_mlp([64, 32, 10], False),
         "one_layer": lambda: trained_mlp([64, 10], True), "cnn": trained_cnn}
FORM = {"qdq": "int8", "qop": "int8", "qdq_u8": "int8", "qop_u8": "int8", "dynamic": "dynamic",
        "dynamic_fused": "dynamic"}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """Each FILES entry made by onnxruntime.quantization, once for the module: name -> bytes."""
    folder = tmp_path_factory.mktemp("quantized")
    made = {}
    for name, (source, how, per_channel) in FILES.items():
        src = folder / f"{source}.onnx"
        if not src.exists():
            src.write_bytes(FLOAT[source]())
        out = folder / f"{name}.onnx"
        if how.startswith("dynamic"):
            quantize_dynamic(src, out, per_channel=per_channel)
            if how == "dynamic_fused":  # saved as onnxruntime optimizes it
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                options.optimized_model_filepath = str(out)
                ort.InferenceSession(out.read_bytes(), options, providers=["CPUExecutionProvider"])
                assert "DynamicQuantizeMatMul" in ops(out.read_bytes())
        else:
            shape = (1, 1, 8, 8) if source == "cnn" else (1, 64)
            types = {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QUInt8} if how.endswith("u8") else {}
            quantize_static(src, out, Digits(Session(src.read_bytes()).input.name, shape), per_channel=per_channel,
                            quant_format=QuantFormat.QDQ if how.startswith("qdq") else QuantFormat.QOperator, **types)
        made[name] = out.read_bytes()
    return made


def inputs(name):
    return DIGITS.X_test.reshape(-1, 1, 8, 8) if "cnn" in name else DIGITS.X_test


def features(split, x):
    return x if split.backbone is None else Session(split.backbone).run(x)


def float_head(split, head, x):
    """The engine's float head on x, in NumPy."""
    return head_forward([(W, b, layer.activation) for (W, b), layer in zip(head, split.head)], x, split.softmax)


def agreement(a, b):
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def ops(data):
    return [n.op_type for n in onnx.load_model_from_string(data).graph.node]


@pytest.mark.parametrize("name", FILES)
def test_split_reads_the_quantized_head_dequantized(quantized, name):
    data, (source, how, _) = quantized[name], FILES[name]
    split = fmt.split(data, None, f"{name}.onnx")
    n_layers = {"one_layer": 1, "cnn": 2}.get(source, 2)
    assert len(split.head) == n_layers and split.softmax
    assert {l.form for l in split.head} == {FORM[how]}
    assert [l.activation for l in split.head] == ["relu"] * (n_layers - 1) + ["identity"]
    assert all(l.W.dtype == l.b.dtype == np.float32 and np.isfinite(l.W).all() for l in split.head)
    x = inputs(name)
    head_in = features(split, x)
    assert head_in.dtype == np.float32 and head_in.shape == (len(x), split.head[0].W.shape[1])
    if split.backbone is not None:
        backbone = Session(split.backbone)
        assert backbone.output.dtype == "float32" and split.head_input.dtype == "float32"
        assert backbone.output.name == split.head_input.name
    # the float head on the dequantized weights is the file up to its activations' rounding
    assert agreement(float_head(split, [(l.W, l.b) for l in split.head], head_in), Session(data).run(x)) >= 0.95
    info = fmt.describe(data, f"{name}.onnx")
    assert all(line.endswith(f", {FORM[how]}") for line in info.head[:n_layers])


def test_a_quantized_backbone_hands_over_dequantized_features(quantized):
    """QOperator's conv backbone ends in an int8 tensor (QLinearConv -> Flatten): the backbone gets a
    DequantizeLinear, so the features are the float values the file's QGemm reads."""
    data = quantized["qop_cnn"]
    split = fmt.split(data, None, "qop_cnn.onnx")
    assert "QLinearConv" in ops(split.backbone) and ops(split.backbone)[-1] == "DequantizeLinear"
    assert "QGemm" not in ops(split.backbone)
    x = inputs("qop_cnn")
    assert agreement(float_head(split, [(l.W, l.b) for l in split.head], features(split, x)),
                     Session(data).run(x)) >= 0.95


def learned(split, name):
    """The head after learning: its last layer refitted to shifted labels (y + 3) % 10 on the features
    the runtime computes (backbone in onnxruntime, earlier head layers in NumPy), the rest kept."""
    x = DIGITS.X_train.reshape(-1, 1, 8, 8) if "cnn" in name else DIGITS.X_train
    H = features(split, x).astype(np.float64)
    for layer in split.head[:-1]:
        H = ACT[layer.activation](H @ layer.W.T + layer.b)
    return [(l.W, l.b) for l in split.head[:-1]] + [ridge(H, DIGITS.y_train, 10, shift=3)]


def ranges_of(split, head, x):
    """(L, 4) [min a, max a, min h, max h] of each layer on x, as the runtime computes them on a stream."""
    h, rows = features(split, x).astype(np.float64), []
    for (W, b), layer in zip(head, split.head):
        a = h @ W.T + b
        h = ACT[layer.activation](a)
        rows.append([a.min(), a.max(), h.min(), h.max()])
    return np.array(rows, np.float32)


def integer_initializers(data):
    return {t.name: (t.data_type, tuple(t.dims)) for t in onnx.load_model_from_string(data).graph.initializer}


@pytest.mark.parametrize("name", FILES)
def test_a_learned_head_is_written_back_in_the_files_own_form(quantized, name):
    data = quantized[name]
    split = fmt.split(data, None, f"{name}.onnx")
    head = learned(split, name)
    calibration = DIGITS.X_train[:300].reshape(-1, 1, 8, 8) if "cnn" in name else DIGITS.X_train[:300]
    out = fmt.write_head(data, head, f"{name}.onnx", ranges_of(split, head, calibration))
    onnx.checker.check_model(onnx.load_model_from_string(out))
    assert ops(out) == ops(data)  # the same quantized ops
    assert integer_initializers(out) == integer_initializers(data)  # every tensor keeps its type and shape
    assert 0.9 * len(data) < len(out) < 1.1 * len(data)
    x = inputs(name)
    expected = float_head(split, head, features(split, x))
    assert agreement(expected, Session(out).run(x)) >= 0.95
    assert agreement(expected, Session(data).run(x)) < 0.5  # the file really learned something new
    again = fmt.split(out, None, f"{name}.onnx")
    assert [l.form for l in again.head] == [l.form for l in split.head]
    assert [l.activation for l in again.head] == [l.activation for l in split.head]


def initializer(data, name):
    return numpy_helper.to_array(next(t for t in onnx.load_model_from_string(data).graph.initializer if t.name == name))


@pytest.mark.parametrize("name", ["qdq_gemm_per_channel", "qop_gemm_per_channel", "dynamic_per_channel"])
def test_per_channel_weights_are_symmetric_per_channel(quantized, name):
    data = quantized[name]
    split = fmt.split(data, None, f"{name}.onnx")
    head = learned(split, name)
    out = fmt.write_head(data, head, f"{name}.onnx")
    weight = next(t for t in integer_initializers(out) if t.startswith("fc1.weight") and t.endswith("quantized"))
    q = initializer(out, weight)
    stem = weight[: -len("quantized")]
    scale, zero = initializer(out, stem + "scale"), initializer(out, stem + "zero_point")
    W = head[-1][0] if q.shape == head[-1][0].shape else head[-1][0].T  # the file's layout
    axis = 0 if q.shape == head[-1][0].shape else 1
    assert scale.shape == (10,) and not zero.any()  # one scale per output channel, zero points 0
    peak = np.abs(W).max(axis=1 - axis)
    assert np.allclose(scale, peak / 127, rtol=1e-6)
    assert np.abs(q).max(axis=1 - axis).tolist() == [127] * 10  # each channel uses its whole symmetric range
    deq = q.astype(np.float32) * (scale[None, :] if axis == 1 else scale[:, None])
    assert np.abs(deq - W).max() <= scale.max() / 2 * (1 + 1e-6)


@pytest.mark.parametrize("name", ["qdq_gemm", "qdq_gemm_per_channel", "qop_gemm", "qop_gemm_per_channel"])
def test_int32_biases_are_at_input_scale_times_weight_scale(quantized, name):
    data = quantized[name]
    split = fmt.split(data, None, f"{name}.onnx")
    head = learned(split, name)
    out = fmt.write_head(data, head, f"{name}.onnx", ranges_of(split, head, DIGITS.X_train[:300]))
    bias = initializer(out, "fc1.bias_quantized")
    assert bias.dtype == np.int32
    in_scale = initializer(out, "fc0.relu_scale" if name.startswith("qdq") else "fc0_scale")  # the hidden activation
    w_scale = initializer(out, "fc1.weight_scale")
    step = in_scale * w_scale
    assert np.abs(bias * step - head[-1][1]).max() <= step.max() / 2 * (1 + 1e-5)
    if name.startswith("qdq"):  # QDQ stores the bias's scale beside it
        assert np.allclose(initializer(out, "fc1.bias_quantized_scale"), np.broadcast_to(step, (10,)).reshape(
            initializer(data, "fc1.bias_quantized_scale").shape) if step.size > 1 else step, rtol=1e-6)


@pytest.mark.parametrize("name", ["qdq_gemm", "qop_gemm", "qop_matmul"])
def test_ranges_recalibrate_activations_and_none_keeps_the_files(quantized, name):
    data = quantized[name]
    split = fmt.split(data, None, f"{name}.onnx")
    head = learned(split, name)
    hidden = "fc0.relu" if name.startswith("qdq") else "fc0"
    kept = fmt.write_head(data, head, f"{name}.onnx")
    assert initializer(kept, f"{hidden}_scale") == initializer(data, f"{hidden}_scale")
    assert initializer(kept, "fc1_scale") == initializer(data, "fc1_scale")
    r = ranges_of(split, head, DIGITS.X_train[:300])
    out = fmt.write_head(data, head, f"{name}.onnx", r)
    # the relu layer: [0, max h] over the whole int8 range, zero point at its minimum
    assert np.isclose(initializer(out, f"{hidden}_scale"), r[0, 3] / 255, rtol=1e-6)
    assert initializer(out, f"{hidden}_zero_point") == -128
    # the output layer (identity): [min a, max a], 0 exact
    scale, zero = initializer(out, "fc1_scale"), initializer(out, "fc1_zero_point")
    assert np.isclose(scale, (r[1, 1] - r[1, 0]) / 255, rtol=1e-6)
    assert abs((-128 - zero) * scale - r[1, 0]) <= scale
    assert initializer(out, f"{hidden}_scale") != initializer(data, f"{hidden}_scale")


def test_ranges_of_the_wrong_shape_or_order_are_refused(quantized):
    data = quantized["qdq_gemm"]
    split = fmt.split(data, None, "q.onnx")
    head = [(l.W, l.b) for l in split.head]
    for bad in (np.zeros((1, 4)), np.array([[0, 1, 0, 1], [2, 1, 0, 1]]), np.array([[0, 1, 0, np.nan]] * 2)):
        with pytest.raises(BadModelError, match=r"q\.onnx: ranges must be \(2, 4\) finite"):
            fmt.write_head(data, head, "q.onnx", bad)


def test_a_qdq_weight_only_file_reads_as_dynamic_range():
    """int8 weights dequantized into a float Gemm, float activations: dynamic-range quantized."""
    rng = np.random.default_rng(2)
    q, scale = rng.integers(-127, 128, (10, 64)).astype(np.int8), np.float32(0.01)
    h = onnx.helper
    nodes = [h.make_node("DequantizeLinear", ["wq", "s"], ["w"], name="dq"),
             h.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 64])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 10])],
                         [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.array(scale), "s")])
    data = h.make_model(graph, ir_version=9, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    (layer,) = fmt.split(data, None, "w.onnx").head
    assert layer.form == "dynamic" and np.array_equal(layer.W, q.astype(np.float32) * scale)
    assert np.abs(Session(data).run(DIGITS.X_test) - DIGITS.X_test @ layer.W.T).max() < 1e-5
    out = fmt.write_head(data, [(layer.W * 2, np.zeros(10, np.float32))], "w.onnx")
    assert initializer(out, "wq").dtype == np.int8
    assert np.abs(Session(out).run(DIGITS.X_test) - DIGITS.X_test @ (layer.W * 2).T).max() < 1e-4


def test_a_bias_the_integer_form_cannot_take_is_refused(quantized):
    """QLinearMatMul without a QLinearAdd has no bias; an Add after its int8 product would be wrong."""
    model = onnx.load_model_from_string(quantized["qop_matmul"])
    graph = model.graph
    add = next(n for n in graph.node if n.op_type == "QLinearAdd" and n.name.startswith("fc1"))
    for n in graph.node:  # read the product where the sum was read
        n.input[:] = [add.input[0] if t == add.output[0] else t for t in n.input]
        for k, t in enumerate(n.input):
            if t == add.input[1]:
                n.input[k] = "fc1.matmul_scale"
            if t == add.input[2]:
                n.input[k] = "fc1.matmul_zero_point"
    graph.node.remove(add)
    data = model.SerializeToString()
    split = fmt.split(data, 1, "q.onnx")
    assert not split.head[0].b.any()
    with pytest.raises(BadModelError, match=r"QLinearMatMul\) has no bias in the file, and as quantized \(int8 "
                                            r"weights, int32 bias, int8 activations\) it cannot take one"):
        fmt.write_head(data, [(split.head[0].W, np.ones(10, np.float32))], "q.onnx")
    out = fmt.write_head(data, [(split.head[0].W, np.zeros(10, np.float32))], "q.onnx")
    Session(out).run(DIGITS.X_test[:2])


def int8_io_model():
    """int8 in, int8 out: DequantizeLinear -> QDQ Gemm -> Relu folded into the output's zero point ->
    QuantizeLinear, as a file with integer I/O has it."""
    rng = np.random.default_rng(6)
    q = rng.integers(-127, 128, (16, 64)).astype(np.int8)
    init = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.float32(0.004), "ws"),
            numpy_helper.from_array(np.float32(1 / 255), "xs"), numpy_helper.from_array(np.int8(-128), "xz"),
            numpy_helper.from_array(np.float32(0.05), "ys"), numpy_helper.from_array(np.int8(-128), "yz")]
    h = onnx.helper
    nodes = [h.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"], name="dq_in"),
             h.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="dq_w"),
             h.make_node("Gemm", ["xf", "w"], ["a"], name="fc", transB=1),
             h.make_node("QuantizeLinear", ["a", "ys", "yz"], ["y"], name="q_out")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.INT8, [None, 64])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.INT8, [None, 16])], init)
    return h.make_model(graph, ir_version=9, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def test_integer_inputs_and_outputs_carry_their_quantization():
    data = int8_io_model()
    info = fmt.describe(data, "io.onnx")
    assert [(t.dtype, t.quantization) for t in info.inputs] == [("int8", (np.float32(1 / 255).item(), -128))]
    assert [(t.dtype, t.quantization) for t in info.outputs] == [("int8", (0.05000000074505806, -128))]
    assert info.head == ["node 'fc' (#2, Gemm): 64 -> 16, relu, int8"]
    split = fmt.split(data, None, "io.onnx")
    assert ops(split.backbone) == ["DequantizeLinear"] and split.head_input.dtype == "float32"
    x = (DIGITS.X_test * 255 - 128).round().astype(np.int8)
    head_in = Session(split.backbone).run(x)
    assert np.array_equal(head_in, (x.astype(np.float32) + 128) * np.float32(1 / 255))
    (layer,) = split.head
    expected = np.maximum(head_in @ layer.W.T + layer.b, 0)
    y = (Session(data).run(x) + 128) * np.float32(0.05)  # the file's int8 output, dequantized
    assert np.abs(y - np.minimum(expected, 255 * 0.05)).max() <= 0.05 / 2 + 1e-6


def test_matmul_integer_to_float_reads_and_writes_as_dynamic():
    """com.microsoft MatMulIntegerToFloat after a DynamicQuantizeLinear, as onnxruntime fuses dynamic layers."""
    rng = np.random.default_rng(8)
    W = rng.normal(0, 0.2, (10, 64)).astype(np.float32)
    q, scale, _ = onnx_quant.symmetric(W.T, np.dtype(np.int8), (), None)
    h = onnx.helper
    init = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.float32(scale), "ws"),
            numpy_helper.from_array(np.int8(0), "wz"),
            numpy_helper.from_array(rng.normal(size=10).astype(np.float32), "b")]
    nodes = [h.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
             h.make_node("MatMulIntegerToFloat", ["xq", "wq", "xs", "ws", "xz", "wz", "b"], ["y"], name="fc",
                         domain="com.microsoft")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 64])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 10])], init)
    data = h.make_model(graph, ir_version=9, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]
                        ).SerializeToString()
    (layer,) = fmt.split(data, None, "mitf.onnx").head
    assert layer.form == "dynamic" and np.array_equal(layer.W, q.T.astype(np.float32) * np.float32(scale))
    assert np.abs(Session(data).run(DIGITS.X_test) - (DIGITS.X_test @ layer.W.T + layer.b)).max() < 0.05
    new = (W[::-1].copy(), -layer.b)
    out = fmt.write_head(data, [new], "mitf.onnx")
    assert initializer(out, "wq").dtype == np.int8 and ops(out) == ops(data)
    expected = DIGITS.X_test @ new[0].T + new[1]
    assert agreement(expected, Session(out).run(DIGITS.X_test)) >= 0.95


def degenerate(shape):
    """A float file with a degenerate head: a hidden width of 1 (tanh), or one output (a regression)."""
    rng = np.random.default_rng(0)
    if shape == "width_1":
        return fmt.dense_model([(rng.normal(0, .2, (1, 64)), np.zeros(1), "tanh"),
                                (rng.normal(0, 1, (3, 1)), rng.normal(0, .1, 3), "identity")], softmax=True)
    return fmt.dense_model([(rng.normal(0, .2, (1, 64)), np.ones(1), "identity")], softmax=False)


@pytest.mark.parametrize("how", ["qdq", "qop", "dynamic"])
@pytest.mark.parametrize("shape", ["width_1", "one_output"])
def test_degenerate_quantized_heads_read_and_write_back(tmp_path, shape, how):
    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    src.write_bytes(degenerate(shape))
    if how == "dynamic":
        quantize_dynamic(src, out)
    else:
        quantize_static(src, out, Digits("input", (1, 64)),
                        quant_format=QuantFormat.QDQ if how == "qdq" else QuantFormat.QOperator)
    data = out.read_bytes()
    split = fmt.split(data, None, "q.onnx")
    expected = [("tanh", (1, 64)), ("identity", (3, 1))] if shape == "width_1" else [("identity", (1, 64))]
    assert [(l.activation, l.W.shape) for l in split.head] == expected
    assert {l.form for l in split.head} == {"dynamic" if how == "dynamic" else "int8"}
    head = [(l.W * 1.5, l.b + 0.2) for l in split.head]  # a learned head whose outputs leave the file's ranges
    x = DIGITS.X_test
    r = ranges_of(split, head, x)
    want = float_head(split, head, x)
    error = np.abs(Session(fmt.write_head(data, head, "q.onnx", r)).run(x) - want).max()
    # within a few steps of the output's quantization: probabilities (1/255), or the output's own range
    step = 1 / 255 if shape == "width_1" else (max(r[-1, 1], 0) - min(r[-1, 0], 0)) / 255
    assert error <= 3 * step
    if how != "dynamic":  # the file's own calibration saturates on the new head's outputs
        kept = np.abs(Session(fmt.write_head(data, head, "q.onnx")).run(x) - want).max()
        assert kept > error
