"""ONNX heads as exporters write them: BatchNormalization after a dense layer (TorchScript's Linear ->
BatchNorm1d) folded exactly, Dropout and Identity passed, degenerate shapes (one layer, one output, a
width of 1), non-finite weights refused by name, and describe saying where and why the head stops."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefdfa import BadModelError
from edgefdfa.backends.onnx import Session
from edgefdfa.datasets import load
from edgefdfa.formats import onnx as fmt
from test_onnx import new_head, numpy_head, split_outputs  # tests/backends is on sys.path (pytest's prepend mode)

X = load("digits").X_test  # (450, 64) real inputs


def graph_model(nodes, weights, n_in=64, n_out=10, opset=17):
    """A model of `nodes` over input x (batch, n_in) to output y (batch, n_out), onnx-checked."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def bn_stats(rng, n, prefix):
    return {f"{prefix}.scale": rng.normal(1, 0.3, n), f"{prefix}.shift": rng.normal(0, 0.5, n),
            f"{prefix}.mean": rng.normal(0, 0.5, n), f"{prefix}.var": rng.uniform(0.2, 3, n)}


def bn_node(x, y, prefix, **attrs):
    return helper.make_node("BatchNormalization", [x, *(f"{prefix}.{k}" for k in ("scale", "shift", "mean", "var"))],
                            [y], name=prefix, **attrs)


def torchscript_model(matmul=False, bias=True):
    """x -> Linear -> BatchNorm1d -> Relu -> Dropout -> Linear -> BatchNorm1d -> Identity -> Softmax, as
    TorchScript exports it (Gemm transB=1; MatMul + Add when `matmul`)."""
    rng = np.random.default_rng(7)
    w = {"fc0.w": rng.normal(0, 0.2, (24, 64)), "fc1.w": rng.normal(0, 0.3, (10, 24)),
         **bn_stats(rng, 24, "bn0"), **bn_stats(rng, 10, "bn1")}
    if bias:
        w |= {"fc0.b": rng.normal(0, 0.3, 24), "fc1.b": rng.normal(0, 0.3, 10)}
    nodes = []
    for k, (x, y) in enumerate([("x", "h0"), ("d0", "h1")]):
        if matmul:
            w[f"fc{k}.w"] = w[f"fc{k}.w"].T
            nodes.append(helper.make_node("MatMul", [x, f"fc{k}.w"], [f"m{k}" if bias else y], name=f"fc{k}"))
            if bias:
                nodes.append(helper.make_node("Add", [f"m{k}", f"fc{k}.b"], [y], name=f"fc{k}.add"))
        else:
            inputs = [x, f"fc{k}.w", f"fc{k}.b"] if bias else [x, f"fc{k}.w"]
            nodes.append(helper.make_node("Gemm", inputs, [y], name=f"fc{k}", transB=1))
        if k == 0:
            nodes += [bn_node("h0", "n0", "bn0", epsilon=1e-3), helper.make_node("Relu", ["n0"], ["r0"], name="relu"),
                      helper.make_node("Dropout", ["r0"], ["d0"], name="dropout")]
    nodes += [bn_node("h1", "n1", "bn1"), helper.make_node("Identity", ["n1"], ["i1"], name="identity"),
              helper.make_node("Softmax", ["i1"], ["y"], name="softmax", axis=1)]
    return graph_model(nodes, w)


