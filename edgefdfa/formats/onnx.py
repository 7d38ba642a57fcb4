"""ONNX model files: describe one, cut it into a frozen backbone and a trainable dense head, write a
trained head back into it, and build small MLP files from NumPy weights (for tools and tests).

The head is the trailing run of dense layers feeding the graph's single output:

    ( Gemm | MatMul | MatMul+Add ) [ Relu | Tanh | Sigmoid ]   ... repeated ...   [ Softmax ]

read in the engine's convention W (n_out, n_in), b (n_out,) float32. Gemm computes
Y = alpha * A @ B' + beta * C with B' = B.T if transB else B, so W = alpha * B'.T and b = beta * C;
MatMul computes Y = A @ B (+ b), so W = B.T. A weight or bias must be stored in the file (an
initializer, or a Constant / ConstantOfShape node) and read by its layer alone; the first layer
that breaks a rule stops the run, and the error that follows names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..atomic import atomic_write
from ..errors import BadModelError
from .base import Dense, Description, Split, TensorInfo

SUFFIX = ".onnx"
HEAD_OPS = "Gemm, MatMul+Add, Relu, Tanh, Sigmoid, Softmax"
MAX_IR, MAX_OPSET = 10, 21  # what common runtimes load; onnx's own table pairs opset 21 with IR 10
_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
_QUANTIZED = {"MatMulInteger", "QGemm", "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear",
              "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def read(path: Path) -> tuple[bytes, dict]:
    """The file's bytes (external data is not read yet)."""
    try:
        return Path(path).read_bytes(), {}
    except OSError as exc:
        raise BadModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None


def write(path: Path, data: bytes, storage: dict) -> list[Path]:
    """Write the file atomically."""
    with atomic_write(path) as f:
        f.write(data)
    return [Path(path)]


def describe(data: bytes, name: str) -> Description:
    """Inputs, outputs and op types in execution order, plus the file's versions and producer."""
    model = _load(data, name)
    g = _Graph(model)
    return Description(
        format="onnx",
        inputs=[_info(v) for v in g.inputs],
        outputs=[_info(v) for v in model.graph.output],
        operators=[n.op_type for n in model.graph.node],
        details={
            "ir_version": model.ir_version,
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        },
    )


def split(data: bytes, head: int | None, name: str) -> Split:
    """Cut the file before its trailing `head` dense layers (all of the trailing run when None)."""
    model = _load(data, name)
    g = _Graph(model)
    layers, softmax = _head(g, head, name)
    model_input, output = _single_input_output(g, name)
    start = layers[0].input
    info = g.infos.get(start)
    head_input = _info(info) if info is not None else TensorInfo(start, (None, layers[0].dense.W.shape[1]), "float32")
    return Split(
        backbone=None if start == model_input.name else _backbone(g, start),
        head=[layer.dense for layer in layers],
        softmax=softmax,
        input=_info(model_input),
        head_input=head_input,
        output=_info(output),
    )


def write_head(data: bytes, head: list[tuple[np.ndarray, np.ndarray]], name: str,
               ranges: np.ndarray | None = None) -> bytes:
    """The file with its trailing len(head) dense layers set to `head` ([(W (n_out, n_in), b (n_out,))]).

    Only the head's weight and bias tensors change, so the stored values reproduce W and b exactly:
    a Gemm with alpha or beta != 1 gets alpha = beta = 1 (W and b are stored as they are, not divided
    back). A layer without a bias in the file gets one (a new Gemm input C, or an Add after a MatMul)
    when b is not all zero. The opset is kept (no op changes meaning); the IR version is capped at
    10 when the opset allows it, and the result must pass onnx's checker.
    """
    if not head:
        raise BadModelError(f"{name}: write_head needs at least one (W, b) layer")
    model = _load(data, name)
    g = _Graph(model)
    layers, _ = _head(g, len(head), name)
    _single_input_output(g, name)
    for layer, (W, b) in reversed(list(zip(layers, head))):  # last first: an inserted Add shifts later nodes only
        _write_layer(g, layer, *_checked(layer, W, b, name))
    if _opset(model) <= MAX_OPSET:
        model.ir_version = min(model.ir_version, MAX_IR)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise BadModelError(f"{name}: the model with the new head fails onnx's checker: {exc}") from None
    return model.SerializeToString()


