"""The ONNX format and the onnxruntime backend, checked against onnxruntime on real files: the split
reproduces the file, a written head reproduces the engine, and bad files fail with a named cause."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefdfa import BadModelError, ConfigError
from edgefdfa.backends.onnx import Session
from edgefdfa.datasets import load
from edgefdfa.formats import onnx as fmt
from head_reference import head_forward  # tests/backends is on sys.path (pytest's prepend mode)

X_DIGITS = load("digits").X_test  # (n, 64) real inputs
ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def numpy_head(split, x, head=None):
    """The reference: the split's head (or `head`'s (W, b)) on x, in float64 NumPy."""
    weights = head if head is not None else [(layer.W, layer.b) for layer in split.head]
    return head_forward([(W, b, layer.activation) for (W, b), layer in zip(weights, split.head)], x, split.softmax)


def split_outputs(split, x):
    """Backbone in onnxruntime, then the head in NumPy."""
    features = x if split.backbone is None else Session(split.backbone).run(x)
    return numpy_head(split, features)


def mlp_layers(seed=0, bias=True):
    """64 -> 24 -> 20 -> 16 -> 10 with every activation the head supports."""
    rng = np.random.default_rng(seed)
    sizes, acts = [64, 24, 20, 16, 10], ["relu", "tanh", "sigmoid", "identity"]
    layers = [(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32),
               rng.normal(0, 0.5, n_out).astype(np.float32), act) for n_in, n_out, act in zip(sizes, sizes[1:], acts)]
    return layers if bias else [(W, None, act) for W, _, act in layers]


def edited(data, edit):
    """The model with `edit(model)` applied to its proto."""
    model = onnx.load_model_from_string(data)
    edit(model)
    return model.SerializeToString()


def biases_to(shape_of):
    def edit(model):
        for t in model.graph.initializer:
            if t.name.endswith(".bias"):
                b = numpy_helper.to_array(t)
                t.CopyFrom(numpy_helper.from_array(shape_of(b), t.name))
    return edit


def weights_in_constant_nodes(model):
    nodes = [helper.make_node("Constant", [], [t.name], name=f"{t.name}.const", value=t)
             for t in model.graph.initializer]
    nodes += [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node]
    del model.graph.initializer[:], model.graph.node[:]
    model.graph.node.extend(nodes)


def bias_on_the_left(model):
    for node in model.graph.node:
        if node.op_type == "Add":
            node.input[0], node.input[1] = node.input[1], node.input[0]


MLP_VARIANTS = {
    "gemm": lambda s: fmt.dense_model(mlp_layers(), s),
    "gemm_transB0": lambda s: fmt.dense_model(mlp_layers(), s, gemm_attrs={"transB": 0}),
    "gemm_alpha_beta": lambda s: fmt.dense_model(mlp_layers(), s, gemm_attrs={"alpha": 0.37, "beta": 2.5, "transB": 0}),
    "gemm_alpha_transB1": lambda s: fmt.dense_model(mlp_layers(), s, gemm_attrs={"alpha": 1.7, "beta": 0.3}),
    "gemm_2d_bias": lambda s: edited(fmt.dense_model(mlp_layers(), s), biases_to(lambda b: b[None, :])),
    "gemm_scalar_bias": lambda s: edited(fmt.dense_model(mlp_layers(), s), biases_to(lambda b: b[:1].reshape(()))),
    "gemm_no_bias": lambda s: fmt.dense_model(mlp_layers(bias=False), s),
    "gemm_constant_nodes": lambda s: edited(fmt.dense_model(mlp_layers(), s), weights_in_constant_nodes),
    "matmul_add": lambda s: fmt.dense_model(mlp_layers(), s, use_gemm=False),
    "matmul_add_bias_left": lambda s: edited(fmt.dense_model(mlp_layers(), s, use_gemm=False), bias_on_the_left),
    "matmul": lambda s: fmt.dense_model(mlp_layers(bias=False), s, use_gemm=False),
}


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("variant", MLP_VARIANTS)
def test_mlp_split_reproduces_onnxruntime(variant, softmax):
    data = MLP_VARIANTS[variant](softmax)
    split = fmt.split(data, None, "mlp.onnx")
    assert split.backbone is None and split.softmax == softmax
    assert [layer.activation for layer in split.head] == ["relu", "tanh", "sigmoid", "identity"]
    assert all(layer.W.dtype == layer.b.dtype == np.float32 for layer in split.head)
    for layer, (W, _, _) in zip(split.head, mlp_layers()):
        assert np.allclose(layer.W, W, rtol=1e-5, atol=1e-6)  # the engine's (n_out, n_in), whatever the file's layout
    assert split.input.shape == (None, 64) and split.head_input.name == split.input.name
    assert np.abs(split_outputs(split, X_DIGITS) - Session(data).run(X_DIGITS)).max() < 1e-5


def conv_model() -> bytes:
    """(batch, 1, 8, 8) -> Conv -> Relu -> Flatten -> Gemm -> Relu -> Gemm -> Softmax."""
    rng = np.random.default_rng(1)
    weights = {"conv.w": rng.normal(0, 0.5, (4, 1, 3, 3)), "conv.b": rng.normal(0, 0.1, 4),
               "fc0.w": rng.normal(0, 0.1, (16, 256)), "fc0.b": rng.normal(0, 0.1, 16),
               "fc1.w": rng.normal(0, 0.3, (10, 16)), "fc1.b": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="conv_relu"),
             helper.make_node("Flatten", ["r"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc0.w", "fc0.b"], ["h"], name="fc0", transB=1),
             helper.make_node("Relu", ["h"], ["hr"], name="fc0_relu"),
             helper.make_node("Gemm", ["hr", "fc1.w", "fc1.b"], ["logits"], name="fc1", transB=1),
             helper.make_node("Softmax", ["logits"], ["p"], name="softmax", axis=-1)]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


IMAGES = X_DIGITS.reshape(-1, 1, 8, 8)


@pytest.mark.parametrize("head, n_in", [(None, 256), (1, 16), (2, 256)])
def test_conv_backbone_and_head_reproduce_the_file(head, n_in):
    data = conv_model()
    split = fmt.split(data, head, "cnn.onnx")
    assert len(split.head) == (head or 2) and split.head[0].W.shape[1] == n_in and split.softmax
    assert split.head_input.shape == (None, n_in)
    backbone = Session(split.backbone)
    assert backbone.input.shape == (None, 1, 8, 8) and backbone.output.name == split.head_input.name
    assert np.abs(split_outputs(split, IMAGES) - Session(data).run(IMAGES)).max() < 1e-5


def test_head_longer_than_the_trailing_run_names_the_op_that_stops_it():
    with pytest.raises(BadModelError, match=r"cnn\.onnx: head=3 .* has 2: node 'flatten' \(#2, Flatten\) stops it"):
        fmt.split(conv_model(), 3, "cnn.onnx")


def new_head(split, seed=5, scale=1.0):
    rng = np.random.default_rng(seed)
    return [((layer.W + rng.normal(0, 0.1, layer.W.shape)) * scale, layer.b + rng.normal(0, 0.5, layer.b.shape))
            for layer in split.head]


def initializers(data):
    return {t.name: t.SerializeToString() for t in onnx.load_model_from_string(data).graph.initializer}


def check_written(data, split, head, x, name, untouched=()):
    """write_head's bytes pass the checker at a loadable IR/opset, store exactly the new float32
    weights, reproduce the NumPy head in onnxruntime, and leave the `untouched` initializers as they were."""
    out = fmt.write_head(data, [(W.astype(np.float32), b.astype(np.float32)) for W, b in head], name)
    model = onnx.load_model_from_string(out)
    onnx.checker.check_model(model)
    assert model.ir_version <= 10 and all(o.version <= 21 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for layer, (W, b) in zip(fmt.split(out, len(head), name).head, head):
        assert np.array_equal(layer.W, np.float32(W)) and np.array_equal(layer.b, np.float32(b))
    features = x if split.backbone is None else Session(split.backbone).run(x)
    assert np.abs(Session(out).run(x) - numpy_head(split, features, head)).max() < 1e-5
    before, after = initializers(data), initializers(out)
    assert all(after[k] == before[k] for k in untouched)
    return out


@pytest.mark.parametrize("variant", ["gemm", "gemm_alpha_beta", "gemm_2d_bias", "gemm_scalar_bias", "gemm_no_bias",
                                     "gemm_constant_nodes", "matmul_add_bias_left", "matmul"])
def test_write_head_reproduces_the_new_weights(variant):
    data = MLP_VARIANTS[variant](True)
    split = fmt.split(data, None, "mlp.onnx")
    check_written(data, split, new_head(split), X_DIGITS, "mlp.onnx")


def test_write_head_of_part_of_the_run_keeps_the_rest():
    data = conv_model()
    split = fmt.split(data, 1, "cnn.onnx")
    backbone = ("conv.w", "conv.b", "fc0.w", "fc0.b")
    out = check_written(data, split, new_head(split), IMAGES, "cnn.onnx", untouched=backbone)
    assert initializers(out)["fc1.w"] != initializers(data)["fc1.w"]


def test_write_head_caps_the_ir_version_and_keeps_the_opset():
    data = edited(fmt.dense_model(mlp_layers(), True), lambda m: setattr(m, "ir_version", 11))
    split = fmt.split(data, None, "mlp.onnx")
    model = onnx.load_model_from_string(fmt.write_head(data, [(l.W, l.b) for l in split.head], "mlp.onnx"))
    assert model.ir_version == 10 and [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_write_head_rejects_weights_of_the_wrong_shape():
    data = MLP_VARIANTS["gemm"](True)
    split = fmt.split(data, 1, "mlp.onnx")
    with pytest.raises(BadModelError, match=r"node 'fc3' \(#\d+, Gemm\) holds W \(10, 16\)"):
        fmt.write_head(data, [(split.head[0].W.T, split.head[0].b)], "mlp.onnx")


def shared_weight_model() -> bytes:
    """Two Gemm layers tied to one weight: writing one must not silently change the other."""
    W = np.eye(8, dtype=np.float32)
    nodes = [helper.make_node("Gemm", ["x", "tied", "b0"], ["h"], name="fc0", transB=1),
             helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("Gemm", ["hr", "tied", "b1"], ["y"], name="fc1", transB=1)]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(W, "tied"),
                               numpy_helper.from_array(np.zeros(8, np.float32), "b0"),
                               numpy_helper.from_array(np.ones(8, np.float32), "b1")])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_weight_shared_with_another_node_is_refused():
    with pytest.raises(BadModelError, match=r"node 'fc1' \(#2, Gemm\) .* weight 'tied' is shared with node 'fc0'"):
        fmt.split(shared_weight_model(), None, "tied.onnx")
    with pytest.raises(BadModelError, match="shared with node 'fc0'"):
        fmt.write_head(shared_weight_model(), [(np.eye(8), np.zeros(8))], "tied.onnx")


def mlp_with(op: str, at_end: bool) -> bytes:
    """Gemm -> op -> Gemm, or Gemm -> op at the end (op: one the head cannot hold, or BatchNormalization)."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), f"w{k}") for k in range(2)]
    if op == "BatchNormalization":
        inits += [numpy_helper.from_array(np.full(8, v, np.float32), n) for n, v in
                  [("scale", 1.0), ("shift", 0.0), ("mean", 0.0), ("var", 1.0)]]
    extra = ["scale", "shift", "mean", "var"] if op == "BatchNormalization" else []
    nodes = [helper.make_node("Gemm", ["x", "w0"], ["h"], name="fc0"),
             helper.make_node(op, ["h", *extra], ["z"], name="bn3" if extra else op.lower())]
    if not at_end:
        nodes.append(helper.make_node("Gemm", ["z", "w1"], ["y"], name="fc1"))
    out = "z" if at_end else "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 8])],
                              [i for i in inits if i.name != "w1" or not at_end])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def single_node_model(op: str, weight_as_input: bool = False) -> bytes:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4]))
    node = helper.make_node(op, ["x", "w"] if weight_as_input else ["x"], ["y"], name="only")
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def integer_matmul_model() -> bytes:
    """A lone MatMulInteger (int32 out, no scales): a quantized op that is no dense layer by itself."""
    q = numpy_helper.from_array(np.ones((4, 4), np.int8), "wq")
    nodes = [helper.make_node("MatMulInteger", ["x", "wq"], ["y"], name="mmi")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4])], [q])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def softmax_over_the_batch(model):
    (axis,) = model.graph.node[-1].attribute
    axis.i = 0


