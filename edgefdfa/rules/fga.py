"""Activity-perturbed forward gradient (Ren et al. 2022), all hidden layers perturbed in one pass.

The tangent pass is FDFA's; s = e . d is the directional derivative of the loss, and s u_l / sigma^2
is an unbiased estimate of dL/dh_l (cross-layer terms vanish in expectation). The output layer
learns exactly. FDFA with alpha = 1 and one sample reduces to this rule.
"""

from __future__ import annotations

import numpy as np

from .base import Rule


class FGA(Rule):
    name = "fg-a"
    draws = True

    def __init__(self, net, loss, rng, config):
        super().__init__(net, loss, rng, config)
        self.ed = np.zeros((config.batch_size, net.sizes[-1]), dtype=np.float32)  # e * d per row
        self.s = np.zeros((config.batch_size, 1), dtype=np.float32)

    def deltas(self, bt, target, scale=1.0):
        self.draw_perturbations(bt)
        self.net.forward_tangent(bt)
        loss = self.output_error(bt, target, scale)
        ed, s = self.ed[:bt.m], self.s[:bt.m]
        np.multiply(bt.e, bt.ht[-1], out=ed)
        np.sum(ed, axis=1, keepdims=True, out=s)  # (m, 1) dL_i/dt: e already holds the 1/m
        s *= 1.0 / self.config.sigma ** 2
        for l, u in enumerate(bt.u):
            np.multiply(u, s, out=bt.delta[l])
            bt.delta[l] *= bt.df[l]
        return loss
