"""The trainable head of an ONNX file: the trailing run of dense layers feeding the graph's single
output, read in the engine's convention W (n_out, n_in), b (n_out,) float32, with where the file keeps
each weight so that it can be written back in its own form.

    ( Gemm | MatMul[+Add] | QGemm | QLinearMatMul[+QLinearAdd] | MatMulInteger ... )
        [ BatchNormalization ] [ Relu | Tanh | Sigmoid ]   ... repeated ...   [ Softmax ]

Gemm computes Y = alpha * A @ B' + beta * C with B' = B.T if transB else B, so W = alpha * B'.T and
b = beta * C; MatMul computes Y = A @ B (+ b), so W = B.T. A weight or bias must be stored in the file
(an initializer, or a Constant / ConstantOfShape node) and read by its layer alone. A
BatchNormalization right after a layer is folded into it; Identity, Dropout and float16/float32 Casts
are passed through.

Quantized heads (onnxruntime.quantization's output) are read dequantized: QDQ files (float ops between
QuantizeLinear / DequantizeLinear; a Relu the quantizer folded into an activation's zero point is read
back as relu), QOperator files (QGemm, QLinearMatMul + QLinearAdd, QLinearSoftmax) and dynamic ones
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, then a float bias; or onnxruntime's fused
DynamicQuantizeMatMul / MatMulIntegerToFloat). Their form is "int8" (static) or "dynamic"; float16
weights give "float16". The first layer that breaks a rule stops the run (a Stop says where and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto

from ..errors import BadModelError
from ..head import Dense
from . import onnx_quant
from .onnx_graph import Graph, Stop, elem_type, node_attrs, opset_version, stored_value

HEAD_OPS = ("Gemm, MatMul+Add and their quantized forms, BatchNormalization after them, Relu, Tanh, Sigmoid, "
            "Softmax, Identity and Dropout")
ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
_PASSED = ("Identity", "Dropout")  # the head passes through them (Dropout is the identity at inference)
_QUANTIZED = {"MatMulInteger", "QGemm", "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear",
              "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger"}


@dataclass
class Quant:
    """A quantized activation in a layer: its scale and zero point tensors, and which of the layer's
    values it holds: "a" (pre-activation), "h" (post-activation) or "mm" (the product before its bias)."""

    scale: str
    zero_point: str | None
    range: str


@dataclass
class Param:
    """A layer's weight or bias as the file stores it: float, or integer with a scale and zero point."""

    value: np.ndarray  # float32 in the file's layout, dequantized
    tensor: str  # the stored tensor (the integer one when quantized)
    dtype: str = "float32"  # the stored tensor's dtype
    scale: str | None = None  # quantized: its scale tensor (None for an int32 bias at in_scale x w_scale)
    zero_point: str | None = None
    axis: int | None = None  # the axis of a per-channel scale, in the stored layout


@dataclass
class Layer:
    """One dense layer of the head and where the file keeps it."""

    dense: Dense
    input: str  # the tensor the layer reads
    reader: int  # the node reading it (the dense op, or the DynamicQuantizeLinear in front of it)
    node: int  # its Gemm, MatMul, QGemm, QLinearMatMul or MatMulInteger
    weight: Param
    bias: Param | None  # None: the file has no bias
    transposed: bool  # the file stores W as (n_in, n_out)
    add: int | None = None  # the Add (or QLinearAdd) adding the bias, if it is a node of its own
    bn: int | None = None  # a BatchNormalization folded into the layer
    acts: list[Quant] = field(default_factory=list)
    in_quant: tuple[str, str | None] | None = None  # (scale, zero point) of the layer's quantized input
    in_integer: bool = False  # the op reads the integer tensor itself (QOperator), not its dequantized value


