"""The compiled head: edgefdfa/_head.c (the firmware's dense forward pass, bound once to a sample's
buffers), loaded with ctypes. It lets a TFLite file's head run outside the interpreter on the engine's
weights in place, one C call per sample (see backends/tflite.py CutSession).

`available()` is False when the library was not built (no C compiler at install) or the environment
sets EDGEFDFA_NATIVE=0; EdgeModel then runs the whole file in the interpreter.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os

import numpy as np

from .errors import BadModelError

ACTIVATIONS = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}  # edgefdfa_activation
NOT_FINITE = 16  # EDGEFDFA_SAMPLE_NOT_FINITE: the sample holds NaN or Inf
_F32 = np.dtype(np.float32)


class NotFinite(Exception):
    """The compiled head refused the sample (NaN or Inf); the caller says where, in its own words."""


class _Layer(ctypes.Structure):
    """edgefdfa_layer (firmware_bridge/c/edgefdfa_head.h)."""

    _fields_ = [("n_in", ctypes.c_uint32), ("n_out", ctypes.c_uint32), ("w_f32", ctypes.c_void_p),
                ("w_i8", ctypes.c_void_p), ("w_scale", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("activation", ctypes.c_uint8)]


def _load() -> ctypes.CDLL | None:
    """The built library with its signatures declared, or None where it was not built."""
    spec = importlib.util.find_spec("edgefdfa._head")
    if spec is None or spec.origin is None:
        return None
    try:
        lib = ctypes.PyDLL(spec.origin)  # keeps the GIL: a call is ~1 us, less than releasing it costs
    except OSError:
        return None
    size, p = ctypes.c_size_t, ctypes.c_void_p
    lib.edgefdfa_bound_head_size.argtypes, lib.edgefdfa_bound_head_size.restype = [], size
    lib.edgefdfa_bind.argtypes = [p, p, size, p, size, p, p, p, size, ctypes.c_int]
    lib.edgefdfa_bind.restype = ctypes.c_int
    lib.edgefdfa_run.argtypes, lib.edgefdfa_run.restype = [p], ctypes.c_int
    return lib


_LIB = _load()


def available() -> bool:
    """Whether the compiled head is built and not switched off (EDGEFDFA_NATIVE=0)."""
    return _LIB is not None and os.environ.get("EDGEFDFA_NATIVE", "1") != "0"


class Head:
    """A head of dense layers bound to caller-owned buffers: run() reads the sample (float32, checked
    finite) and the features, writes `output` and returns a status (0: done; see failure()). bind()
    points it at the weights, read in place."""

    def __init__(self, activations: list[str], sizes: list[int], sample: np.ndarray, features: np.ndarray,
                 softmax: bool):
        """sizes: (n_in, n_out of each layer); sample and features: float32 buffers that stay put."""
        assert _LIB is not None and sample.dtype == features.dtype == _F32 and features.size == sizes[0]
        self.output = np.zeros(sizes[-1], np.float32)  # (n_out,)
        self._scratch = np.zeros(2 * max(sizes[1:]), np.float32)
        self._layers = (_Layer * len(activations))(*(
            _Layer(n_in, n_out, activation=ACTIVATIONS[a]) for a, n_in, n_out in zip(activations, sizes, sizes[1:])))
        self._buffers = (sample, features)  # held: the C side points into them
        self._bound = ctypes.create_string_buffer(_LIB.edgefdfa_bound_head_size())
        self._weights: list[np.ndarray] = []
        status = _LIB.edgefdfa_bind(self._bound, self._layers, len(activations), sample.ctypes.data, sample.size,
                                    features.ctypes.data, self.output.ctypes.data, self._scratch.ctypes.data,
                                    self._scratch.size, int(softmax))
        assert status == 0, f"edgefdfa_bind: status {status}"
        # run() -> status (0, NOT_FINITE, an edgefdfa_head_status): one C call, no Python frame
        self.run = functools.partial(_LIB.edgefdfa_run, ctypes.c_void_p(ctypes.addressof(self._bound)))

    def bind(self, arrays: list[np.ndarray]) -> None:
        """Point the layers at [W0, b0, W1, b1...] (float32, C order, W (n_out, n_in), b (n_out,)), held here."""
        if len(arrays) != 2 * len(self._layers):
            raise BadModelError(f"the head has {len(self._layers)} layers: {2 * len(self._layers)} arrays, "
                                f"given {len(arrays)}")
        for layer, W, b in zip(self._layers, arrays[::2], arrays[1::2]):
            for a, shape in ((W, (layer.n_out, layer.n_in)), (b, (layer.n_out,))):
                if a.dtype != _F32 or a.shape != shape or not a.flags.c_contiguous:
                    raise BadModelError(f"a head weight has dtype {a.dtype} and shape {a.shape}; "
                                        f"the compiled head reads C-ordered float32 {shape}")
            layer.w_f32, layer.bias = W.ctypes.data, b.ctypes.data
        self._weights = list(arrays)


def failure(status: int) -> Exception:
    """The error for a non-zero status of Head.run()."""
    return NotFinite() if status == NOT_FINITE else BadModelError(f"the compiled head failed with status {status}")
