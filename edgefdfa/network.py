"""Dense layers over one flat parameter store, and the preallocated buffers a step runs in.

Indexing: layer l (0..L-1) maps h[l] (m, n_l) to a[l] = h[l] W_l^T + b_l and h[l+1] = f_l(a[l]).
h[0] is the input, h[L] the output y.
"""

from __future__ import annotations

import numpy as np

from . import blas
from .activations import ACTIVATIONS
from .params import Layout

F32 = np.float32


class Batch:
    """Views for one batch of m rows into a `Workspace`; made once per batch size, reused every step.

    Stacked buffers hold activities in rows [:m] and forward-mode tangents in rows [m:], so one
    matmul pushes both through a layer and W is read from memory once.
    """

    def __init__(self, ws: "Workspace", m: int):
        M = ws.max_batch
        rows = slice(M - m, M + m)  # m activity rows ending at M, then m tangent rows from M
        self.m = m
        self.h = [buf[rows] for buf in ws.h]  # (2m, n_l), l = 0..L
        self.a = [buf[rows] for buf in ws.a]  # (2m, n_{l+1}), l = 0..L-1
        self.hp = [v[:m] for v in self.h]  # activities
        self.ht = [v[m:] for v in self.h]  # tangents
        self.ap = [v[:m] for v in self.a]
        self.at = [v[m:] for v in self.a]
        self.df = [buf[:m] for buf in ws.df]  # f'(a[l]) (m, n_{l+1})
        self.delta = [buf[:m] for buf in ws.delta]  # dL/da[l] (m, n_{l+1})
        self.u = [buf[:m] for buf in ws.u]  # activity perturbations of hidden layers (m, n_{l+1})
        self.e = ws.e[:m]  # dL/dy of the batch-mean loss (m, K)
        self.x = self.hp[0]
        self.y = self.hp[-1]
        # 1-D views of row 0, made once for the single-sample fast path (BLAS wants vectors)
        self.h_row = [v[0] for v in self.hp]
        self.delta_row = [v[0] for v in self.delta]
        self.u_row = [v[0] for v in self.u]


class Workspace:
    """Every per-sample buffer a step needs, for up to `max_batch` rows, allocated once.

    An identity layer's output is its pre-activation: h[l+1] is the same buffer as a[l], so no pass
    copies it (activities and tangents both). With an identity output layer, e = dL/dy is also the
    output layer's delta, and shares its buffer.
    """

    def __init__(self, net: "Network", max_batch: int):
        sizes = net.sizes
        M = self.max_batch = max_batch
        z = lambda rows, n: np.zeros((rows, n), dtype=F32)  # noqa: E731
        self.a = [z(2 * M, n) for n in sizes[1:]]
        self.h = [z(2 * M, sizes[0])]  # tangent rows of h[0] stay 0: the input is not perturbed
        self.h += [a if act.linear else z(2 * M, a.shape[1]) for a, act in zip(self.a, net.acts)]
        self.df = [z(M, n) for n in sizes[1:]]
        self.delta = [z(M, n) for n in sizes[1:]]
        self.u = [z(M, n) for n in sizes[1:-1]]
        self.e = self.delta[-1] if net.acts[-1].linear else z(M, sizes[-1])
        for df, act in zip(self.df, net.acts):
            if act.linear:
                df.fill(1.0)  # constant: the forward passes skip f' of linear layers

    def batch(self, m: int) -> Batch:
        assert 1 <= m <= self.max_batch
        return Batch(self, m)


