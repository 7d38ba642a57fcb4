"""Run a .tflite model's bytes in a TFLite interpreter: LiteRT, else tflite-runtime, else TensorFlow.

The first that imports is used; the environment variable EDGEFDFA_TFLITE (litert | tflite_runtime |
tensorflow) forces one. `NAME` says which was chosen (None when none could be imported: then
creating a Session raises a BadModelError saying what to install).

Quantized inputs and outputs are handled at the boundary: a float sample is quantized with the
input tensor's scale and zero point, and an integer output is dequantized, so callers always pass
and get float32.

EdgeModel runs a file through `cut_session` (the backbone here, the head compiled: edgefdfa/native.py)
where it can, else through an InferenceSession on the format's inference_model (the whole file).
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from .. import native
from ..errors import BadModelError
from ..formats import tflite as tflite_format
from ..formats.base import Split, TensorInfo

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


class InferenceSession:
    """A format's inference_model in the interpreter: the sample and the head's weights in, every
    output out, in one invoke. set_weights copies the weights into the interpreter, so call it again
    after they change.

    The fast path writes the sample into the input's buffer and copies the outputs out of theirs
    through NumPy views taken once, and invokes through the interpreter's C++ wrapper. The Python
    Interpreter refuses to invoke while any view is alive (invoke() and allocate_tensors() may move
    the buffers); TFLite moves them only when tensors are (re)allocated: on a resize, which drops and
    retakes the views here, and, in a graph whose sizes depend on the values, inside invoke. So the
    views are used only if the buffers stay put over two invokes when they are taken, and checked again
    at every set_weights; otherwise (or where the wrapper differs) the session uses set_tensor/get_tensor.
    """

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._interpreter = _load(model, threads, name)
        inputs, self._out = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self._in, self._weights = inputs[0], [d["index"] for d in inputs[1:]]
        self.input, self.outputs = _info(self._in), [_info(d) for d in self._out]
        self._index, self._outputs = self._in["index"], [d["index"] for d in self._out]
        self._shape = tuple(int(d) for d in self._in["shape"])  # as allocated now
        self._quantized = _scale(self._in) is not None, any(_scale(d) is not None for d in self._out)
        self._arrays: list[np.ndarray] = []
        self._invoke, self._x, self._y = None, None, []  # the wrapper's Invoke, views of the input's and outputs' buffers
        self._take_views()

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        """Copy [W0, b0, W1, b1...] (float32, W (n_out, n_in), b (n_out,)) into the interpreter."""
        if len(arrays) != len(self._weights):
            raise BadModelError(f"{self.name}: the model takes {len(self._weights)} weight inputs, given {len(arrays)}")
        try:
            for index, a in zip(self._weights, arrays):
                self._interpreter.set_tensor(index, a)
        except ValueError as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) refused a weight: {e}") from e
        self._arrays = list(arrays)
        if self._x is not None and not self._views_hold():
            self._drop_views()

    def run(self, x: np.ndarray, n: int | None = None) -> list[np.ndarray]:
        """The first n outputs (all by default) for x (shape checked by the caller, batch dimension
        included), as new flat float32 arrays."""
        if x.shape != self._shape:  # a dynamic dimension: reallocating loses the weights, set them again
            self._resize(x.shape)
        if self._x is None:
            return self._run_public(x, n)
        self._x[...] = x  # casts, as set_tensor would
        try:
            self._invoke()
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e
        if self._quantized[1]:
            return [_dequantize(y, d) for y, d in zip(self._y[:n], self._out)]
        return [y.copy() for y in self._y[:n]]

    def _run_public(self, x: np.ndarray, n: int | None) -> list[np.ndarray]:
        """run() through the Interpreter's own set_tensor / invoke / get_tensor (copies)."""
        interpreter = self._interpreter
        try:
            interpreter.set_tensor(self._index, _quantize(x, self._in))
            interpreter.invoke()
            outputs = [interpreter.get_tensor(i).reshape(-1) for i in self._outputs[:n]]
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e
        return [_dequantize(y, d) for y, d in zip(outputs, self._out)] if self._quantized[1] else outputs

    def _resize(self, shape: tuple[int, ...]) -> None:
        self._drop_views()  # the Interpreter refuses to reallocate under live views
        try:
            self._interpreter.resize_tensor_input(self._index, shape)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed on shape {shape}: {e}") from e
        self._shape = shape
        self.set_weights(self._arrays)
        self._take_views()

    def _take_views(self) -> None:
        """Hold views of the input's and outputs' buffers if the wrapper gives them and they stay put
        over two invokes; else leave the session on the public calls."""
        wrapper = getattr(self._interpreter, "_interpreter", None)
        if self._quantized[0] or not all(hasattr(wrapper, m) for m in ("tensor", "Invoke")):
            return
        self._invoke = wrapper.Invoke
        self._x = wrapper.tensor(wrapper, self._index)
        self._y = [wrapper.tensor(wrapper, i).reshape(-1) for i in self._outputs]  # flat views
        self._x[...] = 0  # the trial invokes run on zeros, not on whatever the allocation held
        try:
            for _ in range(2):
                self._invoke()
        except (ValueError, RuntimeError):  # weights not set yet, in a model that minds: judged at set_weights
            pass
        if not self._views_hold():
            self._drop_views()

    def _views_hold(self) -> bool:
        """Whether the held views still point at the tensors' buffers."""
        wrapper = self._interpreter._interpreter
        return all(v.ctypes.data == wrapper.tensor(wrapper, i).ctypes.data
                   for v, i in zip([self._x, *self._y], [self._index, *self._outputs]))

    def _drop_views(self) -> None:
        """Back to the public calls: they check that nothing refers to the wrapper but the Interpreter."""
        self._invoke, self._x, self._y = None, None, []


