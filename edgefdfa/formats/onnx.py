"""ONNX model files: read one (external data included), describe it, cut it into a frozen backbone and
a trainable dense head, write a trained head back into it in its own form, and build small MLP files
from NumPy weights (for tools and tests).

The head is the trailing run of dense layers feeding the graph's single output:

    ( Gemm | MatMul[+Add] | QGemm | QLinearMatMul[+QLinearAdd] | MatMulInteger ... )
        [ BatchNormalization ] [ Relu | Tanh | Sigmoid ]   ... repeated ...   [ Softmax ]

read in the engine's convention W (n_out, n_in), b (n_out,) float32. Gemm computes
Y = alpha * A @ B' + beta * C with B' = B.T if transB else B, so W = alpha * B'.T and b = beta * C;
MatMul computes Y = A @ B (+ b), so W = B.T. A weight or bias must be stored in the file (an
initializer, or a Constant / ConstantOfShape node) and read by its layer alone. A BatchNormalization
right after a layer is folded into it; Identity and Dropout are passed through.

Quantized heads (onnxruntime.quantization's output) are read dequantized: QDQ files (float ops between
QuantizeLinear / DequantizeLinear; a Relu the quantizer folded into an activation's zero point is read
back as relu), QOperator files (QGemm, QLinearMatMul + QLinearAdd, QLinearSoftmax) and dynamic ones
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, then a float bias). Their form is "int8"
(static) or "dynamic", and write_head requantizes them (onnx_quant). The first layer that breaks a rule
stops the run; describe says which and why, and the errors that follow name it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import BadModelError, EdgeFDFAError
from . import onnx_data, onnx_quant
from .base import FORMS, Dense, Description, Split, TensorInfo

SUFFIX = ".onnx"
HEAD_OPS = ("Gemm, MatMul+Add and their quantized forms, BatchNormalization after them, Relu, Tanh, Sigmoid, "
            "Softmax, Identity and Dropout")
MAX_IR, MAX_OPSET = 10, 21  # what common runtimes load; onnx's own table pairs opset 21 with IR 10
_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
_PASSED = ("Identity", "Dropout")  # the head passes through them (Dropout is the identity at inference)
_QUANTIZED = {"MatMulInteger", "QGemm", "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear",
              "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger"}


def read(path: str | Path) -> tuple[bytes, dict]:
    """The file's bytes with any external data embedded, and {"external_data": its location} ({} if none)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadModelError(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    with _parsing(path.name):
        model = _load(raw, path.name)
        locations = onnx_data.embed(model, path.parent, path.name)
        if not locations:
            return raw, {}
        return model.SerializeToString(), {"external_data": locations[0] if len(locations) == 1 else locations}


