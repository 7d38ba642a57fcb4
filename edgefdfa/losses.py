"""Losses: the mean loss of a batch and its error e = dL/dy, written in place.

The network's output y is the last layer's activation (identity for both losses here: logits
for cross-entropy, the prediction itself for MSE).
"""

from __future__ import annotations

import math

import numpy as np


class Loss:
    """A loss over a batch of outputs y (m, K) against targets."""

    name = ""
    classification = False

    def error(self, y: np.ndarray, target: np.ndarray, e: np.ndarray) -> float:
        """Write e = dL/dy of the batch-mean loss into `e` (m, K) and return that mean loss."""
        raise NotImplementedError

    def output(self, y: np.ndarray, out: np.ndarray) -> None:
        """What the user reads from the network output: probabilities or the prediction."""
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Softmax over logits, then cross-entropy against an integer class label per row."""

    name, classification = "ce", True

    def output(self, y, out):
        if y.shape[0] == 1:  # scalar reductions: a third of the calls' cost at batch 1
            np.subtract(y, np.max(y), out=out)
            np.exp(out, out=out)
            out /= np.add.reduce(out, axis=None)
            return
        np.subtract(y, y.max(axis=-1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)

    def error(self, y, target, e):
        # the loss of a row is log(sum exp(y - max y)) - (y_t - max y): -log p_t without rounding p_t
        m, k = y.shape
        if m == 1 and k <= 64:
            return self._error_one(y, int(target[0]), e)
        top = y.max(axis=-1, keepdims=True)  # (m, 1)
        np.subtract(y, top, out=e)
        np.exp(e, out=e)
        total = e.sum(axis=-1, keepdims=True)  # (m, 1)
        e /= total  # e = p (m, K)
        loss = 0.0
        for i in range(m):
            t = int(target[i])
            loss += math.log(float(total[i, 0])) - (float(y[i, t]) - float(top[i, 0]))
            e[i, t] -= 1.0  # e = p - onehot
        e *= 1.0 / m
        return loss / m

    @staticmethod
    def _error_one(y: np.ndarray, t: int, e: np.ndarray) -> float:
        """`error` for one row of a few logits (y, e: (1, K)) in Python floats: for ten values a
        NumPy call costs more than the arithmetic, and this takes one to read y and one to write e."""
        logits = y.tolist()[0]
        top = max(logits)
        p = [math.exp(v - top) for v in logits]
        total = sum(p)
        p = [v / total for v in p]
        p[t] -= 1.0  # e = p - onehot
        e[0] = p
        return math.log(total) - (logits[t] - top)


class MeanSquaredError(Loss):
    """L = mean over outputs of (y - t)^2 per sample, averaged over the batch (PyTorch's MSELoss)."""

    name = "mse"

    def output(self, y, out):
        np.copyto(out, y)

    def error(self, y, target, e):
        m, k = y.shape
        np.subtract(y, target, out=e)
        loss = float(np.vdot(e, e)) / (m * k)
        e *= 2.0 / (m * k)
        return loss


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (SoftmaxCrossEntropy, MeanSquaredError)}
