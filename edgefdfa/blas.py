"""An optional fused rank-1 update through SciPy's BLAS (pip install 'edgefdfa[fast]').

NumPy exposes no BLAS `ger`, so without SciPy an SGD step must write a gradient array and then
subtract it: three passes over the weights instead of one read-write. `available` is True only
when SciPy is installed *and* a probe shows that its `sger` updates a float32 matrix in place.
"""

from __future__ import annotations

import numpy as np

try:
    from scipy.linalg.blas import sger as _sger
except ImportError:  # the reference path in network.Network.local_gradients is used instead
    _sger = None


def rank1_update(W: np.ndarray, alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """W += alpha * outer(x, y) in place, for a C-contiguous float32 W (n_out, n_in)."""
    # W^T is Fortran-ordered, which BLAS updates in place: W^T += alpha * y x^T
    _sger(alpha, y, x, a=W.T, overwrite_a=1)


def _probe() -> bool:
    if _sger is None:
        return False
    W = np.zeros((3, 2), dtype=np.float32)
    out = _sger(1.0, np.ones(2, np.float32), np.arange(3, dtype=np.float32), a=W.T, overwrite_a=1)
    return np.shares_memory(out, W) and bool(np.array_equal(W, np.outer(np.arange(3), np.ones(2))))


available = _probe()
