"""The onnxruntime backend: run an .onnx model's bytes, whole or as a backbone, on the CPU, with set threads."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..errors import BadModelError, ConfigError
from ..formats.base import TensorInfo
from . import base

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


class Backbone(base.Backbone):
    """The backbone file in onnxruntime through an IOBinding: the sample is copied into an input
    buffer bound once, and the features read from an output buffer bound once where the output's
    shape is fixed (else copied out of the one onnxruntime allocates)."""

    def __init__(self, model: bytes, threads: int = 1, name: str = "model"):
        self.name = name
        self._session = _load(model, threads, name)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadModelError(f"{name}: the backbone has {len(inputs)} inputs and {len(outputs)} outputs; "
                                "it needs one of each")
        self.input, self.output = _info(inputs[0], name), _info(outputs[0], name)
        self.sample_shape = base.sample_shape(self.input.shape)
        self._binding = self._session.io_binding()
        one = np.zeros(tuple(d or 1 for d in self.sample_shape), np.float32)  # a sample, dynamic sizes 1
        self._x = self._bind_input(base.batch_of_one(self.input.shape, one.shape))
        self._y = None  # the bound output buffer, flat float32
        if None not in self.input.shape[1:] and None not in self.output.shape[1:] and self.output.dtype == "float32":
            y = np.zeros(tuple(d or 1 for d in self.output.shape), np.float32)  # a dynamic batch is 1 here
            self._binding.bind_output(self.output.name, "cpu", 0, y.dtype, y.shape, y.ctypes.data)
            self._y = y.reshape(-1)
        else:
            self._binding.bind_output(self.output.name, "cpu")
        self.n_features = self._run(one).size

    def features(self, x) -> np.ndarray:
        return self._run(base.check_sample(x, self.sample_shape, self.name))

    def _run(self, x: np.ndarray) -> np.ndarray:
        shape = base.batch_of_one(self.input.shape, x.shape)
        if shape != self._x.shape:  # a dynamic dimension: a buffer of the new shape
            self._x = self._bind_input(shape)
        self._x.reshape(x.shape)[...] = x  # casts to the input's dtype
        try:
            self._session.run_with_iobinding(self._binding)
        except Exception as exc:  # a shape the model rejects inside (e.g. a Reshape)
            raise BadModelError(f"{self.name}: onnxruntime failed on input of shape {x.shape}: {exc}") from None
        if self._y is not None:
            return self._y
        return np.asarray(self._binding.copy_outputs_to_cpu()[0], np.float32).reshape(-1)

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