def find(g: Graph, n: int | None, name: str) -> tuple[list[Layer], bool, Stop]:
    """The trailing `n` dense layers (all of the run when None) in forward order, whether a Softmax
    follows, and where the run stopped."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise BadModelError(f"{name}: head must be a positive number of dense layers or None, got {n!r}")
    output = g.model.graph.output[0].name
    layers: list[Layer] = []
    softmax, tensor, reader, stop = False, output, None, None
    try:
        softmax, tensor, reader = _softmax(g, output)
        while n is None or len(layers) < n:
            layers.append(_layer(g, tensor, reader))
            tensor, reader = layers[-1].input, layers[-1].reader
        stop = Stop(f"head={n}", f"the {n} layers asked for")
    except Stop as found:
        stop = found
    if stop.fatal:
        raise BadModelError(f"{name}: {stop.where}: {stop.reason}")
    if not layers:
        if not stop.at_node:
            raise BadModelError(f"{name}: nothing trainable: no Gemm or MatMul layer between {stop.where} "
                                f"and the output '{output}'")
        raise BadModelError(f"{name}: {stop.where} cannot be part of a trainable head{stop.why(HEAD_OPS)}")
    if n is not None and len(layers) < n:
        raise BadModelError(f"{name}: head={n} asks for {n} dense layers, but the trailing run has "
                            f"{len(layers)}: {stop.where} stops it{stop.why(HEAD_OPS)}")
    return layers[::-1], softmax, stop


def summary(g: Graph, name: str) -> tuple[list[str], str]:
    """Description.head and .stop: one line per layer split(head=None) takes, and why the run ends there."""
    try:
        layers, softmax, stop = find(g, None, name)
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


def _softmax(g: Graph, output: str) -> tuple[bool, str, int | None]:
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


def _check_softmax(g: Graph, i: int) -> None:
    """Refuse a softmax over any axis but the outputs'."""
    node = g.nodes[i]
    default = -1 if node.op_type == "QLinearSoftmax" or opset_version(g.model) >= 13 else 1
    axis = node_attrs(node).get("axis", default)
    if axis not in (1, -1):  # the head's output is (batch, n_out)
        raise Stop(g.where(i), f"it takes the softmax over axis {axis}, not over the outputs")


def _maker(g: Graph, tensor: str, reader: int | None) -> int:
    """The node making `tensor` inside the head, which `reader` (the next head node) alone may read."""
    if tensor not in g.producer:
        what = "the model input" if any(v.name == tensor for v in g.inputs) else "the stored tensor"
        raise Stop(f"{what} '{tensor}'", at_node=False)
    i = g.producer[tensor]
    others = [j for j in g.readers.get(tensor, []) if j != reader] if reader is not None else []
    if others:
        raise Stop(g.where(i), f"its output '{tensor}' also feeds {g.where(others[0])}")
    if reader is not None and tensor in g.outputs:
        raise Stop(g.where(i), f"its output '{tensor}' is also a model output")
    return i


def _passed(g: Graph, node: onnx.NodeProto) -> bool:
    """An Identity, a Dropout whose mask nobody reads, or a Cast between float16 and float32 (a float16
    file's input and output): the head passes through it (the engine computes in float32)."""
    if node.op_type == "Cast":
        return _float_cast(g, node)
    return node.op_type in _PASSED and bool(node.input) and not any(g.used(t) for t in node.output[1:])


_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _float_cast(g: Graph, node: onnx.NodeProto) -> bool:
    """A Cast from float16 to float32 or back."""
    return node_attrs(node).get("to") in _FLOATS and bool(node.input) and elem_type(g, node.input[0]) in _FLOATS


def _activation_quant(g: Graph, node: onnx.NodeProto) -> bool:
    """A QuantizeLinear of an activation, or a DequantizeLinear of one (not of a stored weight)."""
    return (node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 2
            and stored_value(g, node.input[0]) is None and node.input[0] not in g.initializers)


def _through(g: Graph, tensor: str, reader: int | None, acts: list[Quant], range_: str) -> int:
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


def _add_quant(g: Graph, i: int, acts: list[Quant], range_: str) -> None:
    """Record the activation quantize/dequantize node i works with."""
    node = g.nodes[i]
    _add_quant_at(g, i, node.input[1], node.input[2] if len(node.input) > 2 else None, acts, range_)


def _quant_scalar(g: Graph, i: int, scale: str, zero: str | None) -> tuple[float, int, np.dtype]:
    """The stored per-tensor (scale, zero point, integer dtype) an activation is quantized with."""
    s, z = stored_value(g, scale), stored_value(g, zero) if zero else None
    if s is None or (zero and z is None):
        raise Stop(g.where(i), f"its scale '{scale}' is not stored in the file")
    if s.size != 1 or (z is not None and z.size != 1):
        raise Stop(g.where(i), f"it quantizes an activation per channel ('{scale}' holds {s.size} values)")
    dtype = np.dtype(np.uint8) if z is None else z.dtype  # ONNX's default zero point is uint8
    if dtype.kind not in "iu" or not np.isfinite(s).all() or float(s.reshape(())) <= 0:
        raise Stop(g.where(i), f"its scale '{scale}' is {s.reshape(-1)[0]} with zero point of type {dtype}",
                    fatal=not np.isfinite(s).all())
    return float(s.reshape(())), 0 if z is None else int(z.reshape(())), dtype