def write(path: str | Path, data: bytes, storage: dict) -> list[Path]:
    """Write `data` to `path` atomically; its large tensors in `<name>.data` beside it when `storage`
    says the source kept external data. The files written, the model first."""
    path = Path(path)
    with _parsing(path.name):
        model = _load(data, path.name)
        external = [t.name for t in onnx_data.tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise BadModelError(f"{path.name}: tensor '{external[0]}' still refers to external data; "
                            "write takes self-contained bytes (as read returns them)")
    try:
        return onnx_data.write(path, model, bool(storage.get("external_data")))
    except OSError as exc:
        raise BadModelError(f"{path.name} cannot be written: {exc.strerror or exc}") from None


def describe(data: bytes, name: str) -> Description:
    """Inputs, outputs and op types in execution order, the file's versions and producer, and the head
    split(head=None) would take with where and why it stops. Refuses only what does not parse."""
    with _parsing(name):
        model = _load(data, name)
        g = _Graph(model)
        head, stop = _head_summary(g, name)
        return Description(
            format="onnx",
            inputs=[_io_info(g, v, True) for v in g.inputs],
            outputs=[_io_info(g, v, False) for v in model.graph.output],
            operators=[n.op_type for n in model.graph.node],
            details={
                "ir_version": model.ir_version,
                "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
                "producer": f"{model.producer_name} {model.producer_version}".strip(),
            },
            head=head,
            stop=stop,
        )


def split(data: bytes, head: int | None, name: str) -> Split:
    """Cut the file before its trailing `head` dense layers (all of the trailing run when None). The
    backbone's single output is the head's input as float32 (a quantized one is dequantized)."""
    with _parsing(name):
        model = _load(data, name)
        g = _Graph(model)
        layers, softmax, _ = _head(g, head, name)
        model_input, output = _single_input_output(g, name)
        start, dequantize = _start(g, layers[0])
        n_in = layers[0].dense.W.shape[1]
        half = dequantize is None and _elem_type(g, start) == TensorProto.FLOAT16  # the features go out as float32
        if start == model_input.name and dequantize is None and not half:
            backbone, head_input = None, _info(model_input)
        else:
            backbone, out = _backbone(g, start, dequantize, half)
            head_input = TensorInfo(out, _info(g.infos[start]).shape if start in g.infos else (None, n_in), "float32")
        return Split(
            backbone=backbone,
            head=[layer.dense for layer in layers],
            softmax=softmax,
            input=_info(model_input),
            head_input=head_input,
            output=_info(output),
        )


def write_head(data: bytes, head: list[tuple[np.ndarray, np.ndarray]], name: str,
               ranges: np.ndarray | None = None) -> bytes:
    """The file with its trailing len(head) dense layers set to `head` ([(W (n_out, n_in), b (n_out,))]),
    each in the file's own form.

    A float layer stores W and b exactly: a Gemm with alpha or beta != 1 gets alpha = beta = 1, a
    layer without a bias in the file gets one (a new Gemm input C, or an Add after a MatMul) when b is
    not all zero, and a folded BatchNormalization becomes an Identity (the layer holds it now). A
    quantized layer gets symmetric integer weights (per channel where the file's are), an int32 bias at
    in_scale x w_scale (or an int8 one at its own scale), and, from `ranges` (L, 4) [min a, max a,
    min h, max h], new scales and zero points for its quantized activations (None: the file's). The
    opset is kept; the IR version is capped at 10 when the opset allows it; the result must pass onnx's
    checker.
    """
    if not head:
        raise BadModelError(f"{name}: write_head needs at least one (W, b) layer")
    with _parsing(name):
        model = _load(data, name)
        g = _Graph(model)
        layers, _, _ = _head(g, len(head), name)
        _single_input_output(g, name)
        weights = [_checked(layer, W, b, name) for layer, (W, b) in zip(layers, head)]
        if ranges is not None:
            for layer, r, (_, b) in zip(layers, _ranges(ranges, len(layers), name), weights):
                for act in layer.acts:
                    _write_activation(g, act, r, b)
        folded = {t for layer in layers if layer.bn is not None for t in g.nodes[layer.bn].input}
        for layer, (W, b) in reversed(list(zip(layers, weights))):  # last first: an inserted Add shifts later nodes only
            _write_layer(g, layer, W, b)
        _drop_unused_initializers(g.model.graph, folded)
        if _opset(model) <= MAX_OPSET:
            model.ir_version = min(model.ir_version, MAX_IR)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise BadModelError(f"{name}: the model with the new head fails onnx's checker: {exc}") from None
        return model.SerializeToString()


def inference_model(data: bytes, head: int, name: str) -> bytes:
    """The file with the trailing `head` dense layers' weights turned into graph inputs and the head's
    input added as a second output: one run gives the output with the engine's current head and the
    features that head learns from.

    Every head layer becomes Gemm(x, "edgefdfa.W<l>", "edgefdfa.b<l>", transB=1): f(x W^T + b) in the
    engine's convention (W (n_out, n_in), b (n_out,)), whatever Gemm attributes or MatMul(+Add) the
    file used; the layers' stored weights are dropped. Inputs: the model input, then W0, b0, W1, b1...
    Outputs: the model output, then the head's input unless it is the model input.
    """
    model = _load(data, name)
    g = _Graph(model)
    layers, _, _ = _head(g, head, name)
    model_input, _ = _single_input_output(g, name)
    quantized = [layer.dense for layer in layers if layer.dense.form != "float32"]
    if quantized:
        raise BadModelError(f"{name}: {quantized[0].where} is {FORMS[quantized[0].form]}; only float32 heads "
                            "can run with their weights as inputs")
    graph, weights = model.graph, []
    broadcast = {"broadcast": 1} if _opset(model) < 7 else {}  # before opset 7, Gemm broadcasts C on request
    for l, layer in enumerate(layers):
        W, b = g.new_name(f"edgefdfa.W{l}"), g.new_name(f"edgefdfa.b{l}")
        weights += [helper.make_tensor_value_info(W, TensorProto.FLOAT, layer.dense.W.shape),
                    helper.make_tensor_value_info(b, TensorProto.FLOAT, layer.dense.b.shape)]
        node = g.nodes[layer.node]
        output = node.output[0] if layer.add is None else g.nodes[layer.add].output[0]
        node.CopyFrom(helper.make_node("Gemm", [layer.input, W, b], [output], name=node.name, transB=1, **broadcast))
        if layer.bn is not None:  # the engine's weights hold the folded normalization
            bn = g.nodes[layer.bn]
            bn.CopyFrom(helper.make_node("Identity", [bn.input[0]], [bn.output[0]], name=bn.name))
    for add in sorted((layer.add for layer in layers if layer.add is not None), reverse=True):
        del graph.node[add]  # the Gemm adds the bias now
    graph.input.extend(weights)
    start = layers[0].input
    if start != model_input.name:
        graph.output.append(g.infos.get(start) or helper.make_tensor_value_info(start, TensorProto.FLOAT, None))
    _prune(graph)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise BadModelError(f"{name}: the model with the head's weights as inputs fails onnx's checker: {exc}") from None
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


@contextlib.contextmanager
def _parsing(name: str) -> Iterator[None]:
    """Turn whatever a damaged file makes onnx, protobuf or NumPy raise into a BadModelError naming it."""
    try:
        yield
    except EdgeFDFAError:
        raise
    except Exception as exc:  # a message that parses but lies (dims vs data, dangling names...)
        raise BadModelError(f"{name} is a damaged ONNX model: {type(exc).__name__}: {exc}") from None


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
        self.outputs = {v.name for v in graph.output}
        self.infos = _inferred(model)
        self.names = set(self.producer) | set(self.readers) | set(self.initializers) | {n.name for n in graph.node}
        self.names |= {v.name for v in graph.input} | self.outputs

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

    def used(self, tensor: str) -> bool:
        return bool(tensor) and (tensor in self.readers or tensor in self.outputs)


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
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name if tensor.elem_type else "unknown"
    except (KeyError, TypeError, ValueError):  # an element type number onnx does not know
        dtype = "unknown"
    return TensorInfo(value.name, shape, dtype)


def _io_info(g: _Graph, value: onnx.ValueInfoProto, is_input: bool) -> TensorInfo:
    """A model input's or output's TensorInfo, with the (scale, zero point) of an integer one that a
    DequantizeLinear reads (an input) or a QuantizeLinear makes (an output)."""
    info = _info(value)
    if not info.dtype.startswith(("int", "uint")):
        return info
    nodes = [g.nodes[j] for j in g.readers.get(value.name, [])] if is_input else \
        [g.nodes[g.producer[value.name]]] if value.name in g.producer else []
    op = "DequantizeLinear" if is_input else "QuantizeLinear"
    for node in nodes:
        if node.op_type == op and len(node.input) > 1:
            with contextlib.suppress(_Stop):
                scale, zero = _stored(g, node.input[1]), _stored(g, node.input[2]) if len(node.input) > 2 else None
                if scale is not None and scale.size == 1:
                    info.quantization = (float(scale.reshape(())), 0 if zero is None else int(zero.reshape(-1)[0]))
    return info


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


def _stored(g: _Graph, tensor: str) -> np.ndarray | None:
    """The value of a tensor the file stores: an initializer, or a Constant or ConstantOfShape node's output."""
    if tensor in g.initializers:
        if g.initializers[tensor].data_location == TensorProto.EXTERNAL:
            raise _Stop(f"the stored tensor '{tensor}'", "its data is in an external file: open the model by its "
                        "path (edgefdfa reads the data file beside it), or re-export with external_data=False")
        return numpy_helper.to_array(g.initializers[tensor])
    node = g.nodes[g.producer[tensor]] if tensor in g.producer else None
    attrs = _attrs(node) if node is not None else {}
    if node is not None and node.op_type == "ConstantOfShape":
        shape = _stored(g, node.input[0]) if node.input else None
        fill = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
        if shape is None or shape.ndim != 1 or (shape < 0).any() or np.prod(shape.astype(np.int64)) > 1 << 24:
            return None
        return np.full(tuple(shape.astype(np.int64)), fill[0], fill.dtype)
    if node is not None and node.op_type == "Constant":
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        if "value_float" in attrs or "value_floats" in attrs:
            return np.array(attrs.get("value_float", attrs.get("value_floats")), np.float32)
    return None


# --- finding the head ---------------------------------------------------------------------------------


class _Stop(Exception):
    """Where the trailing run of dense layers ends (a node, or the model input when not at_node), and
    why: a reason, or None when the op is simply not one the head holds. A fatal stop (a head weight
    that is not finite) refuses the file instead of ending the run."""

    def __init__(self, where: str, reason: str | None = None, at_node: bool = True, fatal: bool = False):
        super().__init__(where)
        self.where, self.reason, self.at_node, self.fatal = where, reason, at_node, fatal

    def why(self) -> str:
        return f": {self.reason}" if self.reason else f"; the head holds {HEAD_OPS}" if self.at_node else ""


@dataclass
class _Quant:
    """A quantized activation in a layer: its scale and zero point tensors, and which of the layer's
    values it holds: "a" (pre-activation), "h" (post-activation) or "mm" (the product before its bias)."""

    scale: str
    zero_point: str | None
    range: str


@dataclass
class _Param:
    """A layer's weight or bias as the file stores it: float, or integer with a scale and zero point."""

    value: np.ndarray  # float32 in the file's layout, dequantized
    tensor: str  # the stored tensor (the integer one when quantized)
    dtype: str = "float32"  # the stored tensor's dtype
    scale: str | None = None  # quantized: its scale tensor (None for an int32 bias at in_scale x w_scale)
    zero_point: str | None = None
    axis: int | None = None  # the axis of a per-channel scale, in the stored layout


@dataclass
class _Layer:
    """One dense layer of the head and where the file keeps it."""

    dense: Dense
    input: str  # the tensor the layer reads
    reader: int  # the node reading it (the dense op, or the DynamicQuantizeLinear in front of it)
    node: int  # its Gemm, MatMul, QGemm, QLinearMatMul or MatMulInteger
    weight: _Param
    bias: _Param | None  # None: the file has no bias
    transposed: bool  # the file stores W as (n_in, n_out)
    add: int | None = None  # the Add (or QLinearAdd) adding the bias, if it is a node of its own
    bn: int | None = None  # a BatchNormalization folded into the layer
    acts: list[_Quant] = field(default_factory=list)
    in_quant: tuple[str, str | None] | None = None  # (scale, zero point) of the layer's quantized input
    in_integer: bool = False  # the op reads the integer tensor itself (QOperator), not its dequantized value


def _head(g: _Graph, n: int | None, name: str) -> tuple[list[_Layer], bool, _Stop]:
    """The trailing `n` dense layers (all of the run when None) in forward order, whether a Softmax
    follows, and where the run stopped."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise BadModelError(f"{name}: head must be a positive number of dense layers or None, got {n!r}")
    output = g.model.graph.output[0].name
    layers: list[_Layer] = []
    softmax, tensor, reader, stop = False, output, None, None
    try:
        softmax, tensor, reader = _softmax(g, output)
        while n is None or len(layers) < n:
            layers.append(_layer(g, tensor, reader))
            tensor, reader = layers[-1].input, layers[-1].reader
        stop = _Stop(f"head={n}", f"the {n} layers asked for")
    except _Stop as found:
        stop = found
    if stop.fatal:
        raise BadModelError(f"{name}: {stop.where}: {stop.reason}")
    if not layers:
        if not stop.at_node:
            raise BadModelError(f"{name}: nothing trainable: no Gemm or MatMul layer between {stop.where} "
                                f"and the output '{output}'")
        raise BadModelError(f"{name}: {stop.where} cannot be part of a trainable head{stop.why()}")
    if n is not None and len(layers) < n:
        raise BadModelError(f"{name}: head={n} asks for {n} dense layers, but the trailing run has "
                            f"{len(layers)}: {stop.where} stops it{stop.why()}")
    return layers[::-1], softmax, stop


def _head_summary(g: _Graph, name: str) -> tuple[list[str], str]:
    """Description.head and .stop: one line per layer split(head=None) takes, and why the run ends there."""
    try:
        layers, softmax, stop = _head(g, None, name)
    except BadModelError as exc:
        return [], str(exc)
    lines = [f"{l.dense.where}: {l.dense.W.shape[1]} -> {l.dense.W.shape[0]}, {l.dense.activation}, {l.dense.form}"
             for l in layers]
    if softmax:
        lines.append("softmax over the outputs")
    n = len(layers)
    if stop.at_node:
        text = f"{stop.where} is not a dense layer" if stop.reason is None else f"{stop.where}: {stop.reason}"
    else:
        text = f"the head starts at {stop.where}"
    more = f"; --head {n - 1} or less trains only the last layers" if n > 1 else ""
    return lines, f"{text}; the head is the {n} dense layer{'s' if n > 1 else ''} after it{more}"


def _softmax(g: _Graph, output: str) -> tuple[bool, str, int | None]:
    """Whether the output is a softmax (passing quantize/dequantize nodes after it), and where the
    layers then end: the tensor and the node reading it."""
    tensor, reader = output, None
    while tensor in g.producer:
        i = g.producer[tensor]
        node = g.nodes[i]
        if node.op_type in ("Softmax", "QLinearSoftmax"):
            _check_softmax(g, i)
            _maker(g, tensor, reader)  # the softmax feeds the output alone
            return True, node.input[0], i
        if not (_passed(g, node) or _activation_quant(g, node)):
            break
        tensor, reader = node.input[0], i
    return False, output, None


def _check_softmax(g: _Graph, i: int) -> None:
    node = g.nodes[i]
    default = -1 if node.op_type == "QLinearSoftmax" or _opset(g.model) >= 13 else 1
    axis = _attrs(node).get("axis", default)
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
    if reader is not None and tensor in g.outputs:
        raise _Stop(g.where(i), f"its output '{tensor}' is also a model output")
    return i


def _passed(g: _Graph, node: onnx.NodeProto) -> bool:
    """An Identity, a Dropout whose mask nobody reads, or a Cast between float16 and float32 (a float16
    file's input and output): the head passes through it (the engine computes in float32)."""
    if node.op_type == "Cast":
        return _float_cast(g, node)
    return node.op_type in _PASSED and bool(node.input) and not any(g.used(t) for t in node.output[1:])


_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _float_cast(g: _Graph, node: onnx.NodeProto) -> bool:
    """A Cast from float16 to float32 or back."""
    return _attrs(node).get("to") in _FLOATS and bool(node.input) and _elem_type(g, node.input[0]) in _FLOATS


def _elem_type(g: _Graph, tensor: str) -> int:
    """A tensor's element type as the file or shape inference declares it (0: unknown)."""
    if tensor in g.initializers:
        return g.initializers[tensor].data_type
    info = g.infos.get(tensor)
    return info.type.tensor_type.elem_type if info is not None else 0


def _activation_quant(g: _Graph, node: onnx.NodeProto) -> bool:
    """A QuantizeLinear of an activation, or a DequantizeLinear of one (not of a stored weight)."""
    return (node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 2
            and _stored(g, node.input[0]) is None and node.input[0] not in g.initializers)


def _through(g: _Graph, tensor: str, reader: int | None, acts: list[_Quant], range_: str) -> int:
    """The node making `tensor`, walking back over nodes the head passes through unchanged and over
    the quantize/dequantize nodes of activations, whose scales go into `acts` as holding `range_`."""
    while True:
        i = _maker(g, tensor, reader)
        node = g.nodes[i]
        if _activation_quant(g, node):
            _add_quant(g, i, acts, range_)
        elif not _passed(g, node):
            return i
        tensor, reader = node.input[0], i


def _add_quant(g: _Graph, i: int, acts: list[_Quant], range_: str) -> None:
    node = g.nodes[i]
    scale, zero = node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None
    _quant_scalar(g, i, scale, zero)
    if all(a.scale != scale for a in acts):
        acts.append(_Quant(scale, zero, range_))


def _quant_scalar(g: _Graph, i: int, scale: str, zero: str | None) -> tuple[float, int, np.dtype]:
    """The stored per-tensor (scale, zero point, integer dtype) an activation is quantized with."""
    s, z = _stored(g, scale), _stored(g, zero) if zero else None
    if s is None or (zero and z is None):
        raise _Stop(g.where(i), f"its scale '{scale}' is not stored in the file")
    if s.size != 1 or (z is not None and z.size != 1):
        raise _Stop(g.where(i), f"it quantizes an activation per channel ('{scale}' holds {s.size} values)")
    dtype = np.dtype(np.uint8) if z is None else z.dtype  # ONNX's default zero point is uint8
    if dtype.kind not in "iu" or not np.isfinite(s).all() or float(s.reshape(())) <= 0:
        raise _Stop(g.where(i), f"its scale '{scale}' is {s.reshape(-1)[0]} with zero point of type {dtype}",
                    fatal=not np.isfinite(s).all())
    return float(s.reshape(())), 0 if z is None else int(z.reshape(())), dtype


def _layer(g: _Graph, tensor: str, reader: int | None) -> _Layer:
    """The dense layer, with its activation and folded BatchNormalization, whose output is `tensor`."""
    post: list[_Quant] = []
    i = _through(g, tensor, reader, post, "h")
    activation, pre = "identity", post
    if g.nodes[i].op_type in _ACTIVATIONS:
        activation, pre = _ACTIVATIONS[g.nodes[i].op_type], []
        i = _through(g, g.nodes[i].input[0], i, pre, "a")
    bn = None
    if g.nodes[i].op_type == "BatchNormalization":
        bn = i
        i = _through(g, g.nodes[i].input[0], i, pre, "a")
    layer = _dense_op(g, i, pre)
    layer.acts = post + pre if pre is not post else post
    if activation == "identity" and any(_clamps_at_zero(g, a) for a in layer.acts if a.range != "mm"):
        activation = "relu"  # the quantizer folded a Relu into the output's zero point
        for a in layer.acts:
            a.range = "h" if a.range != "mm" else a.range
    layer.dense.activation = activation
    if bn is not None:
        _fold(g, bn, layer)
    if not (np.isfinite(layer.dense.W).all() and np.isfinite(layer.dense.b).all()):
        raise _Stop(layer.dense.where, "its weights hold NaN or Inf once read as float32", fatal=True)
    return layer


def _clamps_at_zero(g: _Graph, act: _Quant) -> bool:
    """Whether a quantized activation's zero point is its type's minimum: it holds no negative values."""
    zero = _stored(g, act.zero_point) if act.zero_point else None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    return (0 if zero is None else int(zero.reshape(()))) == np.iinfo(dtype).min


def _dense_op(g: _Graph, i: int, acts: list[_Quant]) -> _Layer:
    """The layer whose product (and bias) node i makes; `acts` takes the quantized products it passes."""
    op = g.nodes[i].op_type
    if op == "Gemm":
        return _gemm(g, i)
    if op == "QGemm":
        return _qgemm(g, i, acts)
    if op in ("MatMul", "QLinearMatMul"):
        return _matmul(g, i, None, acts)
    if op == "Mul":
        return _dynamic(g, i, None)
    if op in ("Add", "QLinearAdd"):
        return _added(g, i, acts)
    if op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
        return _fused_dynamic(g, i)
    raise _Stop(g.where(i), "this quantized op is not one edgefdfa reads in a head" if _quantized(op) else None)


def _added(g: _Graph, i: int, acts: list[_Quant]) -> _Layer:
    """An Add (or QLinearAdd) of a stored bias to a MatMul's (or QLinearMatMul's, or MatMulInteger's) product."""
    node = g.nodes[i]
    sides = (0, 3) if node.op_type == "QLinearAdd" else (0, 1)
    for k, other in (sides, sides[::-1]):
        product, bias = node.input[k], node.input[other]
        mm_acts: list[_Quant] = []
        try:
            j = _through(g, product, i, mm_acts, "mm")
        except _Stop:
            continue
        if g.nodes[j].op_type in ("MatMul", "QLinearMatMul") and (node.op_type == "QLinearAdd") == (
                g.nodes[j].op_type == "QLinearMatMul"):
            layer = _matmul(g, j, (i, bias), acts)
        elif g.nodes[j].op_type == "Mul" and node.op_type == "Add":
            layer = _dynamic(g, j, (i, bias))
        else:
            continue
        acts.extend(mm_acts)
        if node.op_type == "QLinearAdd":
            _add_quant_at(g, i, node.input[6], node.input[7] if len(node.input) > 7 else None, acts, "a")
        return layer
    raise _Stop(g.where(i), "it adds two computed tensors, not a stored bias to a dense layer's product")


def _add_quant_at(g: _Graph, i: int, scale: str, zero: str | None, acts: list[_Quant], range_: str) -> None:
    _quant_scalar(g, i, scale, zero or None)
    if all(a.scale != scale for a in acts):
        acts.append(_Quant(scale, zero or None, range_))


def _gemm(g: _Graph, i: int) -> _Layer:
    node, attrs = g.nodes[i], _attrs(g.nodes[i])
    if attrs.get("transA", 0):
        raise _Stop(g.where(i), "transA=1 (a transposed input) is not a dense layer per sample")
    B = _param(g, i, node.input[1], "weight", matrix=True)
    transB = bool(attrs.get("transB", 0))
    W = np.float32(attrs.get("alpha", 1.0)) * (B.value if transB else B.value.T)  # (n_out, n_in)
    bias = _param(g, i, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    b = np.float32(attrs.get("beta", 1.0)) * _bias_vector(g, i, bias, len(W))
    in_quant = _dequantized_input(g, node.input[0])
    form = _form(B, in_quant)
    dense = Dense(np.ascontiguousarray(W), b, "identity", g.where(i), form)
    return _Layer(dense, node.input[0], i, i, B, bias, not transB, in_quant=in_quant)


def _qgemm(g: _Graph, i: int, acts: list[_Quant]) -> _Layer:
    """com.microsoft QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): int32 C at a_scale x b_scale."""
    node, attrs = g.nodes[i], _attrs(g.nodes[i])
    inputs = list(node.input) + [""] * (9 - len(node.input))
    if attrs.get("transA", 0):
        raise _Stop(g.where(i), "transA=1 (a transposed input) is not a dense layer per sample")
    if attrs.get("alpha", 1.0) != 1.0:
        raise _Stop(g.where(i), f"alpha={attrs['alpha']}: edgefdfa reads QGemm layers with alpha 1")
    transB = bool(attrs.get("transB", 0))
    B = _quantized_param(g, i, inputs[3], inputs[4], inputs[5] or None, 0 if transB else 1, "weight", matrix=True)
    a_scale, _, _ = _quant_scalar(g, i, inputs[1], inputs[2] or None)
    W = B.value if transB else B.value.T
    bias = None
    if inputs[6]:
        C = _integer(g, i, inputs[6], "bias")
        w_scale = _stored(g, inputs[4]).astype(np.float32).reshape(-1)
        bias = _Param(C.astype(np.float32) * (np.float32(a_scale) * w_scale), inputs[6], str(C.dtype))
    b = _bias_vector(g, i, bias, len(W))
    if inputs[7]:
        _add_quant_at(g, i, inputs[7], inputs[8] or None, acts, "a")
    dense = Dense(np.ascontiguousarray(W), b, "identity", g.where(i), "int8")
    return _Layer(dense, inputs[0], i, i, B, bias, not transB, in_quant=(inputs[1], inputs[2] or None), in_integer=True)


def _matmul(g: _Graph, i: int, add: tuple[int, str] | None, acts: list[_Quant]) -> _Layer:
    """MatMul(A, B) or QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp), with the bias of
    the Add or QLinearAdd(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp) after it."""
    node = g.nodes[i]
    known = g.infos.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type
    if known.HasField("shape") and len(known.shape.dim) != 2:
        raise _Stop(g.where(i), f"it multiplies a rank-{len(known.shape.dim)} tensor, not one vector per sample")
    if node.op_type == "QLinearMatMul":
        inputs = list(node.input) + [""] * (8 - len(node.input))
        B = _quantized_param(g, i, inputs[3], inputs[4], inputs[5] or None, 1, "weight", matrix=True)
        _quant_scalar(g, i, inputs[1], inputs[2] or None)
        _add_quant_at(g, i, inputs[6], inputs[7] or None, acts, "mm")
        in_quant, integer = (inputs[1], inputs[2] or None), True
    else:
        B = _param(g, i, node.input[1], "weight", matrix=True)  # (n_in, n_out)
        in_quant, integer = _dequantized_input(g, node.input[0]), False
    bias, where = None, g.where(i)
    if add is not None:
        k, tensor = add
        where = g.where(i, f"{node.op_type}+{g.nodes[k].op_type}")
        if g.nodes[k].op_type == "QLinearAdd":
            at = list(g.nodes[k].input).index(tensor)
            zero = g.nodes[k].input[at + 2] if len(g.nodes[k].input) > at + 2 else ""
            bias = _quantized_param(g, k, tensor, g.nodes[k].input[at + 1], zero or None, None, "bias")
        else:
            bias = _param(g, k, tensor, "bias")
    b = _bias_vector(g, i if add is None else add[0], bias, B.value.shape[1])
    dense = Dense(np.ascontiguousarray(B.value.T), b, "identity", where, _form(B, in_quant))
    return _Layer(dense, node.input[0], i, i, B, bias, True, None if add is None else add[0],
                  in_quant=in_quant, in_integer=integer)


def _dynamic(g: _Graph, i: int, add: tuple[int, str] | None) -> _Layer:
    """Dynamic quantization's layer: Mul(Cast(MatMulInteger(q, Wq, zp, w_zp)), Mul(scale, w_scale)) with
    q, scale, zp = DynamicQuantizeLinear(x), then an Add of a float bias."""
    mul = g.nodes[i]
    for k in (0, 1):
        cast = g.producer.get(mul.input[k])
        if cast is None or g.nodes[cast].op_type != "Cast" or g.nodes[cast].input[0] not in g.producer:
            continue
        m = g.producer[g.nodes[cast].input[0]]
        if g.nodes[m].op_type == "MatMulInteger":
            break
    else:
        raise _Stop(g.where(i), None)
    mmi = g.nodes[m]
    inputs = list(mmi.input) + [""] * (4 - len(mmi.input))
    dql = g.producer.get(inputs[0])
    scales = g.producer.get(mul.input[1 - k])
    if dql is None or g.nodes[dql].op_type != "DynamicQuantizeLinear" or scales is None or \
            g.nodes[scales].op_type != "Mul" or g.nodes[dql].output[0] != inputs[0]:
        raise _Stop(g.where(m), "its input is not quantized by a DynamicQuantizeLinear it alone reads")
    w_scale = [t for t in g.nodes[scales].input if t != g.nodes[dql].output[1]]
    if len(w_scale) != 1 or inputs[2] != g.nodes[dql].output[2]:
        raise _Stop(g.where(m), "its scales do not come from its input's DynamicQuantizeLinear and a stored scale")
    for j, t in ((m, inputs[0]), (cast, mmi.output[0]), (i, mul.input[k]), (i, mul.input[1 - k])):
        _maker(g, t, j)
    B = _quantized_param(g, m, inputs[1], w_scale[0], inputs[3] or None, 1, "weight", matrix=True)
    bias, where = None, g.where(m)
    if add is not None:
        where = g.where(m, "MatMulInteger+Add")
        bias = _param(g, add[0], add[1], "bias")
    b = _bias_vector(g, m if add is None else add[0], bias, B.value.shape[1])
    dense = Dense(np.ascontiguousarray(B.value.T), b, "identity", where, "dynamic")
    layer = _Layer(dense, g.nodes[dql].input[0], dql, m, B, bias, True, None if add is None else add[0])
    return layer


def _fused_dynamic(g: _Graph, i: int) -> _Layer:
    """onnxruntime's fused dynamic layers (com.microsoft): DynamicQuantizeMatMul(A, B, b_scale, b_zp, bias)
    reads a float A; MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zp, b_zp, bias) reads A, a_scale and
    a_zp from a DynamicQuantizeLinear of the layer's float input."""
    node = g.nodes[i]
    fused = node.op_type == "DynamicQuantizeMatMul"
    inputs = list(node.input) + [""] * (7 - len(node.input))
    scale, zero, bias_at = (2, 3, 4) if fused else (3, 5, 6)
    B = _quantized_param(g, i, inputs[1], inputs[scale], inputs[zero] or None, 1, "weight", matrix=True)
    bias = _param(g, i, inputs[bias_at], "bias") if inputs[bias_at] else None
    b = _bias_vector(g, i, bias, B.value.shape[1])
    dense = Dense(np.ascontiguousarray(B.value.T), b, "identity", g.where(i), "dynamic")
    if fused:
        return _Layer(dense, inputs[0], i, i, B, bias, True)
    dql = g.producer.get(inputs[0])
    if dql is None or g.nodes[dql].op_type != "DynamicQuantizeLinear" or \
            list(g.nodes[dql].output[:3]) != [inputs[0], inputs[2], inputs[4]]:
        raise _Stop(g.where(i), "its input is not quantized by a DynamicQuantizeLinear it alone reads")
    for t in g.nodes[dql].output:
        _maker(g, t, i)
    return _Layer(dense, g.nodes[dql].input[0], dql, i, B, bias, True)


def _form(weight: _Param, in_quant: tuple | None) -> str:
    if weight.scale is None:
        return weight.dtype  # float32 or float16
    return "int8" if in_quant is not None else "dynamic"


def _dequantized_input(g: _Graph, tensor: str) -> tuple[str, str | None] | None:
    """The (scale, zero point) of the DequantizeLinear making a QDQ layer's input, if one does."""
    j = g.producer.get(tensor)
    if j is None or not _activation_quant(g, g.nodes[j]) or g.nodes[j].op_type != "DequantizeLinear":
        return None
    node = g.nodes[j]
    return node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None


def _param(g: _Graph, i: int, tensor: str, role: str, matrix: bool = False) -> _Param:
    """The weight or bias node i reads: stored float32 or float16 (as it is, or through a Cast to float32),
    or an integer tensor a DequantizeLinear dequantizes."""
    where, maker = g.where(i), g.producer.get(tensor)
    _alone(g, i, tensor, role)
    dq = g.nodes[maker] if maker is not None else None
    if dq is not None and dq.op_type == "Cast" and _attrs(dq).get("to") == TensorProto.FLOAT and \
            _elem_type(g, dq.input[0]) == TensorProto.FLOAT16 and _stored(g, dq.input[0]) is not None:
        return _param(g, maker, dq.input[0], role, matrix)  # float16 storage, float32 arithmetic
    if dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) >= 2 and (
            dq.input[0] in g.initializers or _is_constant(g, dq.input[0])):
        attrs = _attrs(dq)
        if attrs.get("block_size", 0):
            raise _Stop(where, f"its {role} '{tensor}' is block-quantized, which edgefdfa does not read")
        zero = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
        return _quantized_param(g, maker, dq.input[0], dq.input[1], zero, attrs.get("axis", 1), role, matrix)
    value = _stored(g, tensor)
    if value is None:
        if maker is None:
            raise _Stop(where, f"its {role} '{tensor}' is a model input, not a stored weight")
        if _quantized(g.nodes[maker].op_type):
            raise _Stop(where, f"its {role} '{tensor}' comes from {g.where(maker)}, a quantized form edgefdfa "
                               "does not read")
        raise _Stop(where, f"its {role} '{tensor}' is computed by {g.where(maker)}, not stored")
    if value.dtype not in (np.float32, np.float16):
        raise _Stop(where, f"its {role} '{tensor}' is {value.dtype}, not float32 or float16")
    _shape_check(g, i, tensor, value, role, matrix)
    _finite(where, tensor, value, role)
    return _Param(value.astype(np.float32), tensor, value.dtype.name)


def _is_constant(g: _Graph, tensor: str) -> bool:
    return tensor in g.producer and g.nodes[g.producer[tensor]].op_type in ("Constant", "ConstantOfShape")


def _quantized_param(g: _Graph, i: int, tensor: str, scale: str, zero: str | None, axis: int | None, role: str,
                     matrix: bool = False) -> _Param:
    """An integer weight or bias stored with its scale and zero point, dequantized to float32."""
    where = g.where(i)
    _alone(g, i, tensor, role)
    q = _integer(g, i, tensor, role)
    s, z = _stored(g, scale), _stored(g, zero) if zero else None
    if s is None or (zero and z is None):
        raise _Stop(where, f"the scale or zero point of its {role} '{tensor}' is not stored in the file")
    _finite(where, scale, s, f"{role} scale")
    if s.size > 1:
        if axis is None or q.ndim == 0:
            raise _Stop(where, f"its {role} '{tensor}' has {s.size} scales but no channel axis")
        axis = axis % q.ndim
        if s.size != q.shape[axis] or (z is not None and z.size != s.size):
            raise _Stop(where, f"its {role} '{tensor}' has {s.size} scales for {q.shape[axis]} channels")
    elif z is not None and z.size != 1:
        raise _Stop(where, f"its {role} '{tensor}' has one scale but {z.size} zero points")
    value = onnx_quant.dequantize(q, s, z, axis if s.size > 1 else None)
    _shape_check(g, i, tensor, value, role, matrix)
    return _Param(value, tensor, str(q.dtype), scale, zero, axis if s.size > 1 else None)


def _integer(g: _Graph, i: int, tensor: str, role: str) -> np.ndarray:
    q = _stored(g, tensor)
    if q is None:
        raise _Stop(g.where(i), f"its quantized {role} '{tensor}' is not stored in the file")
    if q.dtype not in (np.int8, np.uint8, np.int32):
        raise _Stop(g.where(i), f"its quantized {role} '{tensor}' is {q.dtype}; edgefdfa reads int8, uint8 and "
                                "int32 quantized (int8) heads")
    return q


def _alone(g: _Graph, i: int, tensor: str, role: str) -> None:
    shared = [j for j in g.readers.get(tensor, []) if j != i]
    if shared:
        raise _Stop(g.where(i), f"its {role} '{tensor}' is shared with {g.where(shared[0])}")


def _shape_check(g: _Graph, i: int, tensor: str, value: np.ndarray, role: str, matrix: bool) -> None:
    if matrix and value.ndim != 2:
        raise _Stop(g.where(i), f"its {role} '{tensor}' has shape {value.shape}, not a matrix")


def _finite(where: str, tensor: str, value: np.ndarray, role: str) -> None:
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _Stop(where, f"its {role} '{tensor}' holds NaN or Inf", fatal=True)


def _bias_vector(g: _Graph, i: int, bias: _Param | None, n_out: int) -> np.ndarray:
    """A layer's bias as (n_out,) float32 (zeros when the file has none)."""
    if bias is None:
        return np.zeros(n_out, np.float32)
    C = bias.value
    if C.size not in (1, n_out) or C.ndim > 2 or (C.ndim == 2 and C.shape[0] != 1):
        raise _Stop(g.where(i), f"its bias '{bias.tensor}' has shape {C.shape}, not one value per output ({n_out})")
    return np.broadcast_to(C.reshape(-1), (n_out,)).astype(np.float32)


def _fold(g: _Graph, k: int, layer: _Layer) -> None:
    """Fold BatchNormalization node k, right after `layer`, into its W and b: y = s (Wx + b - mean) + shift
    with s = scale / sqrt(var + eps), computed in float64."""
    node, where = g.nodes[k], g.where(k)
    if layer.dense.form != "float32":
        raise _Stop(where, "it follows a quantized layer; edgefdfa folds BatchNormalization into float layers only")
    if any(g.used(t) for t in node.output[1:]) or _attrs(node).get("training_mode", 0):
        raise _Stop(where, "it is in training mode (it updates its running statistics)")
    known = g.infos.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type
    if known.HasField("shape") and len(known.shape.dim) != 2:
        raise _Stop(where, f"it normalizes a rank-{len(known.shape.dim)} tensor, not one vector per sample")
    n_out = len(layer.dense.b)
    stats = []
    for role, tensor in zip(("scale", "shift", "mean", "variance"), node.input[1:5]):
        _alone(g, k, tensor, role)
        value = _stored(g, tensor)
        if value is None or value.dtype != np.float32 or value.size != n_out:
            raise _Stop(where, f"its {role} '{tensor}' is not {n_out} stored float32 values")
        _finite(where, tensor, value, role)
        stats.append(value.reshape(-1).astype(np.float64))
    if len(stats) != 4:
        raise _Stop(where, "it has fewer than 5 inputs")
    scale, shift, mean, var = stats
    var = var + float(_attrs(node).get("epsilon", 1e-5))
    if (var <= 0).any():
        raise _Stop(where, f"its variance '{node.input[4]}' plus epsilon is {var.min():g}, not positive", fatal=True)
    s = scale / np.sqrt(var)
    dense = layer.dense
    dense.W = (s[:, None] * dense.W.astype(np.float64)).astype(np.float32)
    dense.b = (s * (dense.b.astype(np.float64) - mean) + shift).astype(np.float32)
    dense.where = g.where(layer.node, f"{g.nodes[layer.node].op_type}+BatchNormalization")
    layer.bn = k


def _start(g: _Graph, layer: _Layer) -> tuple[str, tuple[str, str | None] | None]:
    """Where the backbone ends: the float tensor the first layer's input is quantized from (walking back
    over the head's own Identity, Dropout, QuantizeLinear and DequantizeLinear nodes), and the (scale,
    zero point) to dequantize it with if it is an integer tensor."""
    tensor, reader = layer.input, layer.reader
    quant = layer.in_quant if layer.in_integer else None
    while tensor in g.producer and g.readers.get(tensor) == [reader] and tensor not in g.outputs:
        i = g.producer[tensor]
        node = g.nodes[i]
        if _activation_quant(g, node):
            quant = None if node.op_type == "QuantizeLinear" else \
                (node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None)
        elif not _passed(g, node):
            break
        tensor, reader = node.input[0], i
    return tensor, quant


# --- the backbone -------------------------------------------------------------------------------------


def _backbone(g: _Graph, tensor: str, dequantize: tuple[str, str | None] | None, half: bool) -> tuple[bytes, str]:
    """The file from its input up to `tensor` (the head's input) as a model of its own, ending in a
    DequantizeLinear with `dequantize`'s (scale, zero point) when `tensor` is quantized, or in a Cast
    to float32 when it is float16 (`half`); and its output."""
    model = onnx.ModelProto()
    model.CopyFrom(g.model)
    graph = model.graph
    keep, todo = set(), [tensor, *(dequantize or ())]
    while todo:
        t = todo.pop()
        if t and t in g.producer and g.producer[t] not in keep:
            keep.add(g.producer[t])
            todo.extend(_reads(g.nodes[g.producer[t]]))
    for i in reversed(range(len(graph.node))):  # what stays keeps the file's order, which is topological
        if i not in keep:
            del graph.node[i]
    output = tensor
    if dequantize is not None:
        output = g.new_name(f"{tensor}.dequantized")
        graph.node.append(helper.make_node("DequantizeLinear", [tensor, *(t for t in dequantize if t)], [output],
                                           name=g.new_name(f"{tensor}.dequantize")))
    elif half:
        output = g.new_name(f"{tensor}.float32")
        graph.node.append(helper.make_node("Cast", [tensor], [output], name=g.new_name(f"{tensor}.cast"),
                                           to=TensorProto.FLOAT))
    used = {t for node in graph.node for t in (*_reads(node), *node.output)}
    _remove(graph.initializer, lambda t: t.name not in used)
    _remove(graph.input, lambda v: v.name in g.initializers and v.name not in used)
    _remove(graph.value_info, lambda v: v.name not in used)
    del graph.output[:]
    if output == tensor and tensor in g.infos:
        graph.output.append(g.infos[tensor])
    else:
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in g.infos[tensor].type.tensor_type.shape.dim] if tensor in g.infos else None
        graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, shape))
    return model.SerializeToString(), output


