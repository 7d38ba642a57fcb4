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
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a positive int, got {threads!r} (onnxruntime reads 0 as 'every core')")
        self.name = name
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # Pi-class devices have few, slow cores: never "all of them"
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind classes, with no public base but Exception
            raise BadModelError(f"{name}: onnxruntime cannot load it: {exc}") from None
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


def _info(arg: ort.NodeArg, name: str) -> TensorInfo:
    if arg.type not in _DTYPES:
        raise BadModelError(f"{name}: '{arg.name}' is a {arg.type}; edgefdfa reads and writes numeric tensors")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)  # symbolic/unknown -> None
    return TensorInfo(arg.name, shape, _DTYPES[arg.type])


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
