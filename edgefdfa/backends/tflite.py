"""Run a .tflite model's bytes in a TFLite interpreter: LiteRT, else tflite-runtime, else TensorFlow.

The first that imports is used; the environment variable EDGEFDFA_TFLITE (litert | tflite_runtime |
tensorflow) forces one. `NAME` says which was chosen (None when none could be imported: then
creating a Session raises a BadModelError saying what to install).

Quantized inputs and outputs are handled at the boundary: a float sample is quantized with the
input tensor's scale and zero point, and an integer output is dequantized, so callers always pass
and get float32.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from .. import native
from ..errors import BadModelError
from ..formats import tflite as tflite_format
from ..formats.base import TensorInfo
from . import base

_INTERPRETERS = {  # NAME -> (module, attribute path of the Interpreter class), in order of preference
    "litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter"),  # needs numpy<2
    "tensorflow": ("tensorflow", "lite.Interpreter"),
}
_INSTALL = "pip install ai-edge-litert (or, where it has no wheel, tflite-runtime with numpy<2)"


def _import(name: str) -> type:
    module, attributes = _INTERPRETERS[name]
    found = importlib.import_module(module)
    for attribute in attributes.split("."):
        found = getattr(found, attribute)
    return found


def _choose() -> tuple[str | None, type | None, str]:
    """(NAME, Interpreter class, "") for the interpreter to use, or (None, None, why there is none)."""
    forced = os.environ.get("EDGEFDFA_TFLITE", "")
    if forced and forced not in _INTERPRETERS:
        return None, None, f"EDGEFDFA_TFLITE={forced!r} is not one of {', '.join(_INTERPRETERS)}"
    failures = []
    for name in [forced] if forced else _INTERPRETERS:
        try:
            return name, _import(name), ""
        except (ImportError, AttributeError) as e:  # tflite_runtime built for numpy 1 fails on numpy 2 here
            failures.append(f"{name}: {e}")
    return None, None, f"no TFLite interpreter could be imported ({'; '.join(failures)}); {_INSTALL}"


NAME, _Interpreter, _MISSING = _choose()


class Session:
    """One model loaded in the interpreter; run() feeds it one input tensor (one sample, or a batch
    where the model's batch dimension is dynamic)."""

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._interpreter = _load(model, threads, name)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise BadModelError(
                f"{name}: has {len(inputs)} inputs and {len(outputs)} outputs; edgefdfa needs one input"
            )
        self._in, self._out = inputs[0], outputs[0]
        self.input, self.output = _info(self._in), _info(self._out)
        self._shape = tuple(self._in["shape"])  # the input shape the interpreter is allocated for

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for input x (shaped like the declared input), as a new float32 array."""
        x = np.asarray(x)
        expected = self.input.shape
        if len(x.shape) != len(expected) or any(e is not None and e != g for e, g in zip(expected, x.shape)):
            raise BadModelError(
                f"{self.name}: input {self.input.name!r} has shape {_shape_text(expected)}; given {x.shape}"
            )
        try:
            if x.shape != self._shape:  # a dynamic dimension: resize once, not per call
                self._interpreter.resize_tensor_input(self._in["index"], x.shape)
                self._interpreter.allocate_tensors()
                self._shape = x.shape
            self._interpreter.set_tensor(self._in["index"], _quantize(x, self._in))
            self._interpreter.invoke()
            return _dequantize(self._interpreter.get_tensor(self._out["index"]), self._out)
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e


class Backbone(base.Backbone):
    """The backbone file in the interpreter, allocated for a batch of one (a dynamic batch, as Keras
    writes it, is fixed to 1 before allocation). A float sample is quantized into an integer input
    and integer features dequantized, as the tensors' scales and zero points say.

    The fast path writes the sample into the input's buffer and reads the features out of the
    output's through NumPy views taken once, and invokes through the interpreter's C++ wrapper: the
    Python Interpreter refuses to invoke while any view is alive, since invoke() may move buffers.
    TFLite moves them only when tensors are (re)allocated: on a resize, or inside invoke in a graph
    whose sizes depend on the values. So the views are used only if the buffers stay put over two
    invokes; otherwise (or where the wrapper differs) the backbone uses set_tensor/get_tensor.
    """

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._interpreter = _load(model, threads, name, batch_of_one=True)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadModelError(f"{name}: the backbone has {len(inputs)} inputs and {len(outputs)} outputs; "
                                "it needs one of each")
        self._in, self._out = inputs[0], outputs[0]
        self.input, self.output = _info(self._in), _info(self._out)
        self.sample_shape = base.sample_shape(self.input.shape)
        self._index, self._output = self._in["index"], self._out["index"]
        self._shape = tuple(int(d) for d in self._in["shape"])  # as allocated now
        self._sample = base.sample_shape(self._shape)
        self._quantized = _scale(self._in) is not None, _scale(self._out) is not None
        self._scale, self._zero_point = _scale(self._out) or (1.0, 0)
        self._invoke, self._x, self._xs, self._y = None, None, None, None  # Invoke; views of the buffers
        self._copy = None  # native.copy_sample into the input's view, where there is one
        self.n_features = self._run_public(np.zeros(self._shape, np.float32)).size  # allocates dynamic tensors
        self._real = np.zeros(self.n_features, np.float32) if self._quantized[1] else None  # dequantized features
        self._table = None  # the real value of each of the 256 codes of an 8-bit output
        self._dequantize = native.dequantize
        if self._quantized[1] and np.dtype(self._out["dtype"]).itemsize == 1:
            codes = np.arange(256, dtype=np.uint8).view(self._out["dtype"])
            self._table = _dequantize(codes, self._out)
        self._take_views()

    def features(self, x: Any) -> np.ndarray:
        if self._copy is None or self._copy(self._xs, x):  # not taken as it is (C: shape, type, finite)
            x = base.check_sample(x, self.sample_shape, self.name)
            if x.shape != self._sample:  # a dynamic dimension beyond the batch
                self._resize(base.batch_of_one(self.input.shape, x.shape))
            if self._xs is None:
                return self._run_public(x.reshape(self._shape))
            np.copyto(self._xs, x)
        try:
            self._invoke()
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e
        if self._real is None:
            return self._y
        if self._table is not None:  # int8 / uint8 -> real values: one look-up of the 256 possible
            self._dequantize(self._real, self._y, self._table)
            return self._real
        np.subtract(self._y, self._zero_point, out=self._real, dtype=np.float32)
        self._real *= self._scale
        return self._real

    def _run_public(self, x: np.ndarray) -> np.ndarray:
        """features() through the Interpreter's own set_tensor / invoke / get_tensor (copies)."""
        interpreter = self._interpreter
        try:
            interpreter.set_tensor(self._index, _quantize(x, self._in))
            interpreter.invoke()
            y = interpreter.get_tensor(self._output).reshape(-1)
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e
        return _dequantize(y, self._out) if self._quantized[1] else y.astype(np.float32, copy=False)

    def _resize(self, shape: tuple[int, ...]) -> None:
        self._drop_views()  # the Interpreter refuses to reallocate under live views
        try:
            self._interpreter.resize_tensor_input(self._index, shape)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed on shape {shape}: {e}") from e
        self._shape, self._sample = shape, base.sample_shape(shape)
        self._run_public(np.zeros(shape, np.float32))
        self._take_views()

    def _take_views(self) -> None:
        """Hold views of the input's and output's buffers if the wrapper gives them and they stay put
        over two invokes; else leave the backbone on the public calls."""
        wrapper = getattr(self._interpreter, "_interpreter", None)
        if self._quantized[0] or not all(hasattr(wrapper, m) for m in ("tensor", "Invoke")):
            return
        try:
            self._x = wrapper.tensor(wrapper, self._index)
            self._y = wrapper.tensor(wrapper, self._output).reshape(-1)  # flat view
        except ValueError:  # a buffer not allocated: the public calls it is
            self._drop_views()
            return
        self._invoke, self._xs = wrapper.Invoke, self._x.reshape(self._sample)
        self._copy = native.copy_sample if self._xs.dtype == np.float32 else None
        self._x[...] = 0  # the trial invokes run on zeros, not on whatever the allocation held
        for _ in range(2):
            self._invoke()
        if self._y.dtype not in (np.float32, np.int8, np.uint8, np.int16) or not self._views_hold():
            self._drop_views()

    def _views_hold(self) -> bool:
        """Whether the held views still point at the tensors' buffers."""
        wrapper = self._interpreter._interpreter
        return all(v.ctypes.data == wrapper.tensor(wrapper, i).ctypes.data
                   for v, i in ((self._x, self._index), (self._y, self._output)))

    def _drop_views(self) -> None:
        """Back to the public calls: they check that nothing refers to the wrapper but the Interpreter."""
        self._invoke, self._x, self._xs, self._y, self._copy = None, None, None, None, None


def _load(model: bytes, threads: int, name: str, batch_of_one: bool = False):
    """The model in the chosen interpreter, tensors allocated (for a batch of one where the input's
    batch is dynamic, if asked: the Keras default, whose Flatten then has a fixed size)."""
    if _Interpreter is None:
        raise BadModelError(f"cannot run {name}: {_MISSING}")
    tflite_format.check(model, name)  # old interpreters crash on corrupt bytes instead of refusing them
    try:
        interpreter = _Interpreter(model_content=bytes(model), num_threads=threads)
        signature = [d["shape_signature"] for d in interpreter.get_input_details()]
        if batch_of_one and len(signature) == 1 and len(signature[0]) > 1 and signature[0][0] < 0:
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"],
                                            [1, *interpreter.get_input_details()[0]["shape"][1:]])
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadModelError(f"{name}: the TFLite interpreter ({NAME}) refused it: {e}") from e
    return interpreter


def _info(details: dict) -> TensorInfo:
    shape = details.get("shape_signature", details["shape"])
    return TensorInfo(
        name=details["name"],
        shape=tuple(None if d < 0 else int(d) for d in shape),
        dtype=np.dtype(details["dtype"]).name,
    )


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _scale(details: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized integer tensor; None if it holds plain values."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    if not np.issubdtype(details["dtype"], np.integer) or scale == 0.0:
        return None
    return scale, zero_point


def _quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """x cast to the input's dtype: quantized (round(x / scale) + zero point, saturated) when it is."""
    dtype = np.dtype(details["dtype"])
    quantization = _scale(details)
    if quantization is None:
        return x.astype(dtype)
    scale, zero_point = quantization
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, limits.min, limits.max).astype(dtype)


def _dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    """y as a new float32 array: (q - zero point) * scale for a quantized output."""
    quantization = _scale(details)
    if quantization is None:
        return np.array(y, dtype=np.float32)
    scale, zero_point = quantization
    return ((y.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
