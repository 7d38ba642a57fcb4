"""TFLite (.tflite) files: describe them, cut them into a frozen backbone and a dense head, write a
learned head back, and build small float models from NumPy weights (for tools and tests).

A .tflite file is a flatbuffer (identifier "TFL3" at byte 4) of operator codes, subgraphs of
tensors and operators, and buffers holding constant data (buffer 0 is the empty sentinel). We read
it whole with the flatbuffer object API, edit the objects, and pack them again. The head is the
trailing run of dense layers feeding subgraph 0's single output:

    ... -> FULLY_CONNECTED [-> RELU | TANH | LOGISTIC] -> ... -> FULLY_CONNECTED [-> ...] [-> SOFTMAX]

A FULLY_CONNECTED holds float32 weights (n_out, n_in) and an optional bias (input -1: none) in
constant buffers, and may fuse a NONE or RELU activation (LiteRT's FULLY_CONNECTED refuses a fused
TANH, and the engine has no RELU6). Quantized heads are refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import importlib

import flatbuffers
import numpy as np

from ..atomic import atomic_write
from ..errors import BadModelError, ConfigError
from ..head import Dense
from .base import Description, Split, TensorInfo

# The flatbuffer schema ships with LiteRT, with tflite-micro (the numpy<2 / tflite-runtime setup
# installs it for this), and with TensorFlow: the first one importable is used.
SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated",
                  "tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
                  "tensorflow.lite.python.schema_py_generated")


def _import_schema():
    for module in SCHEMA_MODULES:
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise ImportError("no TFLite flatbuffer schema: pip install ai-edge-litert (or tflite-micro)")


schema = _import_schema()

SUFFIX = ".tflite"
IDENTIFIER = b"TFL3"

_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
_TYPE_NAMES = {code: name.lower() for name, code in vars(schema.TensorType).items() if not name.startswith("_")}
_ACT_NAMES = {code: name for name, code in vars(schema.ActivationFunctionType).items() if not name.startswith("_")}
_A = schema.ActivationFunctionType
_FUSED = {_A.NONE: "identity", _A.RELU: "relu"}  # fused activation -> engine name; LiteRT refuses a fused TANH
_SEPARATE = {"RELU": "relu", "TANH": "tanh", "LOGISTIC": "sigmoid"}  # activation operator -> engine name
_ALIGN = 16  # bytes; constant data is aligned as the TFLite converter aligns it


# ---------------------------------------------------------------------------------------- reading


def check(data: bytes, name: str) -> None:
    """Raise BadModelError unless `data` is a TFLite model whose indices are consistent.

    Interpreters older than LiteRT (tflite-runtime 2.14) do not verify the flatbuffer and crash
    the process on corrupt bytes, so backends call this before handing bytes to one.
    """
    _parse(data, name)


def _parse(data: bytes, name: str) -> schema.ModelT:
    """The whole file as objects, or a BadModelError if it is not a TFLite flatbuffer we can index."""
    data = bytes(data)
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise BadModelError(f"{name} is not a valid TFLite model: no {IDENTIFIER.decode()!r} identifier at byte 4")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as e:  # the generated reader fails in many ways on truncated or corrupt bytes
        raise BadModelError(f"{name} is not a valid TFLite model: {type(e).__name__}: {e}") from e
    problem = _inconsistency(model)
    if problem:
        raise BadModelError(f"{name} is not a valid TFLite model: {problem}")
    return model


def _inconsistency(model: schema.ModelT) -> str:
    """What makes subgraph 0 unusable (an index out of range...), or "" — corrupt bytes often parse."""
    if not model.subgraphs:
        return "it has no subgraph"
    g = model.subgraphs[0]
    n_tensors, n_codes, n_buffers = len(g.tensors or []), len(model.operatorCodes or []), len(model.buffers or [])
    for i, op in enumerate(g.operators or []):
        if not 0 <= op.opcodeIndex < n_codes:
            return f"operator {i} has operator code {op.opcodeIndex} of {n_codes}"
        if any(not -1 <= t < n_tensors for t in _indices(op.inputs) + _indices(op.outputs)):
            return f"operator {i} names a tensor beyond the {n_tensors} of subgraph 0"
    if any(not 0 <= t < n_tensors for t in _indices(g.inputs) + _indices(g.outputs)):
        return f"subgraph 0 names an input or output beyond its {n_tensors} tensors"
    if any(not 0 <= t.buffer < n_buffers for t in g.tensors or []):
        return f"a tensor of subgraph 0 names a buffer beyond the {n_buffers}"
    for i, tensor in enumerate(g.tensors or []):
        problem = _tensor_inconsistency(tensor, model.buffers[tensor.buffer])
        if problem:
            return f"tensor {i} ({_tensor_name(tensor)}) {problem}"
    return ""


# bytes per element of the fixed-size types whose constant data is checked against the shape, and the
# zero points allowed for the integer types that must be quantized
_ITEMSIZE = {schema.TensorType.FLOAT32: 4, schema.TensorType.FLOAT16: 2, schema.TensorType.INT32: 4,
             schema.TensorType.INT64: 8, schema.TensorType.INT16: 2, schema.TensorType.INT8: 1,
             schema.TensorType.UINT8: 1, schema.TensorType.BOOL: 1}
_QUANTIZED = {schema.TensorType.INT8: (-128, 127), schema.TensorType.UINT8: (0, 255), schema.TensorType.INT16: (0, 0)}


def _tensor_inconsistency(tensor: schema.TensorT, buffer: schema.BufferT) -> str:
    """What about one tensor would make an interpreter abort or read out of bounds: LiteRT 2.x ends
    the process on an int8 tensor without a positive scale (an assertion in allocate_tensors), and
    older interpreters check less. A negative dimension, constant data of another size than its shape,
    an integer tensor without a valid scale and zero point per channel, a name that is not UTF-8 (the
    Python interpreter raises UnicodeDecodeError on it)."""
    try:
        (tensor.name or b"").decode("utf-8")
    except UnicodeDecodeError:
        return "has a name that is not UTF-8"
    shape = _indices(tensor.shape)
    if any(d < 0 for d in shape):
        return f"has shape {shape}"
    data = buffer.data if buffer is not None else None
    size = _ITEMSIZE.get(tensor.type)
    if data is not None and len(data) and size is not None and len(data) != int(np.prod(shape)) * size:
        return f"has shape {shape} of {_TYPE_NAMES.get(tensor.type)} but {len(data)} bytes of data"
    q = tensor.quantization
    scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float64)
    zero = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
    if tensor.type in _QUANTIZED and not len(scale):
        return f"is {_TYPE_NAMES.get(tensor.type)} without a quantization scale"
    if not len(scale):
        return ""
    lo, hi = _QUANTIZED.get(tensor.type, (-2**31, 2**31 - 1))
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        return "has a quantization scale that is not finite and positive"
    if len(zero) != len(scale) or (zero < lo).any() or (zero > hi).any():
        return f"has {len(zero)} zero point(s) for {len(scale)} scale(s), or one outside {lo}..{hi}"
    if len(scale) > 1 and not (0 <= q.quantizedDimension < len(shape) and shape[q.quantizedDimension] == len(scale)):
        return f"has {len(scale)} scales along dimension {q.quantizedDimension} of shape {shape}"
    return ""


def _tensor_name(tensor: schema.TensorT) -> str:
    return (tensor.name or b"").decode(errors="replace")


def _indices(vector) -> list[int]:
    """A flatbuffer index vector (None, a list or a NumPy array) as a list of ints."""
    return [] if vector is None else [int(i) for i in vector]


def _op_type(model: schema.ModelT, op: schema.OperatorT) -> str:
    """"FULLY_CONNECTED", "CUSTOM(name)"...: builtinCode, or deprecatedBuiltinCode in files before it."""
    code = model.operatorCodes[op.opcodeIndex]
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    if number == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM({(code.customCode or b'').decode(errors='replace')})"
    return _OP_NAMES.get(number, f"BUILTIN_{number}")


def _where(model: schema.ModelT, i: int) -> str:
    return f"operator {i} ({_op_type(model, model.subgraphs[0].operators[i])})"


def _info(tensor: schema.TensorT) -> TensorInfo:
    shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    q = tensor.quantization
    scale = list(q.scale) if q is not None and q.scale is not None else []
    quantization = None
    if len(scale) == 1 and scale[0] > 0:
        quantization = (float(scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0)
    return TensorInfo(
        name=(tensor.name or b"").decode(errors="replace"),
        shape=tuple(None if d < 0 else int(d) for d in _indices(shape)),
        dtype=_TYPE_NAMES.get(tensor.type, f"type{tensor.type}"),
        quantization=quantization,
    )


def describe(data: bytes, name: str) -> Description:
    """Subgraph 0's inputs, outputs and operators, and the file's schema version and description."""
    model = _parse(data, name)
    g = model.subgraphs[0]
    try:
        run = _trailing_run(model, name)
        head = [f"{layer.dense.where}: {layer.dense.W.shape[1]} -> {layer.dense.W.shape[0]}, {layer.dense.activation}, "
                f"{layer.dense.form}" for layer in run.layers]
        stop = f"the head stops where {run.stop}" if run.layers else f"no dense head: {run.stop}"
    except BadModelError as exc:  # not one input and one output
        head, stop = [], str(exc)
    return Description(
        format="tflite",
        inputs=[_info(g.tensors[t]) for t in _indices(g.inputs)],
        outputs=[_info(g.tensors[t]) for t in _indices(g.outputs)],
        operators=[_op_type(model, op) for op in g.operators or []],
        details={
            "schema_version": model.version,
            "description": (model.description or b"").decode(errors="replace"),
            "subgraphs": len(model.subgraphs),
            "buffers": len(model.buffers or []),
        },
        head=head,
        stop=stop,
    )


def read(path: Path) -> tuple[bytes, dict]:
    """The file's bytes; a .tflite file is self-contained."""
    try:
        return Path(path).read_bytes(), {}
    except OSError as exc:
        raise BadModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None


