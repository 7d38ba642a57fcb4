"""Forward Direct Feedback Alignment (Bacho & Chu 2024, arXiv 2212.07282).

One forward pass carries a tangent beside every activity; each hidden layer's tangent gets a fresh
u_l ~ N(0, sigma^2 I) added after its activation, so the output tangent d = sum_l J_l u_l is the
directional derivative of y. Then J~_l = d u_l^T / sigma^2 is an unbiased estimate of J_l = dy/dh_l,
and the feedback matrix tracks it with momentum: B_l <- (1 - alpha) B_l + alpha J~_l, from B_l = 0.
The hidden error is e B_l (B_l before this step's update); weight gradients are local as in DFA,
and the output layer learns from its exact gradient. No backward pass, no stored graph.
"""

from __future__ import annotations

import numpy as np

from ..network import outer_sum
from .base import Rule, feedback_matrices


class FDFA(Rule):
    name = "fdfa"

    def __init__(self, net, loss, rng, config):
        super().__init__(net, loss, rng, config)
        hidden = list(net.sizes[1:-1])
        self.flat, self.B = feedback_matrices(net.sizes[-1], hidden)  # B_l (K, n_l), all 0
        _, self.J = feedback_matrices(net.sizes[-1], hidden)  # scratch for alpha J~_l
        self.d = np.zeros((config.batch_size, net.sizes[-1]), dtype=np.float32)  # alpha d / (m sigma^2)

    def deltas(self, bt, target, scale=1.0):
        self.draw_perturbations(bt)
        self.net.forward_tangent(bt)
        loss = self.output_error(bt, target, scale)
        alpha = self.config.alpha
        d = self.d[:bt.m]  # the output tangent, (m, K), scaled once so that J = alpha J~_l
        np.multiply(bt.ht[-1], alpha / (bt.m * self.config.sigma ** 2), out=d)
        for l, (B, J) in enumerate(zip(self.B, self.J)):
            np.matmul(bt.e, B, out=bt.delta[l])  # hidden error e B_l, (m, K) @ (K, n_l)
            bt.delta[l] *= bt.df[l]
            outer_sum(d, bt.u[l], out=J)  # alpha (sum over rows of d u^T) / (m sigma^2)
            B *= 1.0 - alpha  # B <- (1 - alpha) B + alpha J~
            B += J
        return loss

    def reset_feedback(self):
        self.flat.fill(0.0)  # B_l = 0 again: re-estimated from the new regime's Jacobians
        return True

    def state(self):
        return {"B": self.flat}
