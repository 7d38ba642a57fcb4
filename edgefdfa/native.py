"""The compiled forward pass: edgefdfa/_head.c (the firmware's dense forward pass, bound once to
the learner's input row and to its weights in place), the learner's fast path for predictions. Per
sample, the extension module's load() and run(), CPython calls; the setup calls go through ctypes
on the same library.

`available()` is False when the module was not built (no C compiler or no Python headers at install)
or the environment sets EDGEFDFA_NATIVE=0; the learner then predicts in NumPy.
"""

from __future__ import annotations

import ctypes
import functools
import os
from types import ModuleType

import numpy as np

from .errors import BadModelError
from .formats.c_header import ACTIVATION_CODES as ACTIVATIONS  # edgefdfa_activation

NOT_FINITE = 16  # EDGEFDFA_SAMPLE_NOT_FINITE: the sample holds NaN or Inf
NOT_A_BUFFER = 17  # EDGEFDFA_SAMPLE_NOT_A_BUFFER: load() takes a C-ordered float32 array of the sample's shape
_F32 = np.dtype(np.float32)


class _Layer(ctypes.Structure):
    """edgefdfa_layer (firmware_bridge/c/edgefdfa_head.h)."""

    _fields_ = [("n_in", ctypes.c_uint32), ("n_out", ctypes.c_uint32), ("w_f32", ctypes.c_void_p),
                ("w_i8", ctypes.c_void_p), ("w_scale", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("activation", ctypes.c_uint8)]


def _load() -> tuple[ModuleType, ctypes.CDLL] | tuple[None, None]:
    """(the extension module, its library with the setup calls declared), or Nones where it was not built."""
    try:
        from . import _head
    except ImportError:
        return None, None
    lib = ctypes.PyDLL(_head.__file__)  # the same library, already loaded: its plain C entry points
    size, p = ctypes.c_size_t, ctypes.c_void_p
    lib.edgefdfa_bound_head_size.argtypes, lib.edgefdfa_bound_head_size.restype = [], size
    lib.edgefdfa_bind.argtypes = [p, p, size, p, size, p, p, p, p, size, ctypes.c_int]
    lib.edgefdfa_bind.restype = ctypes.c_int
    return _head, lib


_MODULE, _LIB = _load()


def available() -> bool:
    """Whether the compiled head is built and not switched off (EDGEFDFA_NATIVE=0)."""
    return _LIB is not None and os.environ.get("EDGEFDFA_NATIVE", "1") != "0"


class Head:
    """A head of dense layers bound to caller-owned buffers. Per sample: load(x) copies x into the
    sample buffer and checks it; run() reads the features and writes `output`. Each returns a status
    (0: done; see failure()). bind() points the layers at the weights, read in place."""

    def __init__(self, activations: list[str], sizes: list[int], sample: np.ndarray, shape: tuple[int, ...],
                 features: np.ndarray, softmax: bool):
        """sizes: (n_in, n_out of each layer); sample and features: float32 buffers that stay put; shape:
        the shape load() takes a sample in (sample.size values)."""
        assert _MODULE is not None and _LIB is not None
        assert sample.dtype == features.dtype == _F32 and features.size == sizes[0]
        self.output = np.zeros(sizes[-1], np.float32)  # (n_out,)
        self._scratch = np.zeros(2 * max(sizes[1:]), np.float32)
        self._layers = (_Layer * len(activations))(*(
            _Layer(n_in, n_out, activation=ACTIVATIONS[a]) for a, n_in, n_out in zip(activations, sizes, sizes[1:])))
        self._buffers = (sample, features)  # held: the C side points into them
        self._bound = ctypes.create_string_buffer(_LIB.edgefdfa_bound_head_size())
        self.weights: list[np.ndarray] = []  # the arrays the layers point into, held
        dims = np.array(shape, np.int64)
        assert dims.prod() == sample.size
        status = _LIB.edgefdfa_bind(self._bound, self._layers, len(activations), sample.ctypes.data, dims.size,
                                    dims.ctypes.data, features.ctypes.data, self.output.ctypes.data,
                                    self._scratch.ctypes.data, self._scratch.size, int(softmax))
        assert status == 0, f"edgefdfa_bind: status {status}"
        # load(x) -> 0, NOT_FINITE or NOT_A_BUFFER; run() -> 0 or an edgefdfa_head_status: C calls, no Python frame
        address = ctypes.addressof(self._bound)
        self.load = functools.partial(_MODULE.load, address)
        self.run = functools.partial(_MODULE.run, address)

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
        self.weights = list(arrays)


class Forward:
    """A network's forward pass in C, bound to its input row `x` and its weights (read in place, so a
    learning step is seen at once). load(v) copies v into x if it is a C-ordered float32 array of x's
    shape and finite, returning 0 (else NOT_A_BUFFER or NOT_FINITE: the caller checks v itself);
    then raw() or probabilities() (a softmax) fill `output_raw` or `output_probabilities`, returning 0."""

    def __init__(self, W: list[np.ndarray], b: list[np.ndarray], activations: list[str], x: np.ndarray):
        sizes = [W[0].shape[1]] + [w.shape[0] for w in W]
        self._heads = heads = [Head(activations, sizes, x, x.shape, x, softmax) for softmax in (False, True)]  # held
        for head in heads:
            head.bind([a for pair in zip(W, b) for a in pair])
        self.load = heads[0].load
        self.raw, self.probabilities = heads[0].run, heads[1].run
        self.output_raw, self.output_probabilities = heads[0].output, heads[1].output


def _copy_sample(dst: np.ndarray, src) -> int:
    """copy_sample where the module is not built: nothing is taken, the caller checks."""
    return NOT_A_BUFFER


copy_sample = _MODULE.copy_sample if available() else _copy_sample
"""copy_sample(dst, src) -> 0, NOT_FINITE or NOT_A_BUFFER: src copied into dst (float32, C order, one
shape) and checked, in one C call; the caller checks anything not 0 itself and says what is wrong."""


def compiles(activations: list[str]) -> bool:
    """Whether the compiled forward pass is at hand and runs these activations."""
    return available() and all(a in ACTIVATIONS for a in activations)