def _prune(graph: onnx.GraphProto) -> None:
    """Delete, in place, the nodes and initializers nothing reads any more (a head's old weights)."""
    while True:
        used = {t for node in graph.node for t in _reads(node)} | {v.name for v in graph.output}
        dead = [k for k, node in enumerate(graph.node) if not any(t in used for t in node.output)]
        if not dead:
            break
        for k in reversed(dead):
            del graph.node[k]
    _drop_unused_initializers(graph, {t.name for t in graph.initializer})


def _drop_unused_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Delete, in place, those initializers in `names` that no node reads (a folded BatchNormalization's)."""
    used = {t for node in graph.node for t in _reads(node)} | {v.name for v in graph.output}
    unused = {t.name for t in graph.initializer if t.name in names and t.name not in used}
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
    if layer.bias is None and b.any() and _takes_no_bias(layer):
        raise BadModelError(f"{name}: {layer.dense.where} has no bias in the file and its {layer.dense.form} form "
                            "cannot take one; learn it with its bias at zero")
    return W, b


def _takes_no_bias(layer: _Layer) -> bool:
    """A quantized layer without a bias that no bias can be added to in its form (an Add after its
    integer product would add to the wrong tensor)."""
    return layer.in_integer and layer.weight.scale is not None and layer.dense.where.endswith("QLinearMatMul)") \
        or layer.dense.form == "dynamic" and layer.dense.where.endswith("MatMulInteger)")


def _ranges(ranges: np.ndarray, n: int, name: str) -> np.ndarray:
    """`ranges` checked: (n, 4) finite [min a, max a, min h, max h] with each min <= its max."""
    r = np.asarray(ranges, np.float64)
    if r.shape != (n, 4) or not np.isfinite(r).all() or (r[:, 0] > r[:, 1]).any() or (r[:, 2] > r[:, 3]).any():
        raise BadModelError(f"{name}: ranges must be ({n}, 4) finite [min a, max a, min h, max h] rows with "
                            f"min <= max, given shape {r.shape}")
    return r


def _write_activation(g: _Graph, act: _Quant, r: np.ndarray, b: np.ndarray) -> None:
    """A quantized activation's scale and zero point from its observed range (the product before the
    bias lies within the pre-activation's range minus the bias's)."""
    lo, hi = {"a": (r[0], r[1]), "h": (r[2], r[3]), "mm": (r[0] - b.max(), r[1] - b.min())}[act.range]
    zero = _stored(g, act.zero_point) if act.zero_point else None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    if zero is None:
        lo = 0.0  # no zero point tensor: it is 0, so the range starts at 0
    scale, zp = onnx_quant.affine(lo, hi, dtype)
    _store(g, act.scale, np.full(_stored(g, act.scale).shape, scale, np.float32))
    if zero is not None:
        _store(g, act.zero_point, np.full(zero.shape, zp, dtype))


def _write_layer(g: _Graph, layer: _Layer, W: np.ndarray, b: np.ndarray) -> None:
    if layer.bn is not None:  # the layer holds the normalization now; first, before an inserted Add shifts it
        bn = g.nodes[layer.bn]
        bn.CopyFrom(helper.make_node("Identity", [bn.input[0]], [bn.output[0]], name=bn.name))
    node = g.nodes[layer.node]
    attrs = _attrs(node)
    for key in ("alpha", "beta"):  # W and b go in as they are; dividing by alpha would round
        if attrs.get(key, 1.0) != 1.0:
            _remove(node.attribute, lambda a: a.name == key)
            node.attribute.append(helper.make_attribute(key, 1.0))
    w_scale = _write_param(g, layer.weight, W.T if layer.transposed else W)
    if layer.bias is not None:
        _write_bias(g, layer, b, w_scale)
    elif b.any():
        _add_bias(g, layer, b, w_scale)


def _write_param(g: _Graph, p: _Param, value: np.ndarray) -> np.ndarray | None:
    """Store a weight in the file's form; the new scale of a quantized one, flat (per tensor: one value)."""
    if p.scale is None:
        _store(g, p.tensor, value.astype(p.dtype).reshape(p.value.shape))
        return None
    q, s, z = onnx_quant.symmetric(value.reshape(p.value.shape), np.dtype(p.dtype), _stored(g, p.scale).shape, p.axis)
    _store_quantized(g, p, q, s, z)
    return s.reshape(-1)


def _store_quantized(g: _Graph, p: _Param, q: np.ndarray, s: np.ndarray, z: np.ndarray) -> None:
    _store(g, p.tensor, q)
    _store(g, p.scale, s)
    if p.zero_point:
        old = _stored(g, p.zero_point)
        _store(g, p.zero_point, z.astype(old.dtype).reshape(old.shape))
    elif z.any():
        raise BadModelError(f"'{p.tensor}' is {p.dtype} without a zero point, which symmetric weights need")


def _write_bias(g: _Graph, layer: _Layer, b: np.ndarray, w_scale: np.ndarray | None) -> None:
    """Store a bias in the file's form: float32, int32 at in_scale x w_scale, or int8 at its own scale."""
    p = layer.bias
    value = b.reshape(p.value.shape) if p.value.size == b.size else b
    if p.dtype in ("float32", "float16"):
        _store(g, p.tensor, value.astype(p.dtype))
        return
    if p.dtype != "int32":
        q, s, z = onnx_quant.symmetric(value, np.dtype(p.dtype), _stored(g, p.scale).shape, p.axis)
        _store_quantized(g, p, q, s, z)
        return
    in_scale = np.float32(_stored(g, layer.in_quant[0]).reshape(())) if layer.in_quant else np.float32(1)
    scale = (in_scale * (w_scale if w_scale is not None else np.ones(1, np.float32))).astype(np.float32)
    _store(g, p.tensor, onnx_quant.bias32(value, np.broadcast_to(scale, value.shape) if scale.size > 1 else scale[0]))
    if p.scale:  # QDQ: the bias's DequantizeLinear carries its scale
        old = _stored(g, p.scale)
        if scale.size not in (1, old.size):
            raise BadModelError(f"the bias scale '{p.scale}' holds {old.size} values for {scale.size} weight scales")
        _store(g, p.scale, np.broadcast_to(scale, old.shape).astype(np.float32) if old.size > 1 or old.ndim else
               scale.reshape(old.shape))
        if p.zero_point:
            zero = _stored(g, p.zero_point)
            _store(g, p.zero_point, np.zeros(zero.shape, zero.dtype))


def _store(g: _Graph, tensor: str, value: np.ndarray) -> None:
    """Give a stored tensor a new value in place: its initializer, or the Constant node making it."""
    array = numpy_helper.from_array(np.array(value, order="C"), tensor)  # ascontiguousarray would make a scalar 1-D
    if tensor in g.initializers:
        g.initializers[tensor].CopyFrom(array)
        for declared in g.model.graph.input:  # IR < 4 also lists initializers as inputs, with their shape
            if declared.name == tensor:
                declared.CopyFrom(helper.make_tensor_value_info(tensor, array.data_type, value.shape))
    else:
        maker = g.nodes[g.producer[tensor]]
        maker.CopyFrom(helper.make_node("Constant", [], [tensor], name=maker.name, value=array))


def _add_bias(g: _Graph, layer: _Layer, b: np.ndarray, w_scale: np.ndarray | None) -> None:
    """A bias for a layer the file has none for: a new Gemm input C (QGemm: int32 at in_scale x w_scale),
    or a new Add after the MatMul."""
    node, graph = g.nodes[layer.node], g.model.graph
    broadcast = {"broadcast": 1} if _opset(g.model) < 7 else {}  # before opset 7, Gemm and Add broadcast on request
    bias = g.new_name(f"{node.name or node.op_type}.bias")
    if node.op_type == "QGemm":
        scale = np.float32(_stored(g, layer.in_quant[0]).reshape(())) * w_scale
        graph.initializer.append(numpy_helper.from_array(onnx_quant.bias32(b, scale), bias))
        while len(node.input) < 7:
            node.input.append("")
        node.input[6] = bias
        return
    b = b.astype(np.float16) if _elem_type(g, node.input[0]) == TensorProto.FLOAT16 else b  # the layer's arithmetic
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
