"""Backpropagation: exact gradients, the reference every other rule is measured against."""

from __future__ import annotations

import numpy as np

from .base import Rule


class BP(Rule):
    name = "bp"

    def kernel(self):
        return self.name

    def deltas(self, bt, target, scale=1.0):
        net = self.net
        net.forward(bt)
        loss = self.output_error(bt, target, scale)
        for l in range(net.n_layers - 1, 0, -1):
            np.dot(bt.delta[l], net.W[l], out=bt.delta[l - 1])  # (m, n_out) @ (n_out, n_in)
            bt.delta[l - 1] *= bt.df[l - 1]
        return loss
