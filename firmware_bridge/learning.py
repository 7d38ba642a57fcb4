"""The device's learning in Python (PROTOCOL.md §8): the working copy of the active head, the
feedback matrices, the perturbation generator and the step count, and one step of
c/edgefdfa_learn.c (FDFA, DFA or BP; SGD at batch 1; softmax cross-entropy or MSE) computed as the C
computes it, so the Python device learns what the C device learns.

Every operation is float32 and every sum runs in index order, as the kernel's loops run (a row's dot
product is a float32 cumulative sum), so the two agree bit for bit except where NumPy's exp, log and
tanh round differently from the C library's (<= 1 ulp each). The engine's rules (edgefdfa/rules) are
the reference for learning itself; this is the reference for what a device computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgefdfa.head import Layer, tensors
from .protocol import Code, ProtocolError, StepStatus
from .rng import Rng

F32 = np.float32
RULES = ("fdfa", "dfa", "bp")  # edgefdfa_rule's order
LOSSES = ("ce", "mse")  # edgefdfa_loss's order


@dataclass(frozen=True)
class LearnConfig:
    """How a device learns: the kernel's edgefdfa_learn_config, its seed and when it saves by itself."""

    rule: str = "fdfa"
    loss: str = "ce"  # ce: a sample carries a class label; mse: K float targets (HELLO's TARGETS)
    lr: float = 0.05
    alpha: float = 0.003  # FDFA: the feedback's momentum
    sigma: float = 1.0  # FDFA: the perturbations' std
    max_sumsq: float = 1e30  # the divergence bound on |gradient|^2 and on the feedback change
    seed: int = 0  # the generator's (rng.py)
    save_every: int = 0  # save by itself every this many applied steps; 0: only on SAVE

    def __post_init__(self) -> None:
        if self.rule not in RULES or self.loss not in LOSSES:
            raise ValueError(f"rule {self.rule!r} (one of {RULES}), loss {self.loss!r} (one of {LOSSES})")
        if not (self.lr > 0 and 0 < self.alpha <= 1 and self.sigma > 0 and self.max_sumsq > 0):
            raise ValueError(f"lr {self.lr}, alpha {self.alpha}, sigma {self.sigma} and max_sumsq {self.max_sumsq} "
                             "must be positive (alpha at most 1)")
        if not 0 <= self.seed <= 0xFFFFFFFF or self.save_every < 0:
            raise ValueError(f"seed {self.seed} must be a u32 and save_every {self.save_every} >= 0")


@dataclass
class Saved:
    """What a record persists of learning: the step count, the generator's state, the feedback."""

    steps: int
    rng: tuple[int, ...]
    feedback: np.ndarray


@dataclass(frozen=True)
class Sample:
    """One LEARN sample: its input, and its label (ce) or targets (mse)."""

    x: np.ndarray
    label: int = 0
    target: np.ndarray | None = None


def _sum(v: np.ndarray) -> np.float32:
    """The float32 sum of v in index order (the kernel's scalar loop); it may overflow to inf, as in C."""
    with np.errstate(all="ignore"):
        return F32(0) + (np.cumsum(v, dtype=F32)[-1] if v.size else F32(0))


def _dots(W: np.ndarray, v: np.ndarray) -> np.ndarray:
    """W @ v, each row summed in index order in float32."""
    return np.cumsum(W * v, axis=1, dtype=F32)[:, -1]


def _libm(f, v):
    """f of float32 v, computed in float64 and rounded once: the correctly rounded float32 result, as
    glibc's expf, logf and tanhf give it (to within their < 1 ulp; newlib's may differ by an ulp)."""
    return f(np.asarray(v, np.float64)).astype(F32)


