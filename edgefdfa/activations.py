"""Element-wise activations, each with its local derivative, written in place into caller buffers.

The derivative is computed from the pre-activation `a` and the activation `h = f(a)` (whichever is
cheaper), so that a step never allocates.
"""

from __future__ import annotations

import numpy as np


class Activation:
    """f(a) and f'(a), in place. `linear` is True for the identity: callers may skip f and f' (= 1)."""

    name = ""
    linear = False

    def forward(self, a: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def derivative(self, a: np.ndarray, h: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError


class Identity(Activation):
    name, linear = "identity", True

    def forward(self, a, out):
        if out is not a:
            np.copyto(out, a)

    def derivative(self, a, h, out):
        out.fill(1.0)


_ZERO = np.zeros((), dtype=np.float32)  # a 0-d array: no Python-scalar conversion per call


class Relu(Activation):
    name = "relu"

    def forward(self, a, out):
        np.maximum(a, _ZERO, out=out)

    def derivative(self, a, h, out):
        np.sign(h, out=out)  # h = max(a, 0) >= 0, so sign(h) is 1 where a > 0, else 0


class Tanh(Activation):
    name = "tanh"

    def forward(self, a, out):
        np.tanh(a, out=out)

    def derivative(self, a, h, out):
        np.multiply(h, h, out=out)
        np.subtract(1.0, out, out=out)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, a, out):
        # 0.5 * (1 + tanh(a / 2)) is the logistic function without overflow for large |a|
        np.multiply(a, 0.5, out=out)
        np.tanh(out, out=out)
        np.add(out, 1.0, out=out)
        np.multiply(out, 0.5, out=out)

    def derivative(self, a, h, out):
        np.subtract(1.0, h, out=out)
        np.multiply(out, h, out=out)


ACTIVATIONS: dict[str, Activation] = {cls.name: cls() for cls in (Identity, Relu, Tanh, Sigmoid)}