def _layer(g: Graph, tensor: str, reader: int | None) -> Layer:
    """The dense layer, with its activation and folded BatchNormalization, whose output is `tensor`."""
    post: list[Quant] = []
    i = _through(g, tensor, reader, post, "h")
    activation, pre = "identity", post
    if g.nodes[i].op_type in ACTIVATIONS:
        activation, pre = ACTIVATIONS[g.nodes[i].op_type], []
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
        raise Stop(layer.dense.where, "its weights hold NaN or Inf once read as float32", fatal=True)
    return layer


def _clamps_at_zero(g: Graph, act: Quant) -> bool:
    """Whether a quantized activation's zero point is its type's minimum: it holds no negative values."""
    zero = stored_value(g, act.zero_point) if act.zero_point else None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    return (0 if zero is None else int(zero.reshape(()))) == np.iinfo(dtype).min


def _dense_op(g: Graph, i: int, acts: list[Quant]) -> Layer:
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
    raise Stop(g.where(i), "this quantized op is not one edgefdfa reads in a head" if is_quantized_op(op) else None)


def _added(g: Graph, i: int, acts: list[Quant]) -> Layer:
    """An Add (or QLinearAdd) of a stored bias to a MatMul's (or QLinearMatMul's, or MatMulInteger's) product."""
    node = g.nodes[i]
    sides = (0, 3) if node.op_type == "QLinearAdd" else (0, 1)
    for k, other in (sides, sides[::-1]):
        product, bias = node.input[k], node.input[other]
        mm_acts: list[Quant] = []
        try:
            j = _through(g, product, i, mm_acts, "mm")
        except Stop:
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
    raise Stop(g.where(i), "it adds two computed tensors, not a stored bias to a dense layer's product")


def _add_quant_at(g: Graph, i: int, scale: str, zero: str | None, acts: list[Quant], range_: str) -> None:
    """Record a quantized activation of node i (once: a QDQ pair and the next layer share one scale)."""
    _quant_scalar(g, i, scale, zero or None)
    if all(a.scale != scale for a in acts):
        acts.append(Quant(scale, zero or None, range_))