class Network:
    """A stack of dense layers; W_l (n_out, n_in) and b_l are views into one flat float32 array."""

    def __init__(self, sizes: tuple[int, ...], activations: tuple[str, ...]):
        self.sizes = tuple(sizes)
        self.acts = [ACTIVATIONS[name] for name in activations]
        self.layout = Layout(self.sizes)
        self.params = self.layout.zeros()
        self.grad = self.layout.zeros()
        self.W, self.b = self.layout.views(self.params)
        self.gW, self.gb = self.layout.views(self.grad)
        self.WT = [W.T for W in self.W]  # (n_in, n_out) views, made once
        self.b_row = [b[None, :] for b in self.b]  # (1, n_out): adds to one row without broadcasting

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def init_weights(self, rng: np.random.Generator) -> None:
        """He-uniform for ReLU layers, Glorot-uniform otherwise; biases 0."""
        for W, act in zip(self.W, self.acts):
            n_out, n_in = W.shape
            bound = np.sqrt(6.0 / n_in) if act.name == "relu" else np.sqrt(6.0 / (n_in + n_out))
            W[...] = rng.uniform(-bound, bound, size=W.shape)
        for b in self.b:
            b.fill(0.0)

    def forward(self, bt: Batch, derivatives: bool = True) -> None:
        """Activities only: h[l+1] = f(h[l] W^T + b), and f'(a) when a rule needs it."""
        for l, (WT, b, act) in enumerate(zip(self.WT, self.b_row, self.acts)):
            a = bt.ap[l]
            np.dot(bt.hp[l], WT, out=a)  # np.dot: BLAS without matmul's per-call overhead
            a += b
            if not act.linear:  # a linear layer's h[l+1] is a[l], and its f' = 1 was filled in once
                act.forward(a, bt.hp[l + 1])
                if derivatives:
                    act.derivative(a, bt.hp[l + 1], bt.df[l])

    def forward_tangent(self, bt: Batch) -> None:
        """Activities and their tangents in one pass; hidden tangents get `bt.u[l]` added after f.

        The input tangent is 0, so layer 0 pushes activities only and its tangent is u[0].
        The output tangent bt.ht[L] is the directional derivative of y along all the u's.
        """
        last = self.n_layers - 1
        for l, (WT, b, act) in enumerate(zip(self.WT, self.b_row, self.acts)):
            a, t = bt.ap[l], bt.ht[l + 1]
            if l == 0:
                np.dot(bt.hp[0], WT, out=a)
            else:
                np.dot(bt.h[l], WT, out=bt.a[l])  # (2m, n_in) @ (n_in, n_out): both rows, one read of W
            a += b
            if not act.linear:  # else h[l+1] is a[l]: activity and tangent are already in place
                act.forward(a, bt.hp[l + 1])
                act.derivative(a, bt.hp[l + 1], bt.df[l])
            if l == 0:  # the tangent of a[0] is 0
                if last > 0:
                    np.copyto(t, bt.u[0])
                else:
                    t.fill(0.0)
                continue
            if not act.linear:
                np.multiply(bt.df[l], bt.at[l], out=t)
            if l < last:
                t += bt.u[l]

    def step_sumsq(self, bt: Batch) -> float:
        """|gradient|^2 of one row's local step, from its deltas: |delta_l|^2 (|h_l|^2 + 1) summed over
        layers (the weight gradient delta_l h_l^T is rank 1, the bias gradient delta_l)."""
        return sum(blas.sumsq(delta) * (blas.sumsq(h) + 1.0) for delta, h in zip(bt.delta_row, bt.h_row))

    def sgd_in_place(self, bt: Batch, lr: float) -> None:
        """W_l -= lr delta_l^T h_l and b_l -= lr delta_l for one row, fused (BLAS ger and axpy: W
        read and written once, no gradient array)."""
        for WT, b, delta, h in zip(self.WT, self.b, bt.delta_row, bt.h_row):
            blas.rank1_update(WT, -lr, delta, h)
            blas.axpy(-lr, delta, b)

    def local_gradients(self, bt: Batch) -> None:
        """gW_l = delta_l^T h_l and gb_l = sum of delta_l over rows (the batch mean sits in e)."""
        for l in range(self.n_layers):
            outer_sum(bt.delta[l], bt.hp[l], out=self.gW[l])
            np.sum(bt.delta[l], axis=0, out=self.gb[l])


def outer_sum(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a^T b for a (m, p), b (m, q): the sum over rows of outer products.

    np.dot hands every m, 1 included, to BLAS without a temporary; np.matmul does not for m = 1
    (10x slower) and broadcasting np.multiply allocates iterator buffers.
    """
    np.dot(a.T, b, out=out)