VARIANTS = {"gemm": {}, "matmul_add": {"matmul": True}, "gemm_no_bias": {"bias": False},
            "matmul_no_bias": {"matmul": True, "bias": False}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_batchnorm_is_folded_and_dropout_identity_passed(variant):
    data = torchscript_model(**VARIANTS[variant])
    split = fmt.split(data, None, "ts.onnx")
    assert [(l.activation, l.W.shape) for l in split.head] == [("relu", (24, 64)), ("identity", (10, 24))]
    assert all(l.where.endswith("+BatchNormalization)") for l in split.head) and split.softmax
    assert split.backbone is None
    assert np.abs(split_outputs(split, X) - Session(data).run(X)).max() < 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_write_head_with_batchnorm_computes_the_engines_head(variant):
    data = torchscript_model(**VARIANTS[variant])
    split = fmt.split(data, None, "ts.onnx")
    head = new_head(split)
    out = fmt.write_head(data, [(np.float32(W), np.float32(b)) for W, b in head], "ts.onnx")
    model = onnx.load_model_from_string(out)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Identity") == 3 and "Dropout" in ops
    assert not any(t.name.startswith("bn") for t in model.graph.initializer)  # the folded statistics are gone
    assert np.abs(Session(out).run(X) - numpy_head(split, X, head)).max() < 1e-5
    for layer, (W, b) in zip(fmt.split(out, None, "ts.onnx").head, head):  # the file now holds the learned W, b
        assert np.array_equal(layer.W, np.float32(W)) and np.array_equal(layer.b, np.float32(b))


def test_a_batchnorm_in_the_backbone_stays_there():
    """Linear -> BatchNorm1d -> Relu with head=1: only the last layer (and its BN) is the head."""
    data = torchscript_model()
    split = fmt.split(data, 1, "ts.onnx")
    assert len(split.head) == 1 and "BatchNormalization" in fmt.describe(split.backbone, "b").operators
    assert np.abs(split_outputs(split, X) - Session(data).run(X)).max() < 1e-5


def test_batchnorm_in_training_mode_stops_the_head():
    rng = np.random.default_rng(0)
    w = {"fc.w": rng.normal(size=(10, 64)), **bn_stats(rng, 10, "bn")}
    nodes = [helper.make_node("Gemm", ["x", "fc.w"], ["h"], name="fc", transB=1),
             helper.make_node("BatchNormalization", ["h", "bn.scale", "bn.shift", "bn.mean", "bn.var"],
                              ["y", "running_mean", "running_var"], name="bn", training_mode=1)]
    data = graph_model(nodes, w)
    with pytest.raises(BadModelError, match=r"node 'bn' \(#1, BatchNormalization\) cannot .*: it is in training mode"):
        fmt.split(data, None, "bn.onnx")


def dense_chain(sizes, acts, softmax):
    rng = np.random.default_rng(3)
    layers = [(rng.normal(0, 1 / np.sqrt(n), (m, n)), rng.normal(0, 0.5, m), a)
              for n, m, a in zip(sizes, sizes[1:], acts)]
    return fmt.dense_model(layers, softmax)


DEGENERATE = {"one_layer": ([64, 10], ["identity"], True), "one_output": ([64, 1], ["identity"], False),
              "width_1": ([64, 1, 3], ["tanh", "identity"], True), "k_2": ([64, 2], ["identity"], True)}


@pytest.mark.parametrize("shape", DEGENERATE)
def test_degenerate_heads_split_and_write_back(shape):
    data = dense_chain(*DEGENERATE[shape])
    split = fmt.split(data, None, "d.onnx")
    assert [l.W.shape[::-1] for l in split.head] == list(zip(DEGENERATE[shape][0], DEGENERATE[shape][0][1:]))
    assert np.abs(split_outputs(split, X) - Session(data).run(X)).max() < 1e-5
    head = new_head(split)
    out = fmt.write_head(data, head, "d.onnx")
    assert np.abs(Session(out).run(X) - numpy_head(split, X, head)).max() < 1e-5
    assert len(fmt.describe(data, "d.onnx").head) == len(split.head) + split.softmax


def poisoned(data, tensor, index, value):
    model = onnx.load_model_from_string(data)
    t = next(t for t in model.graph.initializer if t.name == tensor)
    a = numpy_helper.to_array(t).copy()
    a.reshape(-1)[index] = value
    t.CopyFrom(numpy_helper.from_array(a, tensor))
    return model.SerializeToString()


@pytest.mark.parametrize("tensor, value", [("fc1.weight", np.nan), ("fc0.bias", np.inf), ("fc1.bias", -np.inf)])
def test_non_finite_head_weights_are_refused_by_name(tensor, value):
    data = poisoned(dense_chain([64, 16, 10], ["relu", "identity"], True), tensor, 3, value)
    with pytest.raises(BadModelError, match=rf"d\.onnx: node '\w+' \(#\d, Gemm\): its \w+ '{tensor}' holds NaN or Inf"):
        fmt.split(data, None, "d.onnx")
    with pytest.raises(BadModelError, match=rf"'{tensor}' holds NaN or Inf"):
        fmt.split(data, 1 if tensor == "fc1.weight" else None, "d.onnx")
    assert f"'{tensor}' holds NaN or Inf" in fmt.describe(data, "d.onnx").stop  # info still prints the file


def test_a_negative_batchnorm_variance_is_refused():
    data = poisoned(torchscript_model(), "bn1.var", 0, -4.0)
    with pytest.raises(BadModelError, match=r"node 'bn1' \(#\d, BatchNormalization\): its variance 'bn1\.var' plus "
                                            r"epsilon is -3\.99999, not positive"):
        fmt.split(data, None, "ts.onnx")


def layernorm_model():
    """x -> Gemm -> LayerNormalization -> Gemm -> Relu -> Gemm -> Softmax: the head stops at the LayerNorm."""
    rng = np.random.default_rng(4)
    w = {"fc0.w": rng.normal(size=(16, 64)), "ln.g": np.ones(16), "fc1.w": rng.normal(size=(12, 16)),
         "fc2.w": rng.normal(size=(10, 12))}
    nodes = [helper.make_node("Gemm", ["x", "fc0.w"], ["a"], name="fc0", transB=1),
             helper.make_node("LayerNormalization", ["a", "ln.g"], ["n"], name="ln"),
             helper.make_node("Gemm", ["n", "fc1.w"], ["b"], name="fc1", transB=1),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "fc2.w"], ["c"], name="fc2", transB=1),
             helper.make_node("Softmax", ["c"], ["y"], name="softmax")]
    return graph_model(nodes, w)


def test_describe_gives_the_head_and_why_it_stops():
    info = fmt.describe(layernorm_model(), "ln.onnx")
    assert info.head == ["node 'fc1' (#2, Gemm): 16 -> 12, relu, float32",
                         "node 'fc2' (#4, Gemm): 12 -> 10, identity, float32", "softmax over the outputs"]
    assert info.stop == ("node 'ln' (#1, LayerNormalization) is not a dense layer; the head is the 2 dense layers "
                         "after it; --head 1 or less trains only the last layers")


def test_describe_of_a_batchnorm_file_says_it_is_folded():
    info = fmt.describe(torchscript_model(), "ts.onnx")
    assert info.head[:2] == ["node 'fc0' (#0, Gemm+BatchNormalization): 64 -> 24, relu, float32",
                             "node 'fc1' (#4, Gemm+BatchNormalization): 24 -> 10, identity, float32"]
    assert info.stop.startswith("the head starts at the model input 'x'")


def test_describe_never_refuses_a_file_split_refuses():
    rng = np.random.default_rng(5)
    data = graph_model([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
                        helper.make_node("LayerNormalization", ["h", "g"], ["y"], name="ln")],
                       {"w": rng.normal(size=(10, 64)), "g": np.ones(10)})
    with pytest.raises(BadModelError) as refused:
        fmt.split(data, None, "ln.onnx")
    info = fmt.describe(data, "ln.onnx")
    assert info.head == [] and info.stop == str(refused.value)
    assert "node 'ln' (#1, LayerNormalization) cannot be part of a trainable head" in info.stop
