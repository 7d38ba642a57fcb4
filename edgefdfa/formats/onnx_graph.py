"""An ONNX model's top-level graph as the format reads it: parsing that turns any failure into a
BadModelError, tensors indexed by who makes and who reads them, stored values, and Stop, the
exception that says where (and why) a walk through the graph ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import BadModelError, EdgeFDFAError
from .base import TensorInfo


@contextlib.contextmanager
def parsing(name: str) -> Iterator[None]:
    """Turn whatever a damaged file makes onnx, protobuf or NumPy raise into a BadModelError naming it."""
    try:
        yield
    except EdgeFDFAError:
        raise
    except Exception as exc:  # a message that parses but lies (dims vs data, dangling names...)
        raise BadModelError(f"{name} is a damaged ONNX model: {type(exc).__name__}: {exc}") from None


def parse(data: bytes, name: str) -> onnx.ModelProto:
    """The model in `data`, refused unless it parses and declares an IR version and an output."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and whatever a corrupt message raises
        raise BadModelError(f"{name} is not a valid ONNX model: {exc}") from None
    if model.ir_version == 0 or not model.graph.output:
        raise BadModelError(f"{name} is not a valid ONNX model: it declares no IR version or no graph output")
    return model


class Graph:
    """A model's top-level graph indexed by tensor name: which node makes a tensor, which nodes read it."""

    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.model, self.nodes = model, graph.node
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = [v for v in graph.input if v.name not in self.initializers]  # IR < 4 lists initializers too
        self.producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
        self.readers: dict[str, list[int]] = {}
        for i, node in enumerate(graph.node):
            for t in reads(node):
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


def reads(node: onnx.NodeProto) -> Iterator[str]:
    """The tensors a node reads, including those its subgraphs (If, Loop, Scan bodies) read."""
    yield from (t for t in node.input if t)
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
            for inner in sub.node:
                yield from reads(inner)


def _inferred(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor's type as shape inference sees it (empty where inference gives up)."""
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help for shapes, never a reason to refuse a file
        graph = model.graph
    return {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}


def tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    """A value's name, shape (None for a dynamic dimension) and numpy dtype name."""
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name if tensor.elem_type else "unknown"
    except (KeyError, TypeError, ValueError):  # an element type number onnx does not know
        dtype = "unknown"
    return TensorInfo(value.name, shape, dtype)


def opset_version(model: onnx.ModelProto) -> int:
    """The model's default-domain opset."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def node_attrs(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def stored_value(g: Graph, tensor: str) -> np.ndarray | None:
    """The value of a tensor the file stores: an initializer, or a Constant or ConstantOfShape node's output."""
    if tensor in g.initializers:
        if g.initializers[tensor].data_location == TensorProto.EXTERNAL:
            raise Stop(f"the stored tensor '{tensor}'", "its data is in an external file: open the model by its "
                        "path (edgefdfa reads the data file beside it), or re-export with external_data=False")
        return numpy_helper.to_array(g.initializers[tensor])
    node = g.nodes[g.producer[tensor]] if tensor in g.producer else None
    attrs = node_attrs(node) if node is not None else {}
    if node is not None and node.op_type == "ConstantOfShape":
        shape = stored_value(g, node.input[0]) if node.input else None
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


def elem_type(g: Graph, tensor: str) -> int:
    """A tensor's element type as the file or shape inference declares it (0: unknown)."""
    if tensor in g.initializers:
        return g.initializers[tensor].data_type
    info = g.infos.get(tensor)
    return info.type.tensor_type.elem_type if info is not None else 0


class Stop(Exception):
    """Where the trailing run of dense layers ends (a node, or the model input when not at_node), and
    why: a reason, or None when the op is simply not one the head holds. A fatal stop (a head weight
    that is not finite) refuses the file instead of ending the run."""

    def __init__(self, where: str, reason: str | None = None, at_node: bool = True, fatal: bool = False):
        super().__init__(where)
        self.where, self.reason, self.at_node, self.fatal = where, reason, at_node, fatal

    def why(self, holds: str) -> str:
        """": the reason", or, for an op that simply is not one the walk takes, "; the head holds <holds>"."""
        return f": {self.reason}" if self.reason else f"; the head holds {holds}" if self.at_node else ""