def write(path: Path, data: bytes, storage: dict) -> list[Path]:
    """Write the file atomically."""
    with atomic_write(path) as f:
        f.write(data)
    return [Path(path)]


# ------------------------------------------------------------------------------ finding the head


@dataclass
class _Stored:
    """Where a layer's weights or bias are kept: the constant tensor holding them, how (float32,
    float16, int8 or int32 with the tensor's scales), and the DEQUANTIZE turning float16 data into
    the float32 the layer reads, if there is one."""

    tensor: int
    kind: str  # float32 | float16 | int8 | int32
    dequantize: int | None = None


@dataclass
class _Layer:
    """A dense layer as it sits in the file."""

    fc: int  # index of its FULLY_CONNECTED operator
    activation_op: int | None  # index of a separate RELU / TANH / LOGISTIC after it, if any
    dense: Dense
    weights: _Stored
    bias: _Stored | None  # None: the file has no bias


class _NotFinite(str):
    """Why a FULLY_CONNECTED is no layer, when the reason is NaN or Inf in its weights: the file is refused."""


@dataclass
class _Run:
    """The trailing run of dense layers of subgraph 0, and why it stops where it does."""

    layers: list[_Layer]  # in forward order
    softmax: int | None  # index of the SOFTMAX after the last layer, if any
    stop: str  # "operator 3 (CONV_2D) is not a dense layer", "it starts at the model input"...
    dequantize: int | None = None  # index of a DEQUANTIZE (or requantizing QUANTIZE) of the int8 output, if any
    fatal: bool = False  # the stop refuses the file (a dense layer with NaN or Inf weights), not only ends the head

    def operators(self, layers: list[_Layer]) -> set[int]:
        """The operators of a head of these (trailing) layers: the backbone is the file without them."""
        ops = {self.softmax, self.dequantize}
        for layer in layers:
            ops |= {layer.fc, layer.activation_op, layer.weights.dequantize}
            ops.add(layer.bias.dequantize if layer.bias else None)
        return ops - {None}


