"""The onnxruntime backend: run an .onnx model's bytes on one input, on the CPU, with set threads."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..errors import BadModelError, ConfigError
from ..formats.base import TensorInfo

NAME = "onnxruntime"
_DTYPES = {  # onnxruntime's type names -> numpy's
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


class Session:
    """One model loaded in onnxruntime: its single input, its first output, and run(x)."""

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._session = _load(model, threads, name)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BadModelError(f"{name}: the model has {len(inputs)} inputs; edgefdfa needs exactly one")
        self.input = _info(inputs[0], name)
        self.output = _info(self._session.get_outputs()[0], name)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The first output for x, shaped like the declared input (None dims take any size), as new float32."""
        x = np.asarray(x)
        expected = self.input.shape
        if x.ndim != len(expected) or any(d is not None and d != n for d, n in zip(expected, x.shape)):
            raise BadModelError(f"{self.name}: input '{self.input.name}' takes shape {_shape(expected)}, "
                                f"given {x.shape}")
        try:
            (y,) = self._session.run([self.output.name], {self.input.name: x.astype(self.input.dtype, copy=False)})
        except Exception as exc:  # a shape the model rejects inside (e.g. a Reshape on a dynamic batch)
            raise BadModelError(f"{self.name}: onnxruntime failed on input of shape {x.shape}: {exc}") from None
        return np.array(y, dtype=np.float32)


class InferenceSession:
    """A format's inference_model in onnxruntime, run through an IOBinding: the head's weights are bound
    once and read in place at every run (learning that writes them in place needs no new set_weights);
    the input is copied into a bound buffer; outputs of a fixed shape are written into bound buffers
    (copied out), others allocated by onnxruntime at each run."""

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._session = _load(model, threads, name)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self.input = _info(inputs[0], name)
        self.outputs = [_info(o, name) for o in outputs]
        self._weight_names, self._weights = [i.name for i in inputs[1:]], []
        self._binding = self._session.io_binding()
        self._x = self._bind_input(tuple(1 if d is None else d for d in self.input.shape))  # one sample
        self._y: list[np.ndarray] | None = None  # the bound output buffers, flat views
        if None not in self.input.shape and all(None not in o.shape for o in self.outputs):
            buffers = [np.zeros(o.shape, o.dtype) for o in self.outputs]
            for output, y in zip(self.outputs, buffers):
                self._binding.bind_output(output.name, "cpu", 0, y.dtype, y.shape, y.ctypes.data)
            self._y = [y.reshape(-1) for y in buffers]
        else:
            for output in outputs:
                self._binding.bind_output(output.name, "cpu")

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        """Bind [W0, b0, W1, b1...] (C-contiguous float32, kept alive here), read in place from now on."""
        if len(arrays) == len(self._weights) and all(a is b for a, b in zip(arrays, self._weights)):
            return  # bound already
        if len(arrays) != len(self._weight_names):
            raise BadModelError(f"{self.name}: the model takes {len(self._weight_names)} weight inputs, given {len(arrays)}")
        for name, a in zip(self._weight_names, arrays):
            assert a.dtype == np.float32 and a.flags.c_contiguous, name  # else onnxruntime would bind a copy
            self._binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(a))
        self._weights = list(arrays)

    def run(self, x: np.ndarray, n: int | None = None) -> list[np.ndarray]:
        """The first n outputs (all by default) for x (shape checked by the caller, batch dimension
        included), as new flat arrays."""
        if x.shape != self._x.shape:  # a dynamic dimension: a buffer of the new shape
            self._x = self._bind_input(x.shape)
        self._x[...] = x  # casts to the input's dtype
        try:
            self._session.run_with_iobinding(self._binding)
        except Exception as exc:  # a shape the model rejects inside (e.g. a Reshape)
            raise BadModelError(f"{self.name}: onnxruntime failed on input of shape {x.shape}: {exc}") from None
        if self._y is not None:
            return [y.copy() for y in self._y[:n]]
        return [y.reshape(-1) for y in self._binding.copy_outputs_to_cpu()[:n]]

    def _bind_input(self, shape: tuple[int, ...]) -> np.ndarray:
        buffer = np.zeros(shape, self.input.dtype)
        self._binding.bind_ortvalue_input(self.input.name, ort.OrtValue.ortvalue_from_numpy(buffer))
        return buffer


def _load(model: bytes, threads: int, name: str) -> ort.InferenceSession:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive int, got {threads!r} (onnxruntime reads 0 as 'every core')")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # Pi-class devices have few, slow cores: never "all of them"
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind classes, with no public base but Exception
        raise BadModelError(f"{name}: onnxruntime cannot load it: {exc}") from None


def _info(arg: ort.NodeArg, name: str) -> TensorInfo:
    if arg.type not in _DTYPES:
        raise BadModelError(f"{name}: '{arg.name}' is a {arg.type}; edgefdfa reads and writes numeric tensors")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)  # symbolic/unknown -> None
    return TensorInfo(arg.name, shape, _DTYPES[arg.type])


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