def dense_model(layers: list[tuple[np.ndarray, np.ndarray | None, str]], softmax: bool = True, use_gemm: bool = True,
                gemm_attrs: dict | None = None, input_name: str = "input") -> bytes:
    """An MLP as an ONNX file (IR 9, opset 17) with a dynamic batch: each (W (n_out, n_in), b (n_out,)
    or None, activation) becomes a Gemm or a MatMul (+Add when b is given) and then Relu / Tanh /
    Sigmoid (or nothing for "identity"); a Softmax over the last axis closes it if asked.

    gemm_attrs (alpha, beta, transB; default transB=1) go on every Gemm, with B and C scaled so the
    file still computes f(W x + b).
    """
    attrs = {"alpha": 1.0, "beta": 1.0, "transB": 1, **(gemm_attrs or {})}
    ops = {v: k for k, v in _ACTIVATIONS.items()}
    nodes, weights, x = [], [], input_name
    for k, (W, b, activation) in enumerate(layers):
        W, y = np.asarray(W, np.float32), f"fc{k}"
        if use_gemm:
            B = W / np.float32(attrs["alpha"])
            weights.append(numpy_helper.from_array(B if attrs["transB"] else B.T, f"{y}.weight"))
            if b is not None:
                C = np.asarray(b, np.float32) / np.float32(attrs["beta"])
                weights.append(numpy_helper.from_array(C, f"{y}.bias"))
            inputs = [x, f"{y}.weight"] if b is None else [x, f"{y}.weight", f"{y}.bias"]
            nodes.append(helper.make_node("Gemm", inputs, [y], name=y, **attrs))
        else:
            weights.append(numpy_helper.from_array(np.ascontiguousarray(W.T), f"{y}.weight"))
            nodes.append(helper.make_node("MatMul", [x, f"{y}.weight"], [y if b is None else f"{y}.matmul"], name=y))
            if b is not None:
                weights.append(numpy_helper.from_array(np.asarray(b, np.float32), f"{y}.bias"))
                nodes.append(helper.make_node("Add", [f"{y}.matmul", f"{y}.bias"], [y], name=f"{y}.add"))
        if activation != "identity":
            nodes.append(helper.make_node(ops[activation], [y], [f"{y}.{activation}"], name=f"{y}.{activation}"))
            y = f"{y}.{activation}"
        x = y
    if softmax:
        nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="softmax", axis=-1))
        x = "probabilities"
    n_in, n_out = np.shape(layers[0][0])[1], np.shape(layers[-1][0])[0]
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", n_in])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", n_out])], weights)
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgefdfa")
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --- reading the file -------------------------------------------------------------------------------


def _load(data: bytes, name: str) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and whatever a corrupt message raises
        raise BadModelError(f"{name} is not a valid ONNX model: {exc}") from None
    if model.ir_version == 0 or not model.graph.output:
        raise BadModelError(f"{name} is not a valid ONNX model: it declares no IR version or no graph output")
    return model