class _Graph:
    """Subgraph 0 with who produces and how many consume each tensor, to walk back from the output."""

    def __init__(self, model: schema.ModelT):
        self.model = model
        self.g = model.subgraphs[0]
        self.producer = {t: i for i, op in enumerate(self.g.operators or []) for t in _indices(op.outputs)}
        self.consumers = Counter(t for op in self.g.operators or [] for t in _indices(op.inputs))

    def op(self, i: int) -> schema.OperatorT:
        return self.g.operators[i]

    def type(self, i: int) -> str:
        return _op_type(self.model, self.g.operators[i])

    def data_input(self, i: int) -> int | None:
        """The input of operator i when it has exactly one (an activation, a softmax), else None."""
        inputs = _indices(self.g.operators[i].inputs)
        return inputs[0] if len(inputs) == 1 and inputs[0] >= 0 else None

    def only_feeds_next(self, t: int) -> bool:
        """Tensor t goes only to the one operator after it: removing the two leaves no one without input."""
        return self.consumers[t] == 1 and t not in _indices(self.g.outputs)


def _trailing_run(model: schema.ModelT, name: str) -> _Run:
    """Walk back from subgraph 0's output over SOFTMAX and dense layers, collecting the head."""
    graph = _Graph(model)
    g = graph.g
    if len(_indices(g.inputs)) != 1 or len(_indices(g.outputs)) != 1:
        raise BadModelError(
            f"{name}: subgraph 0 has {len(_indices(g.inputs))} inputs and {len(_indices(g.outputs))} outputs; "
            "edgefdfa needs a model with one input and one output"
        )
    t = _indices(g.outputs)[0]
    dequantize = graph.producer.get(t)  # a full-integer file ends in DEQUANTIZE (float output) or QUANTIZE (uint8)
    if (dequantize is not None and graph.type(dequantize) in ("DEQUANTIZE", "QUANTIZE")
            and graph.data_input(dequantize) is not None
            and graph.g.tensors[graph.data_input(dequantize)].type == schema.TensorType.INT8):
        t = graph.data_input(dequantize)
        if not graph.only_feeds_next(t):
            return _Run([], None, f"the input of {_where(model, dequantize)} also feeds other operators")
    else:
        dequantize = None
    softmax = graph.producer.get(t)
    if softmax is not None and graph.type(softmax) == "SOFTMAX":
        beta = getattr(graph.op(softmax).builtinOptions, "beta", 0.0)  # a SOFTMAX without options has beta 0
        if beta != 1.0:
            return _Run([], None, f"{_where(model, softmax)} has beta {beta}; only beta 1.0 is supported")
        t = graph.data_input(softmax)
        if t is None:
            return _Run([], None, f"{_where(model, softmax)} does not have one input")
        if not graph.only_feeds_next(t):
            return _Run([], None, f"the input of {_where(model, softmax)} also feeds other operators")
    else:
        softmax = None
    layers: list[_Layer] = []
    while True:
        i = graph.producer.get(t)
        if i is None:
            return _Run(layers[::-1], softmax, "it starts at the model input", dequantize)
        layer = _layer(graph, i)
        if isinstance(layer, str):
            return _Run(layers[::-1], softmax, layer, dequantize, isinstance(layer, _NotFinite))
        layers.append(layer)
        t = _indices(graph.op(layer.fc).inputs)[0]
        if not graph.only_feeds_next(t) and t not in _indices(g.inputs):
            return _Run(layers[::-1], softmax, f"the input of {layer.dense.where} also feeds other operators",
                        dequantize)


