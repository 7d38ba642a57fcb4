"""The reference the backend tests compare against: a dense head in float64 NumPy."""

import numpy as np

ACT = {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
       "sigmoid": lambda v: 1 / (1 + np.exp(-v))}


def head_forward(layers, x, softmax: bool) -> np.ndarray:
    """`layers` = (W (n_out, n_in), b, activation) in order, on x (n, n_in); then softmax if asked."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for W, b, activation in layers:
        h = ACT[activation](h @ np.asarray(W, np.float64).T + b)
    if softmax:
        h = np.exp(h - h.max(axis=1, keepdims=True))
        h /= h.sum(axis=1, keepdims=True)
    return h