def _activate(code: int, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h = f(a) and f'(a), as the kernel's activate() computes them."""
    if code == 1:
        h = np.where(a > 0, a, F32(0)).astype(F32)
        return h, (h > 0).astype(F32)
    if code == 2:
        h = _libm(np.tanh, a)
        return h, F32(1) - h * h
    if code == 3:
        h = F32(0.5) * (F32(1) + _libm(np.tanh, F32(0.5) * a))
        return h, (F32(1) - h) * h
    return a.copy(), np.ones_like(a)


def argmax(v: np.ndarray) -> int:
    """The first index of the largest value, as edgefdfa_argmax finds it (a NaN never wins)."""
    best = 0
    for i in range(1, v.size):
        if v[i] > v[best]:
            best = i
    return best


class Learning:
    """A learning device's RAM: the working copy it learns on, and what learning carries across steps."""

    def __init__(self, layers: Sequence[Layer], config: LearnConfig, weights: np.ndarray) -> None:
        self.layers, self.config = tuple(layers), config
        self.n_classes = self.layers[-1].n_out
        self.hidden = [l.n_out for l in self.layers[:-1]]
        self.working = np.array(weights, F32)
        self.feedback = np.zeros(self.n_classes * sum(self.hidden), F32)  # B_l (K, n_l) back to back
        self.rng = Rng(config.seed)
        self.steps = 0
        self.lr, self.alpha, self.sigma = F32(config.lr), F32(config.alpha), F32(config.sigma)
        self.max_sumsq = F32(config.max_sumsq)

    @property
    def targets(self) -> bool:
        """Whether a sample carries K targets (mse) rather than a label."""
        return self.config.loss == "mse"

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample on the wire: n_in float32, then a u32 label or K float32 targets."""
        return 4 * self.layers[0].n_in + (4 * self.n_classes if self.targets else 4)

    def saved(self) -> Saved:
        """The state a record persists now."""
        return Saved(self.steps, tuple(self.rng.state), self.feedback.copy())

    def restore(self, saved: Saved, weights: np.ndarray) -> None:
        """Back to a persisted state on the weights `weights` (a reset, a boot)."""
        self.steps, self.rng.state = saved.steps, list(saved.rng)
        self.feedback[:] = saved.feedback
        self.working[:] = weights

    def samples(self, data: bytes, n: int) -> list[Sample]:
        """A LEARN's n samples, split (BAD_LENGTH); `check` them before learning any."""
        if n < 1 or len(data) != n * self.sample_bytes:
            raise ProtocolError(Code.BAD_LENGTH, f"{len(data)} bytes of samples for n = {n}; a sample is "
                                                 f"{self.sample_bytes} bytes")
        n_in, K, out = self.layers[0].n_in, self.n_classes, []
        for at in range(0, len(data), self.sample_bytes):
            x = np.frombuffer(data, "<f4", n_in, at).astype(F32)
            if self.targets:
                out.append(Sample(x, target=np.frombuffer(data, "<f4", K, at + 4 * n_in).astype(F32)))
            else:
                out.append(Sample(x, int.from_bytes(data[at + 4 * n_in:at + 4 * n_in + 4], "little")))
        return out

    def check(self, samples: Sequence[Sample]) -> None:
        """BAD_INPUT (a non-finite input or target) or BAD_LABEL (not below K), naming the first bad sample."""
        for i, sample in enumerate(samples):
            if not (np.isfinite(sample.x).all() and (sample.target is None or np.isfinite(sample.target).all())):
                raise ProtocolError(Code.BAD_INPUT, f"sample {i} holds a non-finite input or target")
            if sample.label >= self.n_classes:
                raise ProtocolError(Code.BAD_LABEL, f"sample {i}'s label {sample.label} is not below {self.n_classes}")

    def step(self, sample: Sample) -> tuple[StepStatus, int, float]:
        """One kernel step on the working copy: (status, the class predicted before it, the loss before it)."""
        fdfa = self.config.rule == "fdfa" and len(self.layers) > 1
        u = self.rng.normals(sum(self.hidden)) * self.sigma if fdfa else None
        acts = self._forward(sample.x, u)
        y = acts[-1][1]
        predicted = argmax(y)
        loss, e = self._loss(y, sample)
        deltas = self._deltas(acts, e)
        inputs = [sample.x] + [h for _, h, _, _ in acts[:-1]]
        step = F32(0)
        for delta, h in zip(deltas, inputs):
            step = step + _sum(delta * delta) * (_sum(h * h) + F32(1))
        change = F32(0)
        if fdfa:
            c = self.alpha / (self.sigma * self.sigma)
            t = acts[-1][3]
            change = c * c * _sum(t * t) * _sum(u * u)
        if not np.isfinite(loss):
            return StepStatus.DIVERGED_LOSS, predicted, float(loss)
        if not step <= self.max_sumsq:
            return StepStatus.DIVERGED_STEP, predicted, float(loss)
        if not change <= self.max_sumsq:
            return StepStatus.DIVERGED_FEEDBACK, predicted, float(loss)
        self._sgd(deltas, inputs)
        if fdfa:
            self._update_feedback(acts[-1][3], u)
        self.steps += 1
        return StepStatus.LEARNED, predicted, float(loss)

    def _forward(self, x: np.ndarray, u: np.ndarray | None) -> list[tuple]:
        """(a, h, f'(a), tangent or None) per layer; with u, hidden layer l's tangent gets u_l added."""
        views, acts, h, t, at = tensors(self.working, self.layers), [], x, None, 0
        with np.errstate(all="ignore"):
            for l, layer in enumerate(self.layers):
                W, b = views[2 * l], views[2 * l + 1]
                a = _dots(W, h) + b
                h_next, df = _activate(layer.activation, a)
                t_next = None
                if u is not None:
                    perturbed = u[at:at + layer.n_out] if l + 1 < len(self.layers) else F32(0)
                    t_next = (df * _dots(W, t) if t is not None else F32(0)) + perturbed
                    at += layer.n_out if l + 1 < len(self.layers) else 0
                acts.append((a, h_next, df, t_next))
                h, t = h_next, t_next
        return acts

    def _loss(self, y: np.ndarray, sample: Sample) -> tuple[np.float32, np.ndarray]:
        """The loss and e = dL/dy."""
        K = F32(self.n_classes)
        with np.errstate(all="ignore"):
            if self.targets:
                e = y - sample.target
                total = _sum(e * e)
                return total / K, e * (F32(2) / K)
            top = y[0]
            for v in y[1:]:
                top = v if v > top else top
            p = _libm(np.exp, y - top)
            total = _sum(p)
            e = p / total
            e[sample.label] -= F32(1)
            return _libm(np.log, total)[()] - (y[sample.label] - top), e

    def _deltas(self, acts: list[tuple], e: np.ndarray) -> list[np.ndarray]:
        """dL/da per layer: the output's exact, the hidden ones' through the feedback (FDFA, DFA) or
        the weights (BP)."""
        deltas = [np.zeros(l.n_out, F32) for l in self.layers]
        with np.errstate(all="ignore"):
            deltas[-1] = e * acts[-1][2]
            if self.config.rule == "bp":
                views = tensors(self.working, self.layers)
                for l in range(len(self.layers) - 1, 0, -1):
                    W, below = views[2 * l], np.zeros(self.layers[l].n_in, F32)
                    for j in range(self.layers[l].n_out):
                        below += deltas[l][j] * W[j]
                    deltas[l - 1] = below * acts[l - 1][2]
                return deltas
            at = 0
            for l, n in enumerate(self.hidden):
                B = self.feedback[at:at + self.n_classes * n].reshape(self.n_classes, n)
                delta = np.zeros(n, F32)
                for k in range(self.n_classes):
                    delta += e[k] * B[k]
                deltas[l] = delta * acts[l][2]
                at += self.n_classes * n
        return deltas

    def _sgd(self, deltas: list[np.ndarray], inputs: list[np.ndarray]) -> None:
        """W_l -= lr delta_l h_l^T, b_l -= lr delta_l (as W += (-lr delta) h^T, the kernel's order)."""
        views = tensors(self.working, self.layers)
        for l, (delta, h) in enumerate(zip(deltas, inputs)):
            step = -self.lr * delta
            views[2 * l] += np.outer(step, h)
            views[2 * l + 1] += step

    def _update_feedback(self, d: np.ndarray, u: np.ndarray) -> None:
        """B_l <- (1 - alpha) B_l + (alpha / sigma^2) d u_l^T."""
        keep, c = F32(1) - self.alpha, self.alpha / (self.sigma * self.sigma)
        cd, at, start = c * d, 0, 0
        for n in self.hidden:
            B = self.feedback[at:at + self.n_classes * n].reshape(self.n_classes, n)
            B[:] = keep * B + np.outer(cd, u[start:start + n])
            at += self.n_classes * n
            start += n
