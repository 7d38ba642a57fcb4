"""Weight-perturbed forward gradient (Baydin et al. 2022): one direction v ~ N(0, sigma^2 I) over
every parameter, the forward-mode directional derivative s = dL . v, and the estimate s v / sigma^2."""

from __future__ import annotations

import numpy as np

from .base import Rule


class FGW(Rule):
    name = "fg-w"
    draws = True
    local = False  # one estimate for all parameters at once, not per-layer deltas

    def __init__(self, net, loss, rng, config):
        super().__init__(net, loss, rng, config)
        self.v = net.layout.zeros()  # direction, same layout as the parameters
        self.V, self.vb = net.layout.views(self.v)

    def gradient(self, bt, target, scale=1.0):
        net = self.net
        self.rng.standard_normal(out=self.v, dtype=np.float32)
        if self.config.sigma != 1.0:
            self.v *= self.config.sigma
        net.forward(bt)
        for l, (W, V, vb) in enumerate(zip(net.W, self.V, self.vb)):
            at = bt.at[l]  # tangent of a_l: t_l W^T + h_l V^T + vb (t_0 = 0)
            np.matmul(bt.hp[l], V.T, out=at)
            if l > 0:
                np.matmul(bt.ht[l], W.T, out=bt.delta[l])  # delta[l] is free scratch here
                at += bt.delta[l]
            at += vb
            if net.acts[l].linear:
                np.copyto(bt.ht[l + 1], at)
            else:
                np.multiply(bt.df[l], at, out=bt.ht[l + 1])
        loss = self.loss.error(bt.y, target, bt.e)
        s = scale * float(np.vdot(bt.e, bt.ht[-1])) / self.config.sigma ** 2
        np.multiply(self.v, s, out=net.grad)
        return loss