class CutSession:
    """The file cut in two: the backbone in the interpreter, through views held on its input and output
    buffers, and the head in C on the engine's weights in place. Per sample: a C call that copies the
    sample into the backbone's input buffer and checks it, one invoke, a C call that runs the head on
    the backbone's output buffer. Same calls as InferenceSession, but run() takes the sample without
    the batch dimension, and checks it (checks_samples): native.NotASample for anything but a C-ordered
    float32 array of the sample's shape, native.NotFinite for one holding NaN or Inf."""

    checks_samples = True

    def __init__(self, split: Split, name: str, backbone: InferenceSession | None, x: np.ndarray,
                 features: np.ndarray):
        """x, features: the buffers the sample and the head's input are in (the same one without a backbone)."""
        self.name, self._backbone = name, backbone  # the backbone is held: x and features are its views
        self._invoke = backbone._invoke if backbone else None
        self._features = features  # (n_in,) returned by run() as the second output
        sizes = [split.head[0].W.shape[1]] + [layer.W.shape[0] for layer in split.head]
        shape = split.input.shape[1:] if len(split.input.shape) > 1 else split.input.shape  # one sample's
        self._head = native.Head([layer.activation for layer in split.head], sizes, x, shape, features, split.softmax)
        self._load, self._run_head, self._out = self._head.load, self._head.run, self._head.output

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        """Point the head at [W0, b0, W1, b1...] (float32, W (n_out, n_in)). It reads them in place, so
        this does nothing for the arrays it already reads (a learning step); for others (a new learner)
        it checks, as InferenceSession does, that the backbone's buffers it points into stayed put."""
        if len(arrays) == len(self._head.weights) and all(a is b for a, b in zip(arrays, self._head.weights)):
            return
        if self._backbone is not None and not self._backbone._views_hold():
            raise BadModelError(f"{self.name}: the backbone's buffers moved (tensor sizes that depend on the "
                                "values); run it whole with EDGEFDFA_NATIVE=0")
        self._head.bind(arrays)

    def run(self, x: np.ndarray, n: int | None = None) -> list[np.ndarray]:
        """[output] (n=1) or [output, features] for one sample x, as new flat float32 arrays."""
        status = self._load(x)
        if status:
            raise native.failure(status)
        if self._invoke is not None:
            try:
                self._invoke()
            except (ValueError, RuntimeError) as e:
                raise BadModelError(f"{self.name}: the TFLite interpreter ({NAME}) failed: {e}") from e
        status = self._run_head()
        if status:
            raise native.failure(status)
        if n == 1:
            return [self._out.copy()]
        return [self._out.copy(), self._features.copy()]


def cut_session(split: Split, threads: int = 1, name: str = "model") -> CutSession | None:
    """A CutSession for the split file, or None where it cannot run one: the compiled head not built (or
    EDGEFDFA_NATIVE=0), an unsupported activation, a sample shape not fixed, a quantized or non-float32
    input, features or output, or backbone buffers that move (see InferenceSession)."""
    shape = split.input.shape
    shape = (1, *shape[1:]) if len(shape) > 1 else shape  # as EdgeModel passes a sample: a batch of one
    float32 = all(t.dtype == "float32" for t in (split.input, split.head_input, split.output))
    if (not native.available() or not float32 or None in shape
            or any(layer.activation not in native.ACTIVATIONS for layer in split.head)):
        return None
    if split.backbone is None:
        x = np.zeros(shape, np.float32)
        return CutSession(split, name, None, x, x.reshape(-1))
    backbone = InferenceSession(split.backbone, threads, name)
    if backbone._x is None or backbone._shape != shape or backbone._quantized[1] or backbone._y[0].dtype != np.float32:
        return None
    return CutSession(split, name, backbone, backbone._x, backbone._y[0])


def _load(model: bytes, threads: int, name: str):
    """The model in the chosen interpreter, tensors allocated."""
    if _Interpreter is None:
        raise BadModelError(f"cannot run {name}: {_MISSING}")
    tflite_format.check(model, name)  # old interpreters crash on corrupt bytes instead of refusing them
    try:
        interpreter = _Interpreter(model_content=bytes(model), num_threads=threads)
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
