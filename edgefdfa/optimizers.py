"""Optimisers over the flat parameter array: one vectorised pass per state array, state allocated once."""

from __future__ import annotations

import math

import numpy as np

from . import checkpoint


class Optimizer:
    """Updates `params` in place from `grad` (both flat float32); `grad` may be used as scratch.

    `grad_scale` is the factor the rule folds into the gradient while it is still a K-sized error
    (every rule's gradient is linear in e): SGD (`folds_lr`) asks for lr there and so skips a
    pass over P.
    """

    name = ""
    folds_lr = False

    @property
    def grad_scale(self) -> float:
        return self.lr if self.folds_lr else 1.0

    def __init__(self, size: int, lr: float):
        self.lr = float(lr)

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """Change the learning rate from the next step on (a drift reaction raises it for a while)."""
        self.lr = float(lr)

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Put back `state()`, each array checked (a CheckpointError otherwise); plain SGD has none."""


class SGD(Optimizer):
    name = "sgd"
    folds_lr = True

    def step(self, params, grad):
        params -= grad  # grad already holds lr * g


class Momentum(Optimizer):
    """Heavy-ball SGD: v = mu v + g; p -= lr v (PyTorch's SGD with momentum, no dampening)."""

    name = "momentum"

    def __init__(self, size, lr, mu: float = 0.9):
        super().__init__(size, lr)
        self.mu = mu
        self.v = np.zeros(size, dtype=np.float32)

    def step(self, params, grad):
        self.v *= self.mu
        self.v += grad
        np.multiply(self.v, self.lr, out=grad)
        params -= grad

    def state(self):
        return {"v": self.v}

    def load_state(self, state):
        checkpoint.restore(self.v, state, "v")


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; `t` counts steps taken."""

    name = "adam"

    def __init__(self, size, lr, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(size, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size, dtype=np.float32)
        self.v = np.zeros(size, dtype=np.float32)
        self.t = 0

    def step(self, params, grad):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        ema(self.m, grad, b1)  # m = b1 m + (1 - b1) g
        grad *= grad
        ema(self.v, grad, b2)  # v = b2 v + (1 - b2) g^2
        # a Python float: a numpy float64 scalar would make the float32 ops below cast through buffers
        step = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)  # the paper's efficient form
        np.sqrt(self.v, out=grad)
        grad += self.eps
        np.divide(self.m, grad, out=grad)
        grad *= step
        params -= grad

    def state(self):
        return {"m": self.m, "v": self.v, "t": np.array(self.t, dtype=np.int64)}

    def load_state(self, state):
        t = np.zeros((), np.int64)
        checkpoint.restore(t, state, "t")
        if t < 0:
            raise checkpoint.CheckpointError(f"has Adam step count 't' = {int(t)}")
        checkpoint.restore(self.m, state, "m")
        checkpoint.restore(self.v, state, "v")
        self.t = int(t)


def ema(avg: np.ndarray, x: np.ndarray, beta: float) -> None:
    """avg = beta avg + (1 - beta) x, in place and without a temporary."""
    avg -= x
    avg *= beta
    avg += x


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Momentum, Adam)}
