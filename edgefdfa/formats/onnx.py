"""ONNX model files: read one (external data included: onnx_data), describe it, cut it into a frozen
backbone and a trainable dense head (found by onnx_head), write a trained head back into it in each
layer's own form (float32, float16, or requantized by onnx_quant), and build small MLP files from
NumPy weights (for tools and tests).

The backbone is the file up to the head's input, ending in a DequantizeLinear (a quantized input) or a
Cast (a float16 one) so that it hands the runtime float32 features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import BadModelError
from . import onnx_data, onnx_quant
from .base import FORMS, Description, Split, TensorInfo
from .onnx_graph import (Graph, Stop, elem_type, node_attrs, opset_version, parse, parsing, reads, stored_value,
                         tensor_info)
from .onnx_head import ACTIVATIONS, Layer, Param, Quant, find, head_start, summary

SUFFIX = ".onnx"
MAX_IR, MAX_OPSET = 10, 21  # what common runtimes load; onnx's own table pairs opset 21 with IR 10


def read(path: str | Path) -> tuple[bytes, dict]:
    """The file's bytes with any external data embedded, and {"external_data": its location} ({} if none)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None
    with parsing(path.name):
        model = parse(raw, path.name)
        locations = onnx_data.embed(model, path.parent, path.name)
        if not locations:
            return raw, {}
        return model.SerializeToString(), {"external_data": locations[0] if len(locations) == 1 else locations}