def _layer(graph: _Graph, i: int) -> _Layer | str:
    """The dense layer whose last operator is i, or why operator i ends no dense layer."""
    where = _where(graph.model, i)
    kind = graph.type(i)
    if kind == "FULLY_CONNECTED":
        layer = _fully_connected(graph, i)
        if not isinstance(layer, str):
            layer.activation_op = None
        return layer
    if kind not in _SEPARATE:
        return f"{where} is not a dense layer"
    t = graph.data_input(i)
    fc = graph.producer.get(t)
    if fc is None or graph.type(fc) != "FULLY_CONNECTED" or not graph.only_feeds_next(t):
        return f"{where} does not directly follow a FULLY_CONNECTED"
    layer = _fully_connected(graph, fc)
    if isinstance(layer, str):
        return layer
    if layer.dense.activation != "identity":
        return f"{where} follows {layer.dense.where}, which already applies {layer.dense.activation}"
    layer.dense.activation, layer.activation_op = _SEPARATE[kind], i
    return layer


def _fully_connected(graph: _Graph, i: int) -> _Layer | str:
    """Operator i (a FULLY_CONNECTED) as a layer (activation_op not yet known), or why it cannot be
    trained here. Its weights are float32, float16 (through a DEQUANTIZE) or int8 (dynamic-range
    with float activations, or full-integer with int8 activations and an int32 bias)."""
    where = _where(graph.model, i)
    op, tensors = graph.op(i), graph.g.tensors
    options = op.builtinOptions or schema.FullyConnectedOptionsT()
    if not isinstance(options, schema.FullyConnectedOptionsT):
        return f"{where} has {type(options).__name__[:-1]}, not FullyConnectedOptions"
    inputs = _indices(op.inputs)
    if len(inputs) < 2 or min(inputs[:2]) < 0:
        return f"{where} has {len(inputs)} inputs, not input, weights and optional bias"
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else -1
    activations = {_TYPE_NAMES.get(tensors[t].type, "?") for t in (x, *_indices(op.outputs))}
    if activations not in ({"float32"}, {"int8"}):
        kinds = "/".join(sorted(activations))
        reason = ("int16 activations (16x8 quantization) are not supported" if "int16" in activations else
                  "uint8 (legacy) quantization is not supported" if "uint8" in activations else
                  "its input and output must both be float32, or both int8")
        return f"{where} computes in {kinds}: {reason}"
    if options.fusedActivationFunction not in _FUSED:
        name = _ACT_NAMES.get(options.fusedActivationFunction, str(options.fusedActivationFunction))
        return f"{where} fuses activation {name}, which is not supported (only NONE, RELU)"
    if options.weightsFormat != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        return f"{where} stores its weights in a shuffled format, which is not supported"
    W = _stored(graph, w, f"{where}: its weights")
    b = _stored(graph, bias, f"{where}: its bias") if bias >= 0 else None
    if isinstance(W, str) or isinstance(b, str):
        return W if isinstance(W, str) else b
    (W, weights), (b, stored_bias) = W, b or (None, None)
    if W.ndim != 2 or (b is not None and b.size != W.shape[0]):
        bias_shape = None if b is None else b.shape
        return f"{where} has weights {W.shape} and bias {bias_shape}, not (n_out, n_in) and (n_out,)"
    per_sample = _per_sample(tensors[x])
    if per_sample != W.shape[1]:
        return f"{where} takes input {_info(tensors[x]).shape}, not one vector of {W.shape[1]} per sample"
    form = _FORMS.get((activations.pop(), weights.kind))
    if form is None:
        return f"{where} computes in {_info(tensors[x]).dtype} with {weights.kind} weights, which is not supported"
    if not (np.isfinite(W).all() and (b is None or np.isfinite(b).all())):
        return _NotFinite(f"{where}: its weights or bias hold NaN or Inf")
    b = np.zeros(W.shape[0], np.float32) if b is None else b.reshape(-1)
    dense = Dense(W=W, b=b, activation=_FUSED[options.fusedActivationFunction], where=where, form=form)
    return _Layer(i, None, dense, weights, stored_bias)


def _stored(graph: _Graph, t: int, what: str) -> tuple[np.ndarray, _Stored] | str:
    """Tensor t's value as float32 (dequantized), and where it is stored; or why it is not stored
    data. t is constant data (float32, int8 or int32 with scales), or a DEQUANTIZE of float16 data."""
    dequantize = graph.producer.get(t)
    if dequantize is not None:
        source = graph.data_input(dequantize) if graph.type(dequantize) == "DEQUANTIZE" else None
        if source is None or graph.g.tensors[source].type != schema.TensorType.FLOAT16:
            return f"{what} are computed by {_where(graph.model, dequantize)}, not constant data"
        if graph.consumers[t] != 1 or graph.consumers[source] != 1:
            return f"{what} (float16, through {_where(graph.model, dequantize)}) are shared with another operator"
        value = _constant(graph, source, what)
        return value if isinstance(value, str) else (value, _Stored(source, "float16", dequantize))
    value = _constant(graph, t, what)
    if isinstance(value, str):
        return value
    kind = _TYPE_NAMES.get(graph.g.tensors[t].type, "?")
    return value, _Stored(t, kind)


_FORMS = {  # (activations' type, weights' type) -> Dense.form
    ("float32", "float32"): "float32", ("float32", "float16"): "float16", ("float32", "int8"): "dynamic",
    ("int8", "int8"): "int8",
}
_STORED = {"float32": "<f4", "float16": "<f2", "int8": "i1", "int32": "<i4"}  # how constant data is laid out