def _gemm(g: Graph, i: int) -> Layer:
    """Gemm(A, B, C) with alpha, beta and transB, its B and C float or dequantized (QDQ)."""
    node, attrs = g.nodes[i], node_attrs(g.nodes[i])
    if attrs.get("transA", 0):
        raise Stop(g.where(i), "transA=1 (a transposed input) is not a dense layer per sample")
    B = _param(g, i, node.input[1], "weight", matrix=True)
    transB = bool(attrs.get("transB", 0))
    W = np.float32(attrs.get("alpha", 1.0)) * (B.value if transB else B.value.T)  # (n_out, n_in)
    bias = _param(g, i, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    b = np.float32(attrs.get("beta", 1.0)) * _bias_vector(g, i, bias, len(W))
    in_quant = _dequantized_input(g, node.input[0])
    form = _form(B, in_quant)
    dense = Dense(np.ascontiguousarray(W), b, "identity", g.where(i), form)
    return Layer(dense, node.input[0], i, i, B, bias, not transB, in_quant=in_quant)


def _qgemm(g: Graph, i: int, acts: list[Quant]) -> Layer:
    """com.microsoft QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): int32 C at a_scale x b_scale."""
    node, attrs = g.nodes[i], node_attrs(g.nodes[i])
    inputs = list(node.input) + [""] * (9 - len(node.input))
    if attrs.get("transA", 0):
        raise Stop(g.where(i), "transA=1 (a transposed input) is not a dense layer per sample")
    if attrs.get("alpha", 1.0) != 1.0:
        raise Stop(g.where(i), f"alpha={attrs['alpha']}: edgefdfa reads QGemm layers with alpha 1")
    transB = bool(attrs.get("transB", 0))
    B = _quantized_param(g, i, inputs[3], inputs[4], inputs[5] or None, 0 if transB else 1, "weight", matrix=True)
    a_scale, _, _ = _quant_scalar(g, i, inputs[1], inputs[2] or None)
    W = B.value if transB else B.value.T
    bias = None
    if inputs[6]:
        C = _integer(g, i, inputs[6], "bias")
        w_scale = stored_value(g, inputs[4]).astype(np.float32).reshape(-1)
        bias = Param(C.astype(np.float32) * (np.float32(a_scale) * w_scale), inputs[6], str(C.dtype))
    b = _bias_vector(g, i, bias, len(W))
    if inputs[7]:
        _add_quant_at(g, i, inputs[7], inputs[8] or None, acts, "a")
    dense = Dense(np.ascontiguousarray(W), b, "identity", g.where(i), "int8")
    return Layer(dense, inputs[0], i, i, B, bias, not transB, in_quant=(inputs[1], inputs[2] or None), in_integer=True)


def _matmul(g: Graph, i: int, add: tuple[int, str] | None, acts: list[Quant]) -> Layer:
    """MatMul(A, B) or QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp), with the bias of
    the Add or QLinearAdd(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp) after it."""
    node = g.nodes[i]
    known = g.infos.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type
    if known.HasField("shape") and len(known.shape.dim) != 2:
        raise Stop(g.where(i), f"it multiplies a rank-{len(known.shape.dim)} tensor, not one vector per sample")
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
    return Layer(dense, node.input[0], i, i, B, bias, True, None if add is None else add[0],
                  in_quant=in_quant, in_integer=integer)


def _dynamic(g: Graph, i: int, add: tuple[int, str] | None) -> Layer:
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
        raise Stop(g.where(i), None)
    mmi = g.nodes[m]
    inputs = list(mmi.input) + [""] * (4 - len(mmi.input))
    dql = g.producer.get(inputs[0])
    scales = g.producer.get(mul.input[1 - k])
    if dql is None or g.nodes[dql].op_type != "DynamicQuantizeLinear" or scales is None or \
            g.nodes[scales].op_type != "Mul" or g.nodes[dql].output[0] != inputs[0]:
        raise Stop(g.where(m), "its input is not quantized by a DynamicQuantizeLinear it alone reads")
    w_scale = [t for t in g.nodes[scales].input if t != g.nodes[dql].output[1]]
    if len(w_scale) != 1 or inputs[2] != g.nodes[dql].output[2]:
        raise Stop(g.where(m), "its scales do not come from its input's DynamicQuantizeLinear and a stored scale")
    for j, t in ((m, inputs[0]), (cast, mmi.output[0]), (i, mul.input[k]), (i, mul.input[1 - k])):
        _maker(g, t, j)
    B = _quantized_param(g, m, inputs[1], w_scale[0], inputs[3] or None, 1, "weight", matrix=True)
    bias, where = None, g.where(m)
    if add is not None:
        where = g.where(m, "MatMulInteger+Add")
        bias = _param(g, add[0], add[1], "bias")
    b = _bias_vector(g, m if add is None else add[0], bias, B.value.shape[1])
    dense = Dense(np.ascontiguousarray(B.value.T), b, "identity", where, "dynamic")
    layer = Layer(dense, g.nodes[dql].input[0], dql, m, B, bias, True, None if add is None else add[0])
    return layer


def _fused_dynamic(g: Graph, i: int) -> Layer:
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
        return Layer(dense, inputs[0], i, i, B, bias, True)
    dql = g.producer.get(inputs[0])
    if dql is None or g.nodes[dql].op_type != "DynamicQuantizeLinear" or \
            list(g.nodes[dql].output[:3]) != [inputs[0], inputs[2], inputs[4]]:
        raise Stop(g.where(i), "its input is not quantized by a DynamicQuantizeLinear it alone reads")
    for t in g.nodes[dql].output:
        _maker(g, t, i)
    return Layer(dense, g.nodes[dql].input[0], dql, i, B, bias, True)


def _form(weight: Param, in_quant: tuple | None) -> str:
    """A layer's Dense.form from its weight and whether its input is quantized too."""
    if weight.scale is None:
        return weight.dtype  # float32 or float16
    return "int8" if in_quant is not None else "dynamic"


def _dequantized_input(g: Graph, tensor: str) -> tuple[str, str | None] | None:
    """The (scale, zero point) of the DequantizeLinear making a QDQ layer's input, if one does."""
    j = g.producer.get(tensor)
    if j is None or not _activation_quant(g, g.nodes[j]) or g.nodes[j].op_type != "DequantizeLinear":
        return None
    node = g.nodes[j]
    return node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None


def _param(g: Graph, i: int, tensor: str, role: str, matrix: bool = False) -> Param:
    """The weight or bias node i reads: stored float32 or float16 (as it is, or through a Cast to float32),
    or an integer tensor a DequantizeLinear dequantizes."""
    where, maker = g.where(i), g.producer.get(tensor)
    _alone(g, i, tensor, role)
    dq = g.nodes[maker] if maker is not None else None
    if dq is not None and dq.op_type == "Cast" and node_attrs(dq).get("to") == TensorProto.FLOAT and \
            elem_type(g, dq.input[0]) == TensorProto.FLOAT16 and stored_value(g, dq.input[0]) is not None:
        return _param(g, maker, dq.input[0], role, matrix)  # float16 storage, float32 arithmetic
    if dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) >= 2 and (
            dq.input[0] in g.initializers or _is_constant(g, dq.input[0])):
        attrs = node_attrs(dq)
        if attrs.get("block_size", 0):
            raise Stop(where, f"its {role} '{tensor}' is block-quantized, which edgefdfa does not read")
        zero = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
        return _quantized_param(g, maker, dq.input[0], dq.input[1], zero, attrs.get("axis", 1), role, matrix)
    value = stored_value(g, tensor)
    if value is None:
        if maker is None:
            raise Stop(where, f"its {role} '{tensor}' is a model input, not a stored weight")
        if is_quantized_op(g.nodes[maker].op_type):
            raise Stop(where, f"its {role} '{tensor}' comes from {g.where(maker)}, a quantized form edgefdfa "
                               "does not read")
        raise Stop(where, f"its {role} '{tensor}' is computed by {g.where(maker)}, not stored")
    if value.dtype not in (np.float32, np.float16):
        raise Stop(where, f"its {role} '{tensor}' is {value.dtype}, not float32 or float16")
    _shape_check(g, i, tensor, value, role, matrix)
    _finite(where, tensor, value, role)
    return Param(value.astype(np.float32), tensor, value.dtype.name)