def write(path: str | Path, data: bytes, storage: dict) -> list[Path]:
    """Write `data` to `path` atomically; its large tensors in `<name>.data` beside it when `storage`
    says the source kept external data. The files written, the model first."""
    path = Path(path)
    with parsing(path.name):
        model = parse(data, path.name)
        external = [t.name for t in onnx_data.tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise BadModelError(f"{path.name}: tensor '{external[0]}' still refers to external data; "
                            "write takes self-contained bytes (as read returns them)")
    return onnx_data.write(path, model, bool(storage.get("external_data")))  # a full disk is an OSError, as for any file


def describe(data: bytes, name: str) -> Description:
    """Inputs, outputs and op types in execution order, the file's versions and producer, and the head
    split(head=None) would take with where and why it stops. Refuses only what does not parse."""
    with parsing(name):
        model = parse(data, name)
        g = Graph(model)
        head, stop = summary(g, name)
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
    with parsing(name):
        model = parse(data, name)
        g = Graph(model)
        layers, softmax, _ = find(g, head, name)
        model_input, output = _single_input_output(g, name)
        start, dequantize = head_start(g, layers[0])
        n_in = layers[0].dense.W.shape[1]
        half = dequantize is None and elem_type(g, start) == TensorProto.FLOAT16  # the features go out as float32
        if start == model_input.name and dequantize is None and not half:
            backbone, head_input = None, tensor_info(model_input)
        else:
            backbone, out = _backbone(g, start, dequantize, half)
            shape = tensor_info(g.infos[start]).shape if start in g.infos else (None, n_in)
            head_input = TensorInfo(out, shape, "float32")
        return Split(
            backbone=backbone,
            head=[layer.dense for layer in layers],
            softmax=softmax,
            input=tensor_info(model_input),
            head_input=head_input,
            output=tensor_info(output),
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
    with parsing(name):
        model = parse(data, name)
        g = Graph(model)
        layers, _, _ = find(g, len(head), name)
        _single_input_output(g, name)
        weights = [_checked(g, layer, W, b, name) for layer, (W, b) in zip(layers, head)]
        if ranges is not None:
            for layer, r, (_, b) in zip(layers, _ranges(ranges, len(layers), name), weights):
                for act in layer.acts:
                    _write_activation(g, act, r, b)
        folded = {t for layer in layers if layer.bn is not None for t in g.nodes[layer.bn].input}
        for layer, (W, b) in reversed(list(zip(layers, weights))):  # last first: an inserted Add shifts later nodes
            _write_layer(g, layer, W, b)
        _drop_unused_initializers(g.model.graph, folded)
        if opset_version(model) <= MAX_OPSET:
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
    ops = {v: k for k, v in ACTIVATIONS.items()}
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


def _io_info(g: Graph, value: onnx.ValueInfoProto, is_input: bool) -> TensorInfo:
    """A model input's or output's TensorInfo, with the (scale, zero point) of an integer one that a
    DequantizeLinear reads (an input) or a QuantizeLinear makes (an output)."""
    info = tensor_info(value)
    if not info.dtype.startswith(("int", "uint")):
        return info
    nodes = [g.nodes[j] for j in g.readers.get(value.name, [])] if is_input else \
        [g.nodes[g.producer[value.name]]] if value.name in g.producer else []
    op = "DequantizeLinear" if is_input else "QuantizeLinear"
    for node in nodes:
        if node.op_type == op and len(node.input) > 1:
            with contextlib.suppress(Stop):
                scale = stored_value(g, node.input[1])
                zero = stored_value(g, node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if scale is not None and scale.size == 1:
                    info.quantization = (float(scale.reshape(())), 0 if zero is None else int(zero.reshape(-1)[0]))
    return info


def _single_input_output(g: Graph, name: str) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    """The model's one input and one output; refuses any other count."""
    outputs = g.model.graph.output
    if len(g.inputs) != 1 or len(outputs) != 1:
        raise BadModelError(f"{name}: the model has {len(g.inputs)} inputs and {len(outputs)} outputs; "
                            "edgefdfa needs exactly one of each")
    return g.inputs[0], outputs[0]


# --- the backbone -------------------------------------------------------------------------------------


def _backbone(g: Graph, tensor: str, dequantize: tuple[str, str | None] | None, half: bool) -> tuple[bytes, str]:
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
            todo.extend(reads(g.nodes[g.producer[t]]))
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
    used = {t for node in graph.node for t in (*reads(node), *node.output)}
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
        used = {t for node in graph.node for t in reads(node)} | {v.name for v in graph.output}
        dead = [k for k, node in enumerate(graph.node) if not any(t in used for t in node.output)]
        if not dead:
            break
        for k in reversed(dead):
            del graph.node[k]
    _drop_unused_initializers(graph, {t.name for t in graph.initializer})


def _drop_unused_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Delete, in place, those initializers in `names` that no node reads (a folded BatchNormalization's)."""
    used = {t for node in graph.node for t in reads(node)} | {v.name for v in graph.output}
    unused = {t.name for t in graph.initializer if t.name in names and t.name not in used}
    _remove(graph.initializer, lambda t: t.name in unused)
    _remove(graph.input, lambda v: v.name in unused)  # IR < 4 also lists initializers as inputs


def _remove(field, unwanted: Callable) -> None:
    """Delete, in place, the items of a repeated protobuf field for which unwanted(item) holds."""
    for k in reversed(range(len(field))):
        if unwanted(field[k]):
            del field[k]


# --- writing the head back ----------------------------------------------------------------------------


def _checked(g: Graph, layer: Layer, W: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A new layer's (W, b) as float32, refused unless it has the layer's shape, is finite, and fits its form."""
    W, b = np.asarray(W, np.float32), np.asarray(b, np.float32)
    old = layer.dense.W.shape
    if W.shape != old or b.shape != old[:1]:
        raise BadModelError(f"{name}: {layer.dense.where} holds W {old} and b {old[:1]}; "
                            f"the new head gives W {W.shape} and b {b.shape}")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise BadModelError(f"{name}: the new weights for {layer.dense.where} hold NaN or Inf")
    if layer.bias is None and b.any() and g.nodes[layer.node].op_type in ("QLinearMatMul", "MatMulInteger"):
        raise BadModelError(f"{name}: {layer.dense.where} has no bias in the file, and as {FORMS[layer.dense.form]} "
                            "it cannot take one; learn it with its bias at zero")
    return W, b


def _ranges(ranges: np.ndarray, n: int, name: str) -> np.ndarray:
    """`ranges` checked: (n, 4) finite [min a, max a, min h, max h] with each min <= its max."""
    r = np.asarray(ranges, np.float64)
    if r.shape != (n, 4) or not np.isfinite(r).all() or (r[:, 0] > r[:, 1]).any() or (r[:, 2] > r[:, 3]).any():
        raise BadModelError(f"{name}: ranges must be ({n}, 4) finite [min a, max a, min h, max h] rows with "
                            f"min <= max, given shape {r.shape}")
    return r


def _write_activation(g: Graph, act: Quant, r: np.ndarray, b: np.ndarray) -> None:
    """A quantized activation's scale and zero point from its observed range (the product before the
    bias lies within the pre-activation's range minus the bias's)."""
    lo, hi = {"a": (r[0], r[1]), "h": (r[2], r[3]), "mm": (r[0] - b.max(), r[1] - b.min())}[act.range]
    zero = stored_value(g, act.zero_point) if act.zero_point else None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    if zero is None:
        lo = 0.0  # no zero point tensor: it is 0, so the range starts at 0
    scale, zp = onnx_quant.affine(lo, hi, dtype)
    _store(g, act.scale, np.full(stored_value(g, act.scale).shape, scale, np.float32))
    if zero is not None:
        _store(g, act.zero_point, np.full(zero.shape, zp, dtype))


def _write_layer(g: Graph, layer: Layer, W: np.ndarray, b: np.ndarray) -> None:
    """Write one layer's new W and b in its own form (its BatchNormalization becomes an Identity)."""
    if layer.bn is not None:  # the layer holds the normalization now; first, before an inserted Add shifts it
        bn = g.nodes[layer.bn]
        bn.CopyFrom(helper.make_node("Identity", [bn.input[0]], [bn.output[0]], name=bn.name))
    node = g.nodes[layer.node]
    attrs = node_attrs(node)
    for key in ("alpha", "beta"):  # W and b go in as they are; dividing by alpha would round
        if attrs.get(key, 1.0) != 1.0:
            _remove(node.attribute, lambda a: a.name == key)
            node.attribute.append(helper.make_attribute(key, 1.0))
    w_scale = _write_param(g, layer.weight, W.T if layer.transposed else W)
    if layer.bias is not None:
        _write_bias(g, layer, b, w_scale)
    elif b.any():
        _add_bias(g, layer, b, w_scale)


def _write_param(g: Graph, p: Param, value: np.ndarray) -> np.ndarray | None:
    """Store a weight in the file's form; the new scale of a quantized one, flat (per tensor: one value)."""
    if p.scale is None:
        _store(g, p.tensor, value.astype(p.dtype).reshape(p.value.shape))
        return None
    scale_shape = stored_value(g, p.scale).shape
    q, s, z = onnx_quant.symmetric(value.reshape(p.value.shape), np.dtype(p.dtype), scale_shape, p.axis)
    _store_quantized(g, p, q, s, z)
    return s.reshape(-1)


def _store_quantized(g: Graph, p: Param, q: np.ndarray, s: np.ndarray, z: np.ndarray) -> None:
    """Store a quantized tensor's integers, scale and zero point."""
    _store(g, p.tensor, q)
    _store(g, p.scale, s)
    if p.zero_point:
        old = stored_value(g, p.zero_point)
        _store(g, p.zero_point, z.astype(old.dtype).reshape(old.shape))
    elif z.any():
        raise BadModelError(f"'{p.tensor}' is {p.dtype} without a zero point, which symmetric weights need")


def _write_bias(g: Graph, layer: Layer, b: np.ndarray, w_scale: np.ndarray | None) -> None:
    """Store a bias in the file's form: float32, int32 at in_scale x w_scale, or int8 at its own scale."""
    p = layer.bias
    value = b.reshape(p.value.shape) if p.value.size == b.size else b
    if p.dtype in ("float32", "float16"):
        _store(g, p.tensor, value.astype(p.dtype))
        return
    if p.dtype != "int32":
        q, s, z = onnx_quant.symmetric(value, np.dtype(p.dtype), stored_value(g, p.scale).shape, p.axis)
        _store_quantized(g, p, q, s, z)
        return
    in_scale = np.float32(stored_value(g, layer.in_quant[0]).reshape(())) if layer.in_quant else np.float32(1)
    scale = (in_scale * (w_scale if w_scale is not None else np.ones(1, np.float32))).astype(np.float32)
    _store(g, p.tensor, onnx_quant.bias32(value, np.broadcast_to(scale, value.shape) if scale.size > 1 else scale[0]))
    if p.scale:  # QDQ: the bias's DequantizeLinear carries its scale
        old = stored_value(g, p.scale)
        if scale.size not in (1, old.size):
            raise BadModelError(f"the bias scale '{p.scale}' holds {old.size} values for {scale.size} weight scales")
        _store(g, p.scale, np.broadcast_to(scale, old.shape).astype(np.float32) if old.size > 1 or old.ndim else
               scale.reshape(old.shape))
        if p.zero_point:
            zero = stored_value(g, p.zero_point)
            _store(g, p.zero_point, np.zeros(zero.shape, zero.dtype))


def _store(g: Graph, tensor: str, value: np.ndarray) -> None:
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


def _add_bias(g: Graph, layer: Layer, b: np.ndarray, w_scale: np.ndarray | None) -> None:
    """A bias for a layer the file has none for: a new Gemm input C (QGemm: int32 at in_scale x w_scale),
    or a new Add after the MatMul."""
    node, graph = g.nodes[layer.node], g.model.graph
    broadcast = {"broadcast": 1} if opset_version(g.model) < 7 else {}  # opset < 7: Gemm and Add broadcast on request
    bias = g.new_name(f"{node.name or node.op_type}.bias")
    if node.op_type == "QGemm":
        scale = np.float32(stored_value(g, layer.in_quant[0]).reshape(())) * w_scale
        graph.initializer.append(numpy_helper.from_array(onnx_quant.bias32(b, scale), bias))
        while len(node.input) < 7:
            node.input.append("")
        node.input[6] = bias
        return
    b = b.astype(np.float16) if elem_type(g, node.input[0]) == TensorProto.FLOAT16 else b  # the layer's arithmetic
    graph.initializer.append(numpy_helper.from_array(b, bias))
    if g.model.ir_version < 4:
        graph.input.append(helper.make_tensor_value_info(bias, TensorProto.FLOAT, b.shape))
    if node.op_type == "Gemm":
        del node.input[2:]
        node.input.append(bias)
        if broadcast and "broadcast" not in node_attrs(node):
            node.attribute.append(helper.make_attribute("broadcast", 1))
        return
    output, node.output[0] = node.output[0], g.new_name(f"{node.output[0]}.matmul")
    name = g.new_name(f"{node.name or 'MatMul'}.add")
    add = helper.make_node("Add", [node.output[0], bias], [output], name=name, **broadcast)
    graph.node.insert(layer.node + 1, add)
