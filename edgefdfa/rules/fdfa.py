"""Forward Direct Feedback Alignment (Bacho & Chu 2024, arXiv 2212.07282).

One forward pass carries a tangent beside every activity; each hidden layer's tangent gets a fresh
u_l ~ N(0, sigma^2 I) added after its activation, so the output tangent d = sum_l J_l u_l is the
directional derivative of y. Then J~_l = d u_l^T / sigma^2 is an unbiased estimate of J_l = dy/dh_l,
and the feedback matrix tracks it with momentum: B_l <- (1 - alpha) B_l + alpha J~_l, from B_l = 0.
The hidden error is e B_l (B_l before this step's update); weight gradients are local as in DFA,
and the output layer learns from its exact gradient. No backward pass, no stored graph.

Option `tangents` = k > 1 (beyond the paper; k = 1 is the paper's form): k independent perturbations
per sample, each its own tangent pass, and J~_l = (sum_j d_j u_jl^T) / (k sigma^2): the feedback update's
variance drops k-fold for k times the forward cost. The hidden error and the weight step are unchanged.
"""

from __future__ import annotations

import numpy as np

from .. import blas
from ..network import outer_sum
from .base import Rule, feedback_matrices


class FDFA(Rule):
    name = "fdfa"

    def __init__(self, net, loss, rng, config):
        super().__init__(net, loss, rng, config)
        hidden = list(net.sizes[1:-1])
        self.flat, self.B = feedback_matrices(net.sizes[-1], hidden)  # B_l (K, n_l), all 0
        self.BT = [B.T for B in self.B]  # (n_l, K) views for BLAS
        _, self.J = feedback_matrices(net.sizes[-1], hidden)  # scratch for alpha J~_l
        self.d = np.zeros((config.batch_size, net.sizes[-1]), dtype=np.float32)  # alpha d / (m sigma^2)
        self.tangents = config.tangents
        if self.tangents > 1:  # sum over the k draws of d_j^T u_jl, one flat array like B
            self.Jsum, self.JS = feedback_matrices(net.sizes[-1], hidden)

    draws = True

    def kernel(self):
        exact = self.tangents == 1 or not self.B  # the C step is the paper's form, k = 1
        return self.name if exact else None

    def deltas(self, bt, target, scale=1.0):
        self.draw_perturbations(bt)
        self.net.forward_tangent(bt)
        if self.tangents > 1:
            self._sum_tangents(bt)
        loss = self.output_error(bt, target, scale)
        for B, delta, df in zip(self.B, bt.delta, bt.df):
            np.dot(bt.e, B, out=delta)  # hidden error e B_l, (m, K) @ (K, n_l)
            delta *= df
        return loss

    def _sum_tangents(self, bt):
        """Jsum_l = sum over the k draws (the first already in bt) and rows of d^T u_l; each further draw
        re-runs the tangent pass (activities come out the same)."""
        for draw in range(self.tangents):
            if draw > 0:
                self.draw_perturbations(bt)
                self.net.forward_tangent(bt)
            for JS, J, u in zip(self.JS, self.J, bt.u):
                if draw == 0:
                    outer_sum(bt.ht[-1], u, out=JS)
                else:
                    outer_sum(bt.ht[-1], u, out=J)
                    JS += J

    def pending_sumsq(self, bt):
        """c^2 |D|^2 sum_l |U_l|^2 >= |c D^T U_l|^2 summed over layers: bounds the change commit() makes."""
        if not self.B:
            return 0.0
        c = self.config.alpha / (bt.m * self.config.sigma ** 2)
        if self.tangents > 1:  # the change itself: c / k times the summed outer products
            return (c / self.tangents) ** 2 * blas.sumsq(self.Jsum)
        u = sum(blas.sumsq(u.reshape(-1)) for u in bt.u)
        return c * c * blas.sumsq(bt.ht[-1].reshape(-1)) * u

    def commit(self, bt):
        """B <- (1 - alpha) B + alpha J~, J~ = (sum over rows of d u^T) / (m sigma^2)."""
        if not self.B:  # a one-layer head has no hidden layer to feed back to
            return
        alpha = self.config.alpha
        c = alpha / (bt.m * self.config.sigma ** 2)
        if self.tangents > 1:
            self.flat *= 1.0 - alpha
            self.flat += (c / self.tangents) * self.Jsum
            return
        d = bt.ht[-1]  # the output tangent, (m, K)
        if bt.m == 1 and blas.available:  # every B_l in one pass, then a fused rank-1 update per layer
            blas.scale(1.0 - alpha, self.flat)
            for BT, u in zip(self.BT, bt.u_row):
                blas.rank1_update(BT, c, d[0], u)
            return
        self.flat *= 1.0 - alpha
        np.multiply(d, c, out=self.d[:bt.m])
        for B, J, u in zip(self.B, self.J, bt.u):
            outer_sum(self.d[:bt.m], u, out=J)
            B += J

    def reset_feedback(self):
        self.flat.fill(0.0)  # B_l = 0 again: re-estimated from the new regime's Jacobians
        return True

    def state(self):
        return {"B": self.flat}
