"""float16 ONNX heads (a float16 conversion: every weight and activation float16, with or without float32
I/O Casts; or float16 weights Cast to float32 before a float32 layer): split reads them as float32 with
form "float16", the backbone hands over float32 features, and write_head stores float16 again."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefdfa.backends.onnx import Session
from edgefdfa.datasets import load
from edgefdfa.formats import onnx as fmt
from test_onnx import conv_model, mlp_layers, new_head, numpy_head  # tests/backends is on sys.path

X = load("digits").X_test


def to_float16(data, keep_io=True):
    """The model with every float32 initializer float16 (so all its arithmetic runs in float16); its
    input and output stay float32 through Casts when keep_io, else become float16 too."""
    model = onnx.load_model_from_string(data)
    graph = model.graph
    for t in graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    del graph.value_info[:]
    x, y = graph.input[0].name, graph.output[0].name
    if keep_io:
        for node in graph.node:
            node.input[:] = [f"{x}.f16" if t == x else t for t in node.input]
            node.output[:] = [f"{y}.f16" if t == y else t for t in node.output]
        graph.node.insert(0, helper.make_node("Cast", [x], [f"{x}.f16"], name="cast_in", to=TensorProto.FLOAT16))
        graph.node.append(helper.make_node("Cast", [f"{y}.f16"], [y], name="cast_out", to=TensorProto.FLOAT))
    else:
        graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
        graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    return model.SerializeToString()


def float16_storage(data):
    """The model with float16 weights each Cast to float32 in front of its (float32) layer."""
    model = onnx.load_model_from_string(data)
    graph, casts = model.graph, []
    for t in graph.initializer:
        casts.append(helper.make_node("Cast", [f"{t.name}.f16"], [t.name], name=f"{t.name}.cast", to=TensorProto.FLOAT))
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), f"{t.name}.f16"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


MLP = fmt.dense_model(mlp_layers(), True)
FILES = {
    "gemm": lambda: to_float16(MLP), "gemm_float16_io": lambda: to_float16(MLP, keep_io=False),
    "matmul": lambda: to_float16(fmt.dense_model(mlp_layers(), True, use_gemm=False)),
    "cnn": lambda: to_float16(conv_model()), "cnn_float16_io": lambda: to_float16(conv_model(), keep_io=False),
    "storage": lambda: float16_storage(MLP),
}


def inputs(name):
    x = X.reshape(-1, 1, 8, 8) if name.startswith("cnn") else X
    return x.astype(np.float16) if name.endswith("float16_io") else x


def features(split, x):
    return x.astype(np.float32) if split.backbone is None else Session(split.backbone).run(x)


@pytest.mark.parametrize("name", FILES)
def test_float16_heads_split_as_float32_with_their_form(name):
    data = FILES[name]()
    split = fmt.split(data, None, f"{name}.onnx")
    assert {l.form for l in split.head} == {"float16"} and split.softmax
    assert all(l.W.dtype == l.b.dtype == np.float32 for l in split.head)
    assert all(np.array_equal(l.W, l.W.astype(np.float16).astype(np.float32)) for l in split.head)  # read exactly
    x = inputs(name)
    if split.backbone is not None:
        assert Session(split.backbone).output.dtype == "float32" and split.head_input.dtype == "float32"
    expected = numpy_head(split, features(split, x))
    # float16 arithmetic in the file against float32 in the engine: probabilities within a few float16 steps
    assert np.abs(Session(data).run(x) - expected).max() < 5e-3
    assert fmt.describe(data, f"{name}.onnx").head[0].endswith(", float16")


@pytest.mark.parametrize("name", FILES)
def test_write_head_stores_float16_again(name):
    data = FILES[name]()
    split = fmt.split(data, None, f"{name}.onnx")
    head = [(np.float32(W), np.float32(b)) for W, b in new_head(split)]  # the engine's float32 weights
    out = fmt.write_head(data, head, f"{name}.onnx")
    types = lambda d: {t.name: (t.data_type, tuple(t.dims)) for t in onnx.load_model_from_string(d).graph.initializer}
    assert types(out) == types(data) and abs(len(out) - len(data)) < 64
    for layer, (W, b) in zip(fmt.split(out, None, f"{name}.onnx").head, head):
        assert np.array_equal(layer.W, W.astype(np.float16).astype(np.float32))
        assert np.array_equal(layer.b, b.astype(np.float16).astype(np.float32))
    x = inputs(name)
    rounded = [(W.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)) for W, b in head]
    assert np.abs(Session(out).run(x) - numpy_head(split, features(split, x), rounded)).max() < 5e-3


def test_a_float16_layer_without_a_bias_gets_a_float16_one():
    data = to_float16(fmt.dense_model(mlp_layers(bias=False), True))
    split = fmt.split(data, None, "nb.onnx")
    head = [(np.float32(W), np.float32(b)) for W, b in new_head(split)]
    out = fmt.write_head(data, head, "nb.onnx")
    added = [t for t in onnx.load_model_from_string(out).graph.initializer if t.name.endswith(".bias")]
    assert len(added) == 4 and {t.data_type for t in added} == {TensorProto.FLOAT16}
    rounded = [(W.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)) for W, b in head]
    assert np.abs(Session(out).run(X) - numpy_head(split, X, rounded)).max() < 5e-3
