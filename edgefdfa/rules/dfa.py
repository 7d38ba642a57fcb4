"""Direct Feedback Alignment (Nøkland 2016): the output error reaches each hidden layer through a
fixed random matrix B_l (K, n_l); delta_l = (e B_l) * f'(a_l). The output layer learns exactly."""

from __future__ import annotations

import numpy as np

from .base import Rule, feedback_matrices


class DFA(Rule):
    name = "dfa"

    def __init__(self, net, loss, rng, config):
        super().__init__(net, loss, rng, config)
        self.flat, self.B = feedback_matrices(net.sizes[-1], list(net.sizes[1:-1]))
        for B in self.B:  # Kaiming-uniform over n_l: rows of B are on the scale of rows of dy/dh_l
            bound = np.sqrt(6.0 / B.shape[1])
            B[...] = rng.uniform(-bound, bound, size=B.shape)

    def kernel(self):
        return self.name

    def deltas(self, bt, target, scale=1.0):
        self.net.forward(bt)
        loss = self.output_error(bt, target, scale)
        for l, B in enumerate(self.B):
            np.dot(bt.e, B, out=bt.delta[l])  # (m, K) @ (K, n_l)
            bt.delta[l] *= bt.df[l]
        return loss

    def state(self):
        return {"B": self.flat}