class _Graph:
    """A model's top-level graph indexed by tensor name: which node makes a tensor, which nodes read it."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.model, self.nodes = model, graph.node
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = [v for v in graph.input if v.name not in self.initializers]  # IR < 4 lists initializers too
        self.producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
        self.readers: dict[str, list[int]] = {}
        for i, node in enumerate(graph.node):
            for t in _reads(node):
                self.readers.setdefault(t, []).append(i)
        self.infos = _inferred(model)
        self.names = set(self.producer) | set(self.readers) | set(self.initializers) | {n.name for n in graph.node}
        self.names |= {v.name for v in graph.input} | {v.name for v in graph.output}

    def where(self, i: int, op: str | None = None) -> str:
        """How messages name node i: "node 'fc1' (#3, Gemm)"."""
        node, op = self.nodes[i], op or self.nodes[i].op_type
        return f"node '{node.name}' (#{i}, {op})" if node.name else f"node #{i} ({op})"

    def new_name(self, base: str) -> str:
        """A tensor or node name the graph does not use yet."""
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name


def _reads(node: onnx.NodeProto) -> Iterator[str]:
    """The tensors a node reads, including those its subgraphs (If, Loop, Scan bodies) read."""
    yield from (t for t in node.input if t)
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
            for inner in sub.node:
                yield from _reads(inner)


def _inferred(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor's type as shape inference sees it (empty where inference gives up)."""
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help for shapes, never a reason to refuse a file
        graph = model.graph
    return {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name if tensor.elem_type else "unknown"
    return TensorInfo(value.name, shape, dtype)


def _single_input_output(g: _Graph, name: str) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    outputs = g.model.graph.output
    if len(g.inputs) != 1 or len(outputs) != 1:
        raise BadModelError(f"{name}: the model has {len(g.inputs)} inputs and {len(outputs)} outputs; "
                            "edgefdfa needs exactly one of each")
    return g.inputs[0], outputs[0]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _quantized(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type in _QUANTIZED


# --- finding the head ---------------------------------------------------------------------------------


class _Stop(Exception):
    """Where the trailing run of dense layers ends (a node, or the model input when not at_node), and
    why: a reason, or None when the op is simply not one the head holds."""

    def __init__(self, where: str, reason: str | None = None, at_node: bool = True):
        super().__init__(where)
        self.where, self.reason, self.at_node = where, reason, at_node

    def why(self) -> str:
        return f": {self.reason}" if self.reason else f"; the head holds {HEAD_OPS}" if self.at_node else ""


@dataclass
class _Layer:
    """One dense layer of the head and where the file keeps it."""

    dense: Dense
    input: str  # the tensor the layer reads
    node: int  # its Gemm or MatMul
    weight: str  # the tensor holding B
    bias: str | None  # the tensor holding C or the Add's bias; None: the file has no bias
    bias_shape: tuple[int, ...] | None
    add: int | None = None  # the Add after a MatMul, if the bias is added by one


def _head(g: _Graph, n: int | None, name: str) -> tuple[list[_Layer], bool]:
    """The trailing `n` dense layers (all of the run when None), in forward order, and whether a Softmax follows."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise BadModelError(f"{name}: head must be a positive number of dense layers or None, got {n!r}")
    output = g.model.graph.output[0].name
    layers: list[_Layer] = []
    softmax, tensor, reader, stop = False, output, None, None
    try:
        last = g.producer.get(output)
        if last is not None and g.nodes[last].op_type == "Softmax":
            _check_softmax(g, last)
            softmax, tensor, reader = True, g.nodes[last].input[0], last
        while n is None or len(layers) < n:
            layers.append(_layer(g, tensor, reader))
            tensor, reader = layers[-1].input, layers[-1].node
    except _Stop as found:
        stop = found
    if not layers:
        if not stop.at_node:
            raise BadModelError(f"{name}: nothing trainable: no Gemm or MatMul layer between {stop.where} "
                                f"and the output '{output}'")
        raise BadModelError(f"{name}: {stop.where} cannot be part of a trainable head{stop.why()}")
    if n is not None and len(layers) < n:
        raise BadModelError(f"{name}: head={n} asks for {n} dense layers, but the trailing run has "
                            f"{len(layers)}: {stop.where} stops it{stop.why()}")
    return layers[::-1], softmax


def _check_softmax(g: _Graph, i: int) -> None:
    axis = _attrs(g.nodes[i]).get("axis", 1 if _opset(g.model) < 13 else -1)
    if axis not in (1, -1):  # the head's output is (batch, n_out)
        raise _Stop(g.where(i), f"it takes the softmax over axis {axis}, not over the outputs")


def _maker(g: _Graph, tensor: str, reader: int | None) -> int:
    """The node making `tensor` inside the head, which `reader` (the next head node) alone may read."""
    if tensor not in g.producer:
        what = "the model input" if any(v.name == tensor for v in g.inputs) else "the stored tensor"
        raise _Stop(f"{what} '{tensor}'", at_node=False)
    i = g.producer[tensor]
    others = [j for j in g.readers.get(tensor, []) if j != reader] if reader is not None else []
    if others:
        raise _Stop(g.where(i), f"its output '{tensor}' also feeds {g.where(others[0])}")
    return i


def _layer(g: _Graph, tensor: str, reader: int | None) -> _Layer:
    """The dense layer, with its activation, whose output is `tensor`."""
    i, activation = _maker(g, tensor, reader), "identity"
    if g.nodes[i].op_type in _ACTIVATIONS:
        activation = _ACTIVATIONS[g.nodes[i].op_type]
        i = _maker(g, g.nodes[i].input[0], i)
    node = g.nodes[i]
    if node.op_type == "Gemm":
        return _gemm(g, i, activation)
    if node.op_type == "MatMul":
        return _matmul(g, i, None, activation)
    if node.op_type == "Add":
        matmuls = [t for t in node.input if t in g.producer and g.nodes[g.producer[t]].op_type == "MatMul"]
        if len(matmuls) == 1:
            return _matmul(g, _maker(g, matmuls[0], i), i, activation)
    raise _Stop(g.where(i), "quantized heads are not supported yet" if _quantized(node.op_type) else None)


def _gemm(g: _Graph, i: int, activation: str) -> _Layer:
    node, attrs = g.nodes[i], _attrs(g.nodes[i])
    if attrs.get("transA", 0):
        raise _Stop(g.where(i), "transA=1 (a transposed input) is not a dense layer per sample")
    B = _matrix(g, i, node.input[1])
    W = np.float32(attrs.get("alpha", 1.0)) * (B if attrs.get("transB", 0) else B.T)  # (n_out, n_in)
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    b, shape = _bias(g, i, bias, len(W))
    dense = Dense(np.ascontiguousarray(W), np.float32(attrs.get("beta", 1.0)) * b, activation, g.where(i))
    return _Layer(dense, node.input[0], i, node.input[1], bias, shape)


def _matmul(g: _Graph, i: int, add: int | None, activation: str) -> _Layer:
    node = g.nodes[i]
    known = g.infos.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type
    if known.HasField("shape") and len(known.shape.dim) != 2:
        raise _Stop(g.where(i), f"it multiplies a rank-{len(known.shape.dim)} tensor, not one vector per sample")
    B = _matrix(g, i, node.input[1])  # (n_in, n_out)
    bias = None if add is None else next(t for t in g.nodes[add].input if t != node.output[0])
    b, shape = _bias(g, i if add is None else add, bias, B.shape[1])
    where = g.where(i, None if add is None else "MatMul+Add")
    return _Layer(Dense(np.ascontiguousarray(B.T), b, activation, where), node.input[0], i, node.input[1], bias, shape,
                  add)


def _matrix(g: _Graph, i: int, tensor: str) -> np.ndarray:
    B = _stored_weight(g, i, tensor, "weight")
    if B.ndim != 2:
        raise _Stop(g.where(i), f"its weight '{tensor}' has shape {B.shape}, not a matrix")
    return B


def _bias(g: _Graph, i: int, tensor: str | None, n_out: int) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """A layer's bias as (n_out,) float32 (zeros when the file has none), and its shape in the file."""
    if tensor is None:
        return np.zeros(n_out, np.float32), None
    C = _stored_weight(g, i, tensor, "bias")
    if C.size not in (1, n_out) or C.ndim > 2 or (C.ndim == 2 and C.shape[0] != 1):
        raise _Stop(g.where(i), f"its bias '{tensor}' has shape {C.shape}, not one value per output ({n_out})")
    return np.broadcast_to(C.reshape(-1), (n_out,)).astype(np.float32), C.shape


def _stored_weight(g: _Graph, i: int, tensor: str, role: str) -> np.ndarray:
    """The float32 value node i reads as its weight or bias, which the file stores and node i alone reads."""
    where, maker = g.where(i), g.producer.get(tensor)
    shared = [j for j in g.readers.get(tensor, []) if j != i]
    if shared:
        raise _Stop(where, f"its {role} '{tensor}' is shared with {g.where(shared[0])}")
    if tensor in g.initializers and g.initializers[tensor].data_location == TensorProto.EXTERNAL:
        raise _Stop(where, f"its {role} '{tensor}' is in an external data file, which edgefdfa does not read")
    value = _stored(g, tensor)
    if value is None:
        if maker is None:
            raise _Stop(where, f"its {role} '{tensor}' is a model input, not a stored weight")
        if _quantized(g.nodes[maker].op_type):
            raise _Stop(where, f"its {role} '{tensor}' comes from {g.where(maker)}; "
                               "quantized heads are not supported yet")
        raise _Stop(where, f"its {role} '{tensor}' is computed by {g.where(maker)}, not stored")
    if value.dtype != np.float32:
        raise _Stop(where, f"its {role} '{tensor}' is {value.dtype}; " + ("quantized heads are not supported yet"
                    if value.dtype.kind in "iu" else "the head's weights must be float32"))
    return value


def _stored(g: _Graph, tensor: str) -> np.ndarray | None:
    """The value of a tensor the file stores: an initializer, or a Constant or ConstantOfShape node's output."""
    if tensor in g.initializers:
        return numpy_helper.to_array(g.initializers[tensor])
    node = g.nodes[g.producer[tensor]] if tensor in g.producer else None
    attrs = _attrs(node) if node is not None else {}
    if node is not None and node.op_type == "ConstantOfShape":
        shape = _stored(g, node.input[0])
        fill = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
        return None if shape is None else np.full(tuple(shape.astype(np.int64)), fill[0], fill.dtype)
    if node is not None and node.op_type == "Constant":
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        if "value_float" in attrs or "value_floats" in attrs:
            return np.array(attrs.get("value_float", attrs.get("value_floats")), np.float32)
    return None


# --- the backbone -------------------------------------------------------------------------------------


def _backbone(g: _Graph, tensor: str) -> bytes:
    """The file from its input up to `tensor` (the head's input), as a model of its own."""
    model = onnx.ModelProto()
    model.CopyFrom(g.model)
    graph = model.graph
    keep, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if t in g.producer and g.producer[t] not in keep:
            keep.add(g.producer[t])
            todo.extend(_reads(g.nodes[g.producer[t]]))
    for i in reversed(range(len(graph.node))):  # what stays keeps the file's order, which is topological
        if i not in keep:
            del graph.node[i]
    used = {t for node in graph.node for t in (*_reads(node), *node.output)}
    _remove(graph.initializer, lambda t: t.name not in used)
    _remove(graph.input, lambda v: v.name in g.initializers and v.name not in used)
    _remove(graph.value_info, lambda v: v.name not in used)
    del graph.output[:]
    graph.output.append(g.infos.get(tensor) or helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return model.SerializeToString()


def _prune(graph: onnx.GraphProto) -> None:
    """Delete, in place, the nodes and initializers nothing reads any more (a head's old weights)."""
    while True:
        used = {t for node in graph.node for t in _reads(node)} | {v.name for v in graph.output}
        dead = [k for k, node in enumerate(graph.node) if not any(t in used for t in node.output)]
        if not dead:
            break
        for k in reversed(dead):
            del graph.node[k]
    unused = {t.name for t in graph.initializer if t.name not in used}
    _remove(graph.initializer, lambda t: t.name in unused)
    _remove(graph.input, lambda v: v.name in unused)  # IR < 4 also lists initializers as inputs


def _remove(field, unwanted: Callable) -> None:
    """Delete, in place, the items of a repeated protobuf field for which unwanted(item) holds."""
    for k in reversed(range(len(field))):
        if unwanted(field[k]):
            del field[k]


# --- writing the head back ----------------------------------------------------------------------------


def _checked(layer: _Layer, W: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    W, b = np.asarray(W, np.float32), np.asarray(b, np.float32)
    old = layer.dense.W.shape
    if W.shape != old or b.shape != old[:1]:
        raise BadModelError(f"{name}: {layer.dense.where} holds W {old} and b {old[:1]}; "
                            f"the new head gives W {W.shape} and b {b.shape}")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise BadModelError(f"{name}: the new weights for {layer.dense.where} hold NaN or Inf")
    return W, b


def _write_layer(g: _Graph, layer: _Layer, W: np.ndarray, b: np.ndarray) -> None:
    node = g.nodes[layer.node]
    if node.op_type == "Gemm":
        attrs = _attrs(node)
        for key in ("alpha", "beta"):  # W and b go in as they are; dividing by alpha would round
            if attrs.get(key, 1.0) != 1.0:
                _remove(node.attribute, lambda a: a.name == key)
                node.attribute.append(helper.make_attribute(key, 1.0))
        _store(g, layer.weight, W if attrs.get("transB", 0) else W.T)
    else:
        _store(g, layer.weight, W.T)
    if layer.bias is not None:
        _store(g, layer.bias, b.reshape(layer.bias_shape) if np.prod(layer.bias_shape) == b.size else b)
    elif b.any():
        _add_bias(g, layer, b)


def _store(g: _Graph, tensor: str, value: np.ndarray) -> None:
    """Give a stored tensor a new value in place: its initializer, or the Constant node making it."""
    array = numpy_helper.from_array(np.ascontiguousarray(value, np.float32), tensor)
    if tensor in g.initializers:
        g.initializers[tensor].CopyFrom(array)
        for declared in g.model.graph.input:  # IR < 4 also lists initializers as inputs, with their shape
            if declared.name == tensor:
                declared.CopyFrom(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, value.shape))
    else:
        maker = g.nodes[g.producer[tensor]]
        maker.CopyFrom(helper.make_node("Constant", [], [tensor], name=maker.name, value=array))


def _add_bias(g: _Graph, layer: _Layer, b: np.ndarray) -> None:
    """A bias for a layer the file has none for: a new Gemm input C, or a new Add after the MatMul."""
    node, graph = g.nodes[layer.node], g.model.graph
    broadcast = {"broadcast": 1} if _opset(g.model) < 7 else {}  # before opset 7, Gemm and Add broadcast on request
    bias = g.new_name(f"{node.name or node.op_type}.bias")
    graph.initializer.append(numpy_helper.from_array(b, bias))
    if g.model.ir_version < 4:
        graph.input.append(helper.make_tensor_value_info(bias, TensorProto.FLOAT, b.shape))
    if node.op_type == "Gemm":
        del node.input[2:]
        node.input.append(bias)
        if broadcast and "broadcast" not in _attrs(node):
            node.attribute.append(helper.make_attribute("broadcast", 1))
        return
    output, node.output[0] = node.output[0], g.new_name(f"{node.output[0]}.matmul")
    name = g.new_name(f"{node.name or 'MatMul'}.add")
    add = helper.make_node("Add", [node.output[0], bias], [output], name=name, **broadcast)
    graph.node.insert(layer.node + 1, add)