def _constant(graph: _Graph, t: int, what: str) -> np.ndarray | str:
    """Tensor t's constant data as a new float32 array of its shape (integers dequantized with the
    tensor's scales, per channel along its quantized dimension); or why it is not constant data."""
    tensor = graph.g.tensors[t]
    data = graph.model.buffers[tensor.buffer].data
    if t in graph.producer or tensor.buffer == 0 or data is None or len(data) == 0:
        return f"{what} are not constant data"
    if tensor.sparsity is not None:
        return f"{what} are stored sparse, which is not supported"
    kind = _TYPE_NAMES.get(tensor.type, f"type {tensor.type}")
    if kind not in _STORED:
        return f"{what} are {kind}, which is not supported (float32, float16, int8 or int32 with scales)"
    raw, shape, dtype = np.asarray(data, np.uint8).tobytes(), _indices(tensor.shape), np.dtype(_STORED[kind])
    if len(raw) != dtype.itemsize * int(np.prod(shape)):
        return f"{what} hold {len(raw)} bytes, not the {kind} {shape} the tensor declares"
    value = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)
    if kind in ("int8", "int32"):
        scales = _scales(tensor, shape)
        if isinstance(scales, str):
            return f"{what}: {scales}"
        scale, zero_point = scales
        value = ((value - zero_point) * scale).astype(np.float32)
    return value


def _scales(tensor: schema.TensorT, shape: list[int]) -> tuple[np.ndarray, np.ndarray] | str:
    """(scale, zero point) of an integer tensor, shaped to broadcast against its values, or why not."""
    q = tensor.quantization
    scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
    zero_point = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [0] * len(scale), np.float32)
    if scale.size == 0 or not np.isfinite(scale).all() or (scale <= 0).any():
        return "integer data without a positive scale to dequantize it"
    if scale.size == 1:
        return scale.reshape(()), zero_point.reshape(-1)[:1].reshape(())
    axis = q.quantizedDimension
    if not 0 <= axis < len(shape) or shape[axis] != scale.size or zero_point.size != scale.size:
        return f"{scale.size} scales for shape {shape} along dimension {axis}"
    broadcast = [1] * len(shape)
    broadcast[axis] = scale.size
    return scale.reshape(broadcast), zero_point.reshape(broadcast)


def _per_sample(tensor: schema.TensorT) -> int | None:
    """Values per sample of an activation tensor (all but the batch dimension), None if unknown."""
    shape = _indices(tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape)
    per_sample = shape[1:] if len(shape) > 1 else shape
    return None if any(d < 0 for d in per_sample) else int(np.prod(per_sample))


def _head_layers(model: schema.ModelT, head: int | None, name: str) -> tuple[_Run, list[_Layer]]:
    """The run and its trailing `head` layers (all of them for None), or a BadModelError saying why not."""
    run = _trailing_run(model, name)
    if run.fatal:  # a dense layer that cannot be computed: neither head nor backbone
        raise BadModelError(f"{name}: {run.stop}")
    if not run.layers:
        raise BadModelError(f"{name}: nothing trainable at the end of subgraph 0: {run.stop}")
    if head is None:
        return run, run.layers
    if not 1 <= head <= len(run.layers):
        raise BadModelError(
            f"{name}: asked for a head of {head} dense layers, but the trailing run of dense layers has "
            f"{len(run.layers)}: {run.stop}"
        )
    return run, run.layers[-head:]


def _refuse_external_data(model: schema.ModelT, name: str) -> None:
    """Files over 2 GB keep buffers after the flatbuffer (or in other files); repacking the objects
    would drop them."""
    if (
        any(b.offset > 1 for b in model.buffers or [])
        or any(op.largeCustomOptionsOffset > 1 for sg in model.subgraphs for op in sg.operators or [])
        or model.externalBuffers
        or model.externalBufferGroups
    ):
        raise BadModelError(
            f"{name}: keeps data outside the flatbuffer (a model over 2 GB, or external buffers); "
            "edgefdfa cannot rewrite such a file"
        )


# ------------------------------------------------------------------------------------- splitting


def split(data: bytes, head: int | None, name: str) -> Split:
    """Cut the file after its backbone: the trailing `head` dense layers (None: all) become the head."""
    model = _parse(data, name)
    _refuse_external_data(model, name)
    run, layers = _head_layers(model, head, name)
    g = model.subgraphs[0]
    head_input = _indices(g.operators[layers[0].fc].inputs)[0]
    return Split(
        backbone=None if head_input in _indices(g.inputs) else _backbone(data, run.operators(layers), head_input),
        head=[layer.dense for layer in layers],
        softmax=run.softmax is not None,
        input=_info(g.tensors[_indices(g.inputs)[0]]),
        head_input=_info(g.tensors[head_input]),
        output=_info(g.tensors[_indices(g.outputs)[0]]),
    )