def _is_constant(g: Graph, tensor: str) -> bool:
    """Whether a Constant or ConstantOfShape node makes `tensor`."""
    return tensor in g.producer and g.nodes[g.producer[tensor]].op_type in ("Constant", "ConstantOfShape")


def _quantized_param(g: Graph, i: int, tensor: str, scale: str, zero: str | None, axis: int | None, role: str,
                     matrix: bool = False) -> Param:
    """An integer weight or bias stored with its scale and zero point, dequantized to float32."""
    where = g.where(i)
    _alone(g, i, tensor, role)
    q = _integer(g, i, tensor, role)
    s, z = stored_value(g, scale), stored_value(g, zero) if zero else None
    if s is None or (zero and z is None):
        raise Stop(where, f"the scale or zero point of its {role} '{tensor}' is not stored in the file")
    _finite(where, scale, s, f"{role} scale")
    if s.size > 1:
        if axis is None or q.ndim == 0:
            raise Stop(where, f"its {role} '{tensor}' has {s.size} scales but no channel axis")
        axis = axis % q.ndim
        if s.size != q.shape[axis] or (z is not None and z.size != s.size):
            raise Stop(where, f"its {role} '{tensor}' has {s.size} scales for {q.shape[axis]} channels")
    elif z is not None and z.size != 1:
        raise Stop(where, f"its {role} '{tensor}' has one scale but {z.size} zero points")
    value = onnx_quant.dequantize(q, s, z, axis if s.size > 1 else None)
    _shape_check(g, i, tensor, value, role, matrix)
    return Param(value, tensor, str(q.dtype), scale, zero, axis if s.size > 1 else None)


