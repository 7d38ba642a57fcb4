"""Optional BLAS level-1/2 updates through SciPy (pip install 'edgefdfa[fast]').

NumPy exposes no BLAS `ger`, `axpy` or `scal`, so without SciPy an SGD step must write a gradient
array and then subtract it: three passes over the weights instead of one read-write. `available` is
True only when SciPy is installed *and* a probe shows that its routines update float32 arrays in place.

The wrappers pass every argument by position: f2py parses keywords at about a microsecond a call,
as much as a small update itself costs.
"""

from __future__ import annotations

import numpy as np

try:
    from scipy.linalg.blas import saxpy as _saxpy, sdot as _sdot, sger as _sger, sscal as _sscal
except ImportError:  # the reference path in network.Network.local_gradients is used instead
    _sger = _saxpy = _sdot = _sscal = None


def rank1_update(WT: np.ndarray, alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """W += alpha * outer(x, y) in place, given WT = W.T of a C-contiguous float32 W (n_out, n_in).

    W^T is Fortran-ordered, which BLAS updates in place: W^T += alpha * y x^T.
    """
    _sger(alpha, y, x, 1, 1, WT, 1, 1, 1)  # (alpha, x, y, incx, incy, a, overwrite_x, overwrite_y, overwrite_a)


def axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """y += alpha * x in place, for contiguous 1-D float32 x and y of one length."""
    _saxpy(x, y, x.shape[0], alpha)


def scale(alpha: float, x: np.ndarray) -> None:
    """x *= alpha in place, for a contiguous 1-D float32 x."""
    _sscal(alpha, x)


def sumsq(x: np.ndarray) -> float:
    """x . x for a contiguous 1-D float32 x (NumPy's dot when SciPy is absent)."""
    if available:
        return _sdot(x, x)
    with np.errstate(over="ignore"):  # an overflow is inf, which the callers refuse
        return float(x.dot(x))


def _probe() -> bool:
    if _sger is None:
        return False
    W = np.zeros((3, 2), dtype=np.float32)
    out = _sger(1.0, np.ones(2, np.float32), np.arange(3, dtype=np.float32), 1, 1, W.T, 1, 1, 1)
    y = np.ones(3, dtype=np.float32)
    out_y = _saxpy(np.arange(3, dtype=np.float32), y, 3, 2.0)
    out_s = _sscal(0.5, y)
    return (np.shares_memory(out, W) and bool(np.array_equal(W, np.outer(np.arange(3), np.ones(2))))
            and np.shares_memory(out_y, y) and np.shares_memory(out_s, y) and bool(np.array_equal(y, [0.5, 1.5, 2.5]))
            and _sdot(y, y) == 8.75)


available = _probe()