def _backbone(data: bytes, removed: set[int], head_input: int) -> bytes:
    """The file without the head's operators, its output moved to the head's input. Signatures go:
    they name the old output."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(data), 0))  # a fresh copy to edit
    g = model.subgraphs[0]
    g.operators = [op for i, op in enumerate(g.operators) if i not in removed]
    g.outputs = [head_input]
    model.signatureDefs = None
    return _serialize(model)


# --------------------------------------------------------------------------------------- writing


def write_head(data: bytes, head: list[tuple[np.ndarray, np.ndarray]], name: str,
               ranges: np.ndarray | None = None) -> bytes:
    """The file with the trailing len(head) dense layers' weights and biases replaced, each in the
    form the file stores it: float32; float16; int8 weights with symmetric scales per channel (or one
    per tensor, as the file had them), and for a full-integer layer an int32 bias at scale
    in_scale * w_scale. `ranges` (one row [min a, max a, min h, max h] per layer, seen on the stream)
    recalibrate a full-integer layer's int8 output scale and zero point (None, or a row not yet
    seen: the file's are kept).

    Only those buffers and scales change. A layer without bias that gets a nonzero one gains a bias
    tensor and buffer. Weights shared with another tensor or operator cannot be replaced alone, and
    are refused.
    """
    model = _parse(data, name)
    _refuse_external_data(model, name)
    _, layers = _head_layers(model, len(head), name)
    if ranges is not None and np.shape(ranges) != (len(layers), 4):
        raise BadModelError(f"{name}: ranges has shape {np.shape(ranges)}; the head has {len(layers)} layers: "
                            f"({len(layers)}, 4)")
    uses = _buffer_uses(model)
    for l, (layer, (W, b)) in enumerate(zip(layers, head)):
        W, b = np.asarray(W, np.float32), np.asarray(b, np.float32)
        if W.shape != layer.dense.W.shape or b.shape != layer.dense.b.shape:
            raise BadModelError(
                f"{name}: {layer.dense.where} has weights {layer.dense.W.shape} and bias {layer.dense.b.shape}; "
                f"got {W.shape} and {b.shape}"
            )
        if layer.dense.form == "int8" and ranges is not None and np.isfinite(ranges[l]).all():
            _recalibrate(model, layer, np.asarray(ranges[l], np.float64))
        _write_layer(model, layer, W, b, uses, name)
    return _serialize(model)


def _buffer_uses(model: schema.ModelT) -> Counter:
    """How many (tensor, operator) pairs read each buffer: more than one, and writing it changes others."""
    uses: Counter = Counter()
    for g in model.subgraphs:
        consumers = Counter(t for op in g.operators or [] for t in _indices(op.inputs))
        for t, tensor in enumerate(g.tensors or []):
            uses[tensor.buffer] += max(1, consumers[t])
    return uses


def _write_layer(model: schema.ModelT, layer: _Layer, W: np.ndarray, b: np.ndarray, uses: Counter, name: str) -> None:
    """Replace one FULLY_CONNECTED's weight and bias data in their stored forms, giving it a bias if
    it learned one. A full-integer layer's bias is quantized at its input's scale times the weights'
    (so the weights go first)."""
    g = model.subgraphs[0]
    op = g.operators[layer.fc]
    inputs = _indices(op.inputs)
    bias = layer.bias
    if bias is None and b.any():
        kind = "int32" if layer.dense.form == "int8" else "float32"
        t = _add_bias_tensor(model, g.tensors[inputs[1]], b.size, kind)
        op.inputs = inputs[:2] + [t]
        uses[g.tensors[t].buffer] += 1
        bias = _Stored(t, kind)
    w_scale = _store(model, layer.weights, W, None, uses, f"the weights of {layer.dense.where}", name)
    if bias is not None:
        in_scale = None
        if bias.kind == "int32":
            q = g.tensors[inputs[0]].quantization
            in_scale = np.float32(q.scale[0]) * w_scale  # (n_out,)
        _store(model, bias, b, in_scale, uses, f"the bias of {layer.dense.where}", name)


def _store(model: schema.ModelT, stored: _Stored, values: np.ndarray, scale: np.ndarray | None, uses: Counter,
           what: str, name: str) -> np.ndarray | None:
    """Write values into a stored tensor in its kind; returns the per-channel scales of int8 weights.
    int8: symmetric, one scale per output channel where the file had them, else one; int32: at `scale`."""
    tensor = model.subgraphs[0].tensors[stored.tensor]
    if uses[tensor.buffer] != 1:
        raise BadModelError(f"{name}: {what} (buffer {tensor.buffer}) are shared with {uses[tensor.buffer] - 1} other "
                            "tensor or operator use(s); writing them would change those too")
    scales = None
    if stored.kind == "float16":
        if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
            raise BadModelError(f"{name}: {what} reach {np.abs(values).max():.3g}, beyond float16's range")
        raw = values.astype("<f2")
    elif stored.kind == "int8":
        per_channel = tensor.quantization is not None and len(tensor.quantization.scale) > 1
        peak = np.abs(values).max(axis=1) if per_channel else np.full(len(values), np.abs(values).max(initial=0.0))
        scales = (np.maximum(peak, np.finfo(np.float32).tiny) / 127.0).astype(np.float32)
        raw = np.clip(np.round(values / scales[:, None]), -127, 127).astype("i1")
        _set_quantization(tensor, scales if per_channel else scales[:1], np.zeros(len(scales) if per_channel else 1))
    elif stored.kind == "int32":
        scale = np.broadcast_to(np.asarray(scale, np.float32), values.shape)
        limit = np.iinfo(np.int32)
        raw = np.clip(np.round(values.astype(np.float64) / scale), limit.min, limit.max).astype("<i4")
        _set_quantization(tensor, scale, np.zeros(len(scale)))
    else:
        raw = values.astype("<f4")
    model.buffers[tensor.buffer].data = np.frombuffer(raw.tobytes(), np.uint8)
    return scales


def _set_quantization(tensor: schema.TensorT, scale: np.ndarray, zero_point: np.ndarray, dimension: int = 0) -> None:
    tensor.quantization = schema.QuantizationParametersT(
        scale=[float(v) for v in scale], zeroPoint=[int(v) for v in zero_point],
        quantizedDimension=dimension if len(scale) > 1 else 0)


def _recalibrate(model: schema.ModelT, layer: _Layer, row: np.ndarray) -> None:
    """Set a full-integer layer's output scale and zero point from the range of its values seen on the
    stream: the FULLY_CONNECTED's output holds h (a fused activation) or a (a separate activation
    follows, which takes h's range for RELU; TANH and LOGISTIC have fixed int8 output scales)."""
    g = model.subgraphs[0]
    lo_a, hi_a, lo_h, hi_h = row
    fc_out = _indices(g.operators[layer.fc].outputs)[0]
    if layer.activation_op is None:
        _set_quantization(g.tensors[fc_out], *_int8_range(lo_h, hi_h))
        return
    _set_quantization(g.tensors[fc_out], *_int8_range(lo_a, hi_a))
    if layer.dense.activation == "relu":
        _set_quantization(g.tensors[_indices(g.operators[layer.activation_op].outputs)[0]], *_int8_range(lo_h, hi_h))