def _integer(g: Graph, i: int, tensor: str, role: str) -> np.ndarray:
    """The stored integer tensor of a quantized weight or bias."""
    q = stored_value(g, tensor)
    if q is None:
        raise Stop(g.where(i), f"its quantized {role} '{tensor}' is not stored in the file")
    if q.dtype not in (np.int8, np.uint8, np.int32):
        raise Stop(g.where(i), f"its quantized {role} '{tensor}' is {q.dtype}; edgefdfa reads int8, uint8 and "
                                "int32 quantized (int8) heads")
    return q


def _alone(g: Graph, i: int, tensor: str, role: str) -> None:
    """Refuse a weight another node reads too: writing it would change that node."""
    shared = [j for j in g.readers.get(tensor, []) if j != i]
    if shared:
        raise Stop(g.where(i), f"its {role} '{tensor}' is shared with {g.where(shared[0])}")


def _shape_check(g: Graph, i: int, tensor: str, value: np.ndarray, role: str, matrix: bool) -> None:
    """Refuse a weight that is not a matrix."""
    if matrix and value.ndim != 2:
        raise Stop(g.where(i), f"its {role} '{tensor}' has shape {value.shape}, not a matrix")


def _finite(where: str, tensor: str, value: np.ndarray, role: str) -> None:
    """Refuse the file (a fatal Stop) for a weight holding NaN or Inf."""
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise Stop(where, f"its {role} '{tensor}' holds NaN or Inf", fatal=True)


def _bias_vector(g: Graph, i: int, bias: Param | None, n_out: int) -> np.ndarray:
    """A layer's bias as (n_out,) float32 (zeros when the file has none)."""
    if bias is None:
        return np.zeros(n_out, np.float32)
    C = bias.value
    if C.size not in (1, n_out) or C.ndim > 2 or (C.ndim == 2 and C.shape[0] != 1):
        raise Stop(g.where(i), f"its bias '{bias.tensor}' has shape {C.shape}, not one value per output ({n_out})")
    return np.broadcast_to(C.reshape(-1), (n_out,)).astype(np.float32)


def _fold(g: Graph, k: int, layer: Layer) -> None:
    """Fold BatchNormalization node k, right after `layer`, into its W and b: y = s (Wx + b - mean) + shift
    with s = scale / sqrt(var + eps), computed in float64."""
    node, where = g.nodes[k], g.where(k)
    if layer.dense.form != "float32":
        raise Stop(where, "it follows a quantized layer; edgefdfa folds BatchNormalization into float layers only")
    if any(g.used(t) for t in node.output[1:]) or node_attrs(node).get("training_mode", 0):
        raise Stop(where, "it is in training mode (it updates its running statistics)")
    known = g.infos.get(node.input[0], onnx.ValueInfoProto()).type.tensor_type
    if known.HasField("shape") and len(known.shape.dim) != 2:
        raise Stop(where, f"it normalizes a rank-{len(known.shape.dim)} tensor, not one vector per sample")
    n_out = len(layer.dense.b)
    stats = []
    for role, tensor in zip(("scale", "shift", "mean", "variance"), node.input[1:5]):
        _alone(g, k, tensor, role)
        value = stored_value(g, tensor)
        if value is None or value.dtype != np.float32 or value.size != n_out:
            raise Stop(where, f"its {role} '{tensor}' is not {n_out} stored float32 values")
        _finite(where, tensor, value, role)
        stats.append(value.reshape(-1).astype(np.float64))
    if len(stats) != 4:
        raise Stop(where, "it has fewer than 5 inputs")
    scale, shift, mean, var = stats
    var = var + float(node_attrs(node).get("epsilon", 1e-5))
    if (var <= 0).any():
        raise Stop(where, f"its variance '{node.input[4]}' plus epsilon is {var.min():g}, not positive", fatal=True)
    s = scale / np.sqrt(var)
    dense = layer.dense
    dense.W = (s[:, None] * dense.W.astype(np.float64)).astype(np.float32)
    dense.b = (s * (dense.b.astype(np.float64) - mean) + shift).astype(np.float32)
    dense.where = g.where(layer.node, f"{g.nodes[layer.node].op_type}+BatchNormalization")
    layer.bn = k


def head_start(g: Graph, layer: Layer) -> tuple[str, tuple[str, str | None] | None]:
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


def is_quantized_op(op_type: str) -> bool:
    """Whether an op type is one of ONNX's (or onnxruntime's) quantized ops."""
    return op_type.startswith("QLinear") or op_type in _QUANTIZED