GOOD = fmt.dense_model(mlp_layers(), True)
BAD_FILES = [
    ("truncated", GOOD[: len(GOOD) // 2], r"bad\.onnx is not a valid ONNX model"),
    ("random", np.random.default_rng(3).bytes(300), r"bad\.onnx is not a valid ONNX model"),
    ("empty", b"", r"bad\.onnx is not a valid ONNX model"),
    ("abs_at_end", mlp_with("Abs", True),
     r"bad\.onnx: node 'abs' \(#1, Abs\) cannot be part of a trainable head; the head holds Gemm"),
    ("erf_at_end", mlp_with("Erf", True), r"node 'erf' \(#1, Erf\) cannot be part of a trainable head"),
    ("nothing_trainable", single_node_model("Relu"), r"bad\.onnx: nothing trainable: .*model input 'x'"),
    ("weight_is_an_input", single_node_model("MatMul", True),
     r"node 'only' \(#0, MatMul\) cannot .*: its weight 'w' is a model input"),
    ("integer_matmul", integer_matmul_model(),
     r"node 'mmi' \(#0, MatMulInteger\) cannot .*: this quantized op is not one edgefdfa reads in a head"),
    ("softmax_over_the_batch", edited(GOOD, softmax_over_the_batch),
     r"node 'softmax' \(#\d+, Softmax\) cannot .*: it takes the softmax over axis 0"),
]


@pytest.mark.parametrize("data, message", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_files_fail_with_a_named_cause(data, message):
    with pytest.raises(BadModelError, match=message):
        fmt.split(data, None, "bad.onnx")


def test_an_op_between_dense_layers_stops_the_run():
    for op, where in [("Abs", r"node 'abs' \(#1, Abs\)"), ("Erf", r"node 'erf' \(#1, Erf\)")]:
        data = mlp_with(op, at_end=False)
        assert len(fmt.split(data, None, "m.onnx").head) == 1
        with pytest.raises(BadModelError, match=rf"head=2 asks .* has 1: {where} stops it"):
            fmt.split(data, 2, "m.onnx")


def test_describe_lists_inputs_outputs_and_ops():
    info = fmt.describe(conv_model(), "cnn.onnx")
    assert info.format == "onnx" and info.inputs[0].shape == (None, 1, 8, 8) and info.outputs[0].name == "p"
    assert info.operators == ["Conv", "Relu", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]
    assert info.details["ir_version"] == 9 and info.details["opset"] == {"ai.onnx": 17}


def test_session_declares_runs_and_checks_shapes():
    session = Session(GOOD, threads=2, name="mlp.onnx")
    assert (session.input.shape, session.input.dtype, session.output.shape) == ((None, 64), "float32", (None, 10))
    y = session.run(X_DIGITS[:3].astype(np.float64))  # cast to the input's dtype
    assert y.dtype == np.float32 and y.shape == (3, 10) and np.allclose(y.sum(axis=1), 1, atol=1e-6)
    with pytest.raises(BadModelError, match=r"mlp\.onnx: input 'input' takes shape \(any, 64\), given \(3, 63\)"):
        session.run(X_DIGITS[:3, :63])
    with pytest.raises(BadModelError, match=r"takes shape \(any, 64\), given \(64,\)"):
        session.run(X_DIGITS[0])


def test_session_sets_threads_explicitly():
    with pytest.raises(ConfigError, match="threads must be a positive int, got 0"):
        Session(GOOD, threads=0)


def test_session_refuses_a_file_onnxruntime_cannot_load():
    with pytest.raises(BadModelError, match=r"broken\.onnx: onnxruntime cannot load it: .+"):
        Session(GOOD[:100], name="broken.onnx")


# --- models the project did not write -----------------------------------------------------------------


def package_file(*parts: str) -> bytes:
    path = os.path.join(ONNX_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"the installed onnx package (version {onnx.__version__}) does not ship {'/'.join(parts)}")
    with open(path, "rb") as f:
        return f.read()


def test_third_party_shufflenet_splits_and_takes_a_new_head():
    """The model-zoo ShuffleNet (converted from Caffe2; opset 9, IR 3) as onnx ships it among its
    "light" test models, every weight stored as a ConstantOfShape(0.02) node to keep the file small:
    a real grouped-conv backbone, then Reshape, Gemm 544 -> 1000 (transB=1) and Softmax. Its outputs
    are probabilities and its features lie in about [0.1, 13], so an absolute 1e-5 is meaningful;
    the new head is scaled to keep the softmax far from one-hot."""
    data = package_file("light", "light_shufflenet.onnx")
    split = fmt.split(data, None, "light_shufflenet.onnx")
    assert [(l.W.shape, l.activation) for l in split.head] == [((1000, 544), "identity")] and split.softmax
    assert split.input.shape == (1, 3, 224, 224) and split.head_input.shape == (1, 544)
    x = np.random.default_rng(4).random((1, 3, 224, 224), dtype=np.float32)
    assert np.abs(split_outputs(split, x) - Session(data).run(x)).max() < 1e-5
    head = new_head(split, scale=0.5)
    out = check_written(data, split, head, x, "light_shufflenet.onnx", untouched=initializers(data))
    probabilities = Session(out).run(x)
    assert 0.1 > probabilities.max() > 10 * probabilities.min()  # the new head separates the classes


def test_third_party_pytorch_linear_splits_and_takes_a_new_head():
    """torch.nn.Linear(10, 8) exported by PyTorch (onnx's pytorch-converted test_Linear: IR 3, opset 6,
    Gemm with transB=1 and the old broadcast attribute, initializers listed as graph inputs). onnxruntime
    no longer runs Gemm-6, so onnx's reference evaluator runs it, beside the output onnx ships with it."""
    from onnx.reference import ReferenceEvaluator

    data = package_file("pytorch-converted", "test_Linear", "model.onnx")
    x, y = (numpy_helper.to_array(onnx.load_tensor_from_string(package_file("pytorch-converted", "test_Linear",
                                                                            "test_data_set_0", f"{io}_0.pb")))
            for io in ("input", "output"))
    split = fmt.split(data, None, "test_Linear.onnx")
    assert split.backbone is None and not split.softmax and [l.W.shape for l in split.head] == [(8, 10)]
    assert np.abs(numpy_head(split, x) - y).max() < 1e-5
    head = new_head(split)
    out = fmt.write_head(data, head, "test_Linear.onnx")
    model = onnx.load_model_from_string(out)
    onnx.checker.check_model(model)
    assert model.ir_version == 3 and [o.version for o in model.opset_import] == [6]  # the file's own versions
    assert np.array_equal(fmt.split(out, 1, "test_Linear.onnx").head[0].W, head[0][0].astype(np.float32))
    assert np.abs(ReferenceEvaluator(model).run(None, {"0": x})[0] - numpy_head(split, x, head)).max() < 1e-5


def test_third_party_models_without_a_trainable_head_name_the_cause():
    squeezenet = package_file("light", "light_squeezenet.onnx")  # ends in Conv -> Relu -> GlobalAveragePool -> Softmax
    with pytest.raises(BadModelError, match=r"node 'n64' \(#103, GlobalAveragePool\) cannot be part of a trainable"):
        fmt.split(squeezenet, None, "light_squeezenet.onnx")
    no_bias = package_file("pytorch-converted", "test_Linear_no_bias", "model.onnx")  # MatMul(x, Transpose(W))
    with pytest.raises(BadModelError, match=r"its weight '2' is computed by node #0 \(Transpose\), not stored"):
        fmt.split(no_bias, None, "test_Linear_no_bias.onnx")