def _int8_range(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) of an asymmetric int8 tensor covering [lo, hi] and 0, as the TFLite converter
    calibrates one."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return np.array([scale], np.float32), np.array([zero_point])


def _add_bias_tensor(model: schema.ModelT, weights: schema.TensorT, n_out: int, kind: str = "float32") -> int:
    """A new (n_out,) bias tensor of `kind` with its own (still empty) buffer; returns its index."""
    model.buffers.append(schema.BufferT())
    g = model.subgraphs[0]
    g.tensors.append(
        schema.TensorT(
            shape=[n_out], type=getattr(schema.TensorType, kind.upper()), buffer=len(model.buffers) - 1,
            name=(weights.name or b"dense") + b"/bias",
        )
    )
    return len(g.tensors) - 1


class _AlignedBuffer(schema.BufferT):
    """A buffer packed with its data 16-byte aligned, as the TFLite converter writes it: interpreters
    read weights in place, and some targets (microcontrollers) cannot load unaligned floats."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data = None
        if self.data is not None and len(self.data):
            raw = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(raw), _ALIGN)
            builder.head -= len(raw)  # place the bytes as flatbuffers' own CreateByteVector does
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _serialize(model: schema.ModelT) -> bytes:
    """Pack the objects into .tflite bytes (identifier TFL3), constant data aligned."""
    for buffer in model.buffers:
        buffer.__class__ = _AlignedBuffer
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


# -------------------------------------------------------------------------------------- building


_OPTIONS = {  # builtin operator -> its options table (schema name without "Options")
    "FULLY_CONNECTED": "FullyConnected", "SOFTMAX": "Softmax", "CONCATENATION": "Concatenation",
    "RESHAPE": "Reshape", "ADD": "Add", "SUB": "Sub", "MUL": "Mul",
    "MEAN": "Reducer", "SUM": "Reducer", "REDUCE_MAX": "Reducer", "REDUCE_MIN": "Reducer",
}
_DEFAULTS = {"SOFTMAX": {"beta": 1.0}}  # where the schema's default (beta 0) is not what a caller means


class Builder:
    """A one-subgraph float .tflite made operator by operator from NumPy constants, without TensorFlow.

        g = Builder()
        x = g.input("window", (1, 32, 6))
        mean = g.op("MEAN", [x, g.const(np.array([1], np.int32))], (1, 6), keep_dims=False)
        h = g.fully_connected(mean, W, b, "relu")
        data = g.finish([x], [g.op("SOFTMAX", [h], (1, len(b)))])

    `op` takes a builtin operator's name, its input tensors, and its output's shape, and returns the
    new output tensor; options are the fields of the operator's options table in snake_case (keep_dims,
    axis, new_shape, fused_activation_function...). Every operator is declared version 1, which
    LiteRT runs for float32. A None in a shape is a dynamic dimension.
    """

    def __init__(self) -> None:
        self.model = schema.ModelT(version=3, description=b"edgefdfa", operatorCodes=[], buffers=[schema.BufferT()])
        self.graph = schema.SubGraphT(tensors=[], operators=[], name=b"main")
        self.model.subgraphs = [self.graph]
        self._codes: dict[int, int] = {}  # builtin operator -> index in operatorCodes

    def input(self, name: str, shape: tuple[int | None, ...], dtype: str = "float32",
              quantization: tuple[float, int] | None = None) -> int:
        """A tensor to pass to finish() as a model input; quantization=(scale, zero_point) for an
        integer tensor of quantized values."""
        return self._tensor(shape, dtype, name, quantization)

    def const(self, array: np.ndarray, name: str = "", quantization: tuple[float, int] | None = None) -> int:
        """A constant tensor holding `array` (float64 stored as float32, int64 as int32, as TFLite's
        float kernels and index inputs expect)."""
        array = np.asarray(array)
        array = array.astype({"float64": np.float32, "int64": np.int32}.get(array.dtype.name, array.dtype))
        t = self._tensor(array.shape, array.dtype.name, name, quantization)
        little = array.astype(array.dtype.newbyteorder("<")).tobytes()  # .tflite files are little-endian
        self.model.buffers.append(schema.BufferT(data=np.frombuffer(little, np.uint8)))
        self.graph.tensors[t].buffer = len(self.model.buffers) - 1
        return t

    def op(self, kind: str, inputs: list[int], shape: tuple[int | None, ...], name: str = "", dtype: str = "float32",
           quantization: tuple[float, int] | None = None, **options) -> int:
        """Append builtin operator `kind` (an input -1: an absent optional input); returns its output."""
        code = getattr(schema.BuiltinOperator, kind, None)
        if code is None:
            raise ConfigError(f"Builder.op: {kind!r} is not a TFLite builtin operator")
        if code not in self._codes:
            self._codes[code] = len(self.model.operatorCodes)
            self.model.operatorCodes.append(
                schema.OperatorCodeT(builtinCode=code, deprecatedBuiltinCode=min(code, 127), version=1)
            )
        output = self._tensor(shape, dtype, name, quantization)
        op = schema.OperatorT(opcodeIndex=self._codes[code], inputs=list(inputs), outputs=[output])
        if kind in _OPTIONS:
            table = _OPTIONS[kind]
            fields = {**_DEFAULTS.get(kind, {}), **{_camel(k): v for k, v in options.items()}}
            if kind == "RESHAPE":  # LiteRT does not take the new shape from the output tensor
                fields.setdefault("newShape", [-1 if d is None else int(d) for d in shape])
            op.builtinOptionsType = getattr(schema.BuiltinOptions, f"{table}Options")
            op.builtinOptions = getattr(schema, f"{table}OptionsT")(**fields)
        elif options:
            raise ConfigError(f"Builder.op knows no options for {kind}; it has options for {', '.join(_OPTIONS)}")
        self.graph.operators.append(op)
        return output

    def fully_connected(self, x: int, W: np.ndarray, b: np.ndarray | None, activation: str, name: str = "",
                        fused: bool = True) -> int:
        """activation(W x + b) on tensor x (batch first), b None for no bias: a FULLY_CONNECTED, a
        relu fused into it when fused=True, else a separate RELU / TANH / LOGISTIC (LiteRT fuses no other)."""
        operators = {v: k for k, v in _SEPARATE.items()}  # engine name -> activation operator
        if activation != "identity" and activation not in operators:
            raise ConfigError(f"Builder.fully_connected: unknown activation {activation!r}")
        shape = self.shape(x)
        out = (shape[0] if len(shape) > 1 else 1, W.shape[0])
        fuse = fused and activation == "relu"
        separate = activation != "identity" and not fuse
        bias = -1 if b is None else self.const(np.asarray(b, np.float32), f"{name}/bias" if name else "")
        weights = self.const(np.asarray(W, np.float32), f"{name}/weights" if name else "")
        y = self.op("FULLY_CONNECTED", [x, weights, bias], out, "" if separate else name,
                    fused_activation_function=_A.RELU if fuse else _A.NONE)
        return self.op(operators[activation], [y], out, name) if separate else y

    def shape(self, t: int) -> tuple[int | None, ...]:
        """Tensor t's shape, None for a dynamic dimension."""
        return _info(self.graph.tensors[t]).shape

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        """The model's bytes, with these tensors as subgraph 0's inputs and outputs."""
        self.graph.inputs, self.graph.outputs = list(inputs), list(outputs)
        return _serialize(self.model)

    def _tensor(self, shape: tuple[int | None, ...], dtype: str, name: str,
                quantization: tuple[float, int] | None) -> int:
        tensor = schema.TensorT(
            shape=[1 if d is None else int(d) for d in shape],
            type=getattr(schema.TensorType, dtype.upper()),
            name=(name or f"t{len(self.graph.tensors)}").encode(),
        )
        if None in tuple(shape):
            tensor.shapeSignature = [-1 if d is None else int(d) for d in shape]
        if quantization is not None:
            tensor.quantization = schema.QuantizationParametersT(scale=[quantization[0]], zeroPoint=[quantization[1]])
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1


def _camel(snake: str) -> str:
    """keep_dims -> keepDims: the schema's field names."""
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def dense_model(
    layers: list[tuple[np.ndarray, np.ndarray | None, str]],
    softmax: bool = False,
    input_shape: tuple[int | None, ...] | None = None,
    fused: bool = True,
) -> bytes:
    """A float32 .tflite MLP: layers of (W (n_out, n_in), b (n_out,) or None, activation) where
    activation is identity | relu | tanh | sigmoid, then SOFTMAX (beta 1) if softmax. The input is
    (1, n_in) unless input_shape says otherwise (its per-sample size must be n_in)."""
    g = Builder()
    x = first = g.input("input", input_shape or (1, layers[0][0].shape[1]))
    for k, (W, b, activation) in enumerate(layers):
        x = g.fully_connected(x, W, b, activation, f"dense{k}", fused)
    if softmax:
        x = g.op("SOFTMAX", [x], g.shape(x), "probabilities")
    return g.finish([first], [x])
