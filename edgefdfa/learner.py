"""The online learner: a dense network, a learning rule, a loss and an optimiser behind the
streaming API `learn_one` / `predict_one` / `predict_proba_one` / `learn_many`.

Every buffer a step uses is allocated in the constructor; a steady-state step allocates nothing
that outlives it. Inputs are checked before anything is touched, so a bad sample never reaches
the weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import blas, checkpoint, native
from .activations import ACTIVATIONS
from .errors import BadModelError, BadSampleError, CheckpointError, ConfigError, DivergedError
from .losses import LOSSES
from .network import Network, Workspace
from .optimizers import OPTIMIZERS
from .rules import RULES

# Per-rule defaults for online, sample-by-sample learning (batch 1). How they were chosen, on a
# validation split of the training data only: tools/tune_defaults.py and the README.
DEFAULTS: dict[str, dict[str, Any]] = {
    "bp": {"optimizer": "sgd", "lr": 0.02},
    "dfa": {"optimizer": "sgd", "lr": 0.02},
    "fdfa": {"optimizer": "sgd", "lr": 0.005},
    "fg-a": {"optimizer": "sgd", "lr": 0.0005},
    "fg-w": {"optimizer": "sgd", "lr": 3e-05},
}


# A step is refused (DivergedError) when its gradient's squared norm exceeds this: far beyond any
# sound step, and small enough that no weight, feedback or Adam moment can overflow float32.
MAX_STEP_SUMSQ = 1e30


@dataclass(frozen=True)
class LearnerConfig:
    """Everything that defines a learner; stored in its checkpoints."""

    sizes: tuple[int, ...]  # widths, input first: (64, 128, 128, 10)
    activations: tuple[str, ...]  # one per dense layer; the last is usually "identity"
    rule: str = "fdfa"  # bp | dfa | fg-w | fg-a | fdfa
    loss: str = "ce"  # ce: softmax cross-entropy over logits | mse: mean squared error
    optimizer: str | None = None  # sgd | momentum | adam; None: the rule's default
    lr: float | None = None  # learning rate; None: the rule's default
    alpha: float = 0.003  # FDFA: feedback momentum, B <- (1 - alpha) B + alpha J~ (tuned like DEFAULTS)
    sigma: float = 1.0  # std of the forward-gradient perturbations (fg-w, fg-a, fdfa)
    batch_size: int = 32  # most rows learn_many takes per update; sizes the buffers
    seed: int = 0  # weights, feedback matrices and perturbations all follow from it
    tangents: int = 1  # FDFA: perturbations per sample for the feedback estimate (1: the paper's form)

    def resolved(self) -> "LearnerConfig":
        """The same config with the rule's defaults filled in, checked."""
        _check_choice("rule", self.rule, RULES)
        _check_choice("loss", self.loss, LOSSES)
        for name in self.activations:
            _check_choice("activation", name, ACTIVATIONS)
        defaults = DEFAULTS[self.rule]
        cfg = dataclasses.replace(
            self,
            sizes=tuple(int(n) for n in self.sizes),
            activations=tuple(self.activations),
            optimizer=self.optimizer or defaults["optimizer"],
            lr=float(self.lr if self.lr is not None else defaults["lr"]),
        )
        _check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
        if len(cfg.sizes) < 2 or min(cfg.sizes) < 1:
            raise ConfigError(f"sizes must be at least two positive widths (input, output), got {self.sizes!r}")
        if len(cfg.activations) != len(cfg.sizes) - 1:
            raise ConfigError(f"need one activation per layer ({len(cfg.sizes) - 1}), got {self.activations!r}")
        if not cfg.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if not 0 < cfg.alpha <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if not cfg.sigma > 0:
            raise ConfigError(f"sigma must be > 0, got {self.sigma!r}")
        if not (isinstance(cfg.tangents, int) and cfg.tangents >= 1):
            raise ConfigError(f"tangents must be an integer >= 1, got {self.tangents!r}")
        if cfg.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size!r}")
        return cfg


MAX_CHECKPOINT_BATCH = 4096  # the most rows a checkpoint's learner may size its buffers for


def _check_sizes(arrays: dict[str, np.ndarray], config: dict[str, Any]) -> None:
    """A checkpoint's layer widths: ints, matching its parameter array, and a bounded batch size."""
    missing = {f.name for f in dataclasses.fields(LearnerConfig)} - set(config)
    if missing:
        raise CheckpointError(f"has no config {', '.join(map(repr, sorted(missing)))}")
    sizes = checkpoint.field(config, "sizes", list, "config ")
    if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise CheckpointError(f"has config 'sizes' = {sizes!r:.60}, not two or more positive ints")
    expected = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes, sizes[1:]))
    params = arrays.get("params")
    if params is None or params.shape != (expected,):
        got = "none" if params is None else f"shape {params.shape}"
        raise CheckpointError(f"has 'params' of {got}; its layer sizes {sizes} need ({expected},)")
    checkpoint.number(config, "batch_size", lo=1, hi=MAX_CHECKPOINT_BATCH, where="config ")


def _check_choice(what: str, value: Any, choices: dict) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")


class Learner:
    """Learns a dense network online, one sample (or one mini-batch) at a time."""

    def __init__(self, config: LearnerConfig):
        self.config = cfg = config.resolved()
        self.rng = np.random.default_rng(cfg.seed)
        self.net = Network(cfg.sizes, cfg.activations)
        self.net.init_weights(self.rng)
        self.loss = LOSSES[cfg.loss]()
        self.rule = RULES[cfg.rule](self.net, self.loss, self.rng, cfg)
        self.optimizer = OPTIMIZERS[cfg.optimizer](self.net.layout.size, cfg.lr)
        self.workspace = Workspace(self.net, cfg.batch_size)
        self._one = self.workspace.batch(1)
        self._x = self._one.h_row[0]  # (n_in,) the one-sample input row
        self._full = self.workspace.batch(cfg.batch_size)
        K = cfg.sizes[-1]
        self._targets = (np.zeros(cfg.batch_size, dtype=np.intp) if self.loss.classification
                         else np.zeros((cfg.batch_size, K), dtype=np.float32))
        self._target = self._targets[:1]
        self._out = np.zeros(K, dtype=np.float32)
        # fused in-place SGD for single samples, when BLAS ger is at hand (see blas.py)
        self.fused = blas.available and self.rule.local and cfg.optimizer == "sgd"
        self._last = np.zeros(K, dtype=np.float32)  # the last learn_one's output before its update
        self._u: np.ndarray | None = None  # FDFA's draws for the compiled step, every hidden layer's back to back
        # predictions, and learn_one where the C step computes this rule, in C on the weights in place (native.py)
        self._compiled = None
        if native.compiles(list(cfg.activations)):
            self._compiled, self._raw, self._proba = native.head(cfg.sizes, list(cfg.activations), self.net.params,
                                                                 self._x)
        self._learns = (self._compiled is not None and cfg.optimizer == "sgd" and self.rule.kernel() in native.RULES
                        and cfg.loss in native.LOSSES)
        self._classes = K if self.loss.classification else 0  # labels a compiled step takes as they are
        if self._learns:
            self._bind_step()
        self.ranges: np.ndarray | None = None  # (L, 4) [min a, max a, min h, max h] per layer, when tracked
        self.n_seen = 0  # samples learned from
        self.n_updates = 0  # optimiser steps taken

    @property
    def compiled(self) -> bool:
        """Whether predictions run in C (the extension is built and EDGEFDFA_NATIVE is not 0)."""
        return self._compiled is not None

    @property
    def learns_compiled(self) -> bool:
        """Whether learn_one runs the C step (compiled, SGD, and a rule and loss edgefdfa_learn.c has)."""
        return self._learns

    @property
    def n_inputs(self) -> int:
        return self.config.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.config.sizes[-1]

    # the streaming API

    def learn_one(self, x: Any, y: Any) -> float:
        """Learn from one sample; returns its loss before the update (`last_output` is the output
        the step computed before it). A step that would leave a non-finite value raises DivergedError
        and changes nothing. In C where `learns_compiled`, with the same draws and the same result."""
        if self._learns:
            return self._learn_compiled(x, y)
        self._put_features(x if isinstance(x, np.ndarray) else np.asarray(x), self._x, "x")
        self._put_target(y, 0)
        loss = self._update(self._one, self._target)
        np.copyto(self._last, self._one.y[0])
        return loss

    def last_output(self, probabilities: bool = False) -> np.ndarray:
        """The last learn_one's output for its sample before its update, as a new (K,) array: what
        output_one(x, probabilities) gave just before, so a test-then-train step runs the head once."""
        if probabilities and self.loss.classification:
            out = np.empty_like(self._last)
            self.loss.output(self._last[None, :], out[None, :])
            return out
        return self._last.copy()

    def learn_many(self, X: Any, Y: Any) -> float:
        """Learn from a mini-batch, one update per `batch_size` rows; returns the mean loss.

        The whole batch is checked first: one bad row and nothing is learned.
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise BadSampleError(f"X must be 2-D (rows, {self.n_inputs}), got shape {X.shape}")
        Y = np.asarray(Y)
        if len(Y) != len(X):
            raise BadSampleError(f"X has {len(X)} rows but Y has {len(Y)}")
        for i in range(len(X)):  # validate every row before the first update
            self._put_features(X[i], self._x, f"X[{i}]")
            self._put_target(Y[i], 0, f"Y[{i}]")
        total, M = 0.0, self.config.batch_size
        for start in range(0, len(X), M):
            m = min(M, len(X) - start)
            bt = self._full if m == M else self.workspace.batch(m)
            np.copyto(bt.x, X[start:start + m], casting="unsafe")
            for i in range(m):
                self._put_target(Y[start + i], i)
            try:
                total += self._update(bt, self._targets[:m]) * m
            except DivergedError as exc:
                raise DivergedError(f"rows {start}..{start + m - 1}: {exc}" + (
                    f" (rows before {start} were learned)" if start else "")) from None
        return total / max(len(X), 1)

    def output_one(self, x: Any, probabilities: bool = False) -> np.ndarray:
        """The network's output for one sample as a new (K,) array: raw (logits for ce), or with
        probabilities=True what predict_proba_one gives. Compiled where it can be (native.py)."""
        compiled = self._compiled
        if compiled is not None:
            if compiled.load(x):  # not a finite C-ordered float32 row as it is: checked, named or cast here
                self._put_features(np.asarray(x), self._x, "x")
            if self.loss.classification and probabilities:
                compiled.probabilities()
                return self._proba.copy()
            compiled.raw()
            return self._raw.copy()
        bt = self._one
        self._put_features(x if isinstance(x, np.ndarray) else np.asarray(x), self._x, "x")
        self.net.forward(bt, derivatives=False)
        if probabilities:
            self.loss.output(bt.y, self._out[None, :])
            return self._out.copy()
        return bt.y[0].copy()

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """Class probabilities (ce) or the prediction itself (mse), as a new (K,) array."""
        return self.output_one(x, probabilities=True)

    def predict_one(self, x: Any) -> int | np.ndarray:
        """The predicted class index (ce) or the (K,) prediction (mse)."""
        out = self.output_one(x)
        return int(np.argmax(out)) if self.loss.classification else out

    def track_ranges(self) -> None:
        """From now on, keep the range of every layer's pre- and post-activation values over the
        samples learned from (`ranges`; their forward pass is computed anyway): what a quantized
        export calibrates its activations from. Fixed memory."""
        if self.ranges is None:
            L = self.net.n_layers
            self.ranges = np.array([[np.inf, -np.inf, np.inf, -np.inf]] * L, np.float32)
            if self._learns:
                self._compiled.track(self.ranges)  # widened by the C step, in place

    def _bind_step(self) -> None:
        """Bind the compiled step to the rule's feedback, the draws' buffer, the target row and _last."""
        cfg, hidden = self.config, sum(self.config.sizes[1:-1])
        rule = self.rule.kernel()
        if rule == "fdfa" and hidden:
            self._u = np.zeros(hidden, dtype=np.float32)
        feedback = self.rule.state()["B"] if rule != "bp" and hidden else None
        target = None if self.loss.classification else self._targets[0]
        self._compiled.learning(native.code(native.RULES, rule), native.code(native.LOSSES, cfg.loss), cfg.alpha,
                                cfg.sigma, MAX_STEP_SUMSQ, feedback, self._u, target, self._last)

    def _learn_compiled(self, x: Any, y: Any) -> float:
        """learn_one in C: the sample and target checked as the NumPy path checks them, u drawn as it
        draws them (one call fills every layer's in order), then edgefdfa_learn_step."""
        head = self._compiled
        if head.load(x):  # not a finite C-ordered float32 row as it is: checked, named or cast here
            self._put_features(x if isinstance(x, np.ndarray) else np.asarray(x), self._x, "x")
        if type(y) is int and self._classes > y >= 0:  # the common label: no further checks needed
            label = y
        else:
            self._put_target(y, 0)
            label = int(self._targets[0]) if self.loss.classification else 0
        u, rng_state = self._u, None
        if u is not None:
            rng = self.rng
            rng_state = rng.bit_generator.state
            rng.standard_normal(out=u, dtype=np.float32)
            if self.config.sigma != 1.0:
                u *= self.config.sigma
        status = head.learn(label, self.optimizer.lr)
        if status:
            if rng_state is not None:
                self.rng.bit_generator.state = rng_state
            check = native.DIVERGED.get(status)
            if check is None:
                raise RuntimeError(f"edgefdfa_learn_step: status {status} on arguments the learner checked")
            raise self._diverged(f"loss {head.loss}" if check == "loss" else
                                 f"gradient norm {math.sqrt(head.step_sumsq):.3g}" if check == "step" else
                                 f"feedback change {math.sqrt(head.feedback_sumsq):.3g}", 1)
        self.n_seen += 1
        self.n_updates += 1
        return head.loss

    def _track(self, bt) -> None:
        """Widen `ranges` to this step's activities (before the update: what the head computed)."""
        for l, r in enumerate(self.ranges):
            a, h = bt.ap[l], bt.hp[l + 1]
            r[0], r[1] = min(r[0], a.min()), max(r[1], a.max())
            r[2], r[3] = min(r[2], h.min()), max(r[3], h.max())

    # sharing (a fleet averages heads: edgefdfa.fleet)

    def get_params(self) -> np.ndarray:
        """A copy of every weight and bias in the flat layout of params.py (W0, b0, W1, b1, ...)."""
        return self.net.params.copy()

    def set_params(self, params: Any) -> None:
        """Adopt weights and biases from elsewhere (a fleet's aggregate), in place, so compiled views
        stay valid; rule and optimiser state, ranges and counters stay. A wrong shape or a non-finite
        value raises BadModelError and changes nothing."""
        p = np.asarray(params)
        if p.shape != self.net.params.shape or p.dtype.kind not in "biuf":
            raise BadModelError(f"params have shape {p.shape} and dtype {p.dtype}; this head takes "
                                f"({self.net.params.size},) numbers")
        if not np.isfinite(p).all():
            raise BadModelError(f"params[{int(np.flatnonzero(~np.isfinite(p))[0])}] is not finite; nothing adopted")
        np.copyto(self.net.params, p, casting="unsafe")

    # checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Save the whole state (weights, rule and optimiser state, RNG, counters) atomically."""
        checkpoint.save(path, *self.state())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Learner":
        """A learner that continues exactly where the saved one stopped."""
        return cls.from_state(*checkpoint.load(path), source=os.fspath(path))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able metadata) holding everything needed to continue exactly."""
        arrays = {"params": self.net.params}
        if self.ranges is not None:  # infinite until the first step; a checkpoint holds finite arrays only
            arrays["ranges"] = self.ranges if np.isfinite(self.ranges).all() else np.zeros_like(self.ranges)
        arrays.update({f"rule.{k}": v for k, v in self.rule.state().items()})
        arrays.update({f"optimizer.{k}": v for k, v in self.optimizer.state().items()})
        meta = {
            "config": dataclasses.asdict(self.config),
            "rng": self.rng.bit_generator.state,
            "n_seen": self.n_seen,
            "n_updates": self.n_updates,
        }
        if self.ranges is not None:
            meta["ranges_seen"] = bool(np.isfinite(self.ranges).all())
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str = "checkpoint") -> "Learner":
        """Rebuild a learner from `state()`'s output; a mismatch is a CheckpointError naming `source`.
        The sizes the metadata claims are checked against the parameter array before anything is
        allocated from them."""
        with checkpoint.named(source):
            _check_sizes(arrays, checkpoint.field(meta, "config", dict))
            try:
                config = LearnerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
                learner = cls(config)
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"has a config that makes no learner: {exc}") from None
            learner.load_state(arrays, meta)
        return learner

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Put back what `state()` returned; a missing or mismatched part is a CheckpointError naming it."""
        def section(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = checkpoint.field(meta, "rng", dict)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"has an unusable 'rng' state ({type(exc).__name__}: {exc})") from None
        n_seen, n_updates = checkpoint.number(meta, "n_seen", lo=0), checkpoint.number(meta, "n_updates", lo=0)
        checkpoint.restore(self.net.params, arrays, "params")
        if "ranges" in arrays:
            self.track_ranges()
            if checkpoint.field(meta, "ranges_seen", bool):
                checkpoint.restore(self.ranges, arrays, "ranges")
        self.rule.load_state(section("rule."))
        self.optimizer.load_state(section("optimizer."))
        self.rng.bit_generator.state = rng.bit_generator.state
        self.n_seen, self.n_updates = n_seen, n_updates

    # internals

    def _update(self, bt, targets: np.ndarray) -> float:
        """One step: the rule's deltas (or gradient), checked, then applied. A step that is not sound
        (see _refuse) changes nothing: weights, feedback, optimiser state, counters, random stream."""
        rng_state = self.rng.bit_generator.state if self.rule.draws else None
        if self.fused and bt.m == 1:  # the fast path: SGD applied in place from the deltas
            loss = self.rule.deltas(bt, targets)
            self._refuse(loss, self.net.step_sumsq(bt), bt, rng_state)
            self.net.sgd_in_place(bt, self.optimizer.lr)
        else:  # the reference: materialise the gradient, then let the optimiser step
            scale = self.optimizer.grad_scale
            loss = self.rule.gradient(bt, targets, scale)
            self._refuse(loss, blas.sumsq(self.net.grad) / (scale * scale), bt, rng_state)
            self.optimizer.step(self.net.params, self.net.grad)
        self.rule.commit(bt)
        if self.ranges is not None:
            self._track(bt)
        self.n_seen += bt.m
        self.n_updates += 1
        return loss

    def _refuse(self, loss: float, grad_sumsq: float, bt, rng_state: dict | None) -> None:
        """Raise DivergedError, with the random stream put back, unless the loss is finite and the
        squared norms of the gradient and of the rule's pending change are at most MAX_STEP_SUMSQ:
        then every weight, feedback and optimiser value stays finite after the step (Adam's g^2
        included), and nothing has been written yet."""
        pending = self.rule.pending_sumsq(bt)
        if math.isfinite(loss) and grad_sumsq <= MAX_STEP_SUMSQ and pending <= MAX_STEP_SUMSQ:
            return  # NaN compares False: refused below
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        raise self._diverged(f"loss {loss}" if not math.isfinite(loss) else
                             f"gradient norm {math.sqrt(grad_sumsq):.3g}" if not grad_sumsq <= MAX_STEP_SUMSQ else
                             f"feedback change {math.sqrt(pending):.3g}", bt.m)

    def _diverged(self, what: str, m: int) -> DivergedError:
        """The refusal of the next step, naming what was over the bound."""
        return DivergedError(f"step {self.n_updates + 1} diverged ({what}, over {m} sample(s)) at lr "
                             f"{self.optimizer.lr:g}; it was not applied: lower the learning rate")

    def _put_features(self, x: np.ndarray, dst: np.ndarray, name: str) -> None:
        """Copy one feature vector into `dst` (n_in,) as float32, or raise BadSampleError naming the fault."""
        if x.dtype.kind not in "biuf":
            raise BadSampleError(f"{name} has dtype {x.dtype}, which cannot be cast to float32; pass numbers")
        if x.shape != dst.shape:
            if x.shape != (1,) + dst.shape:
                raise BadSampleError(f"{name} has shape {x.shape}, expected ({self.n_inputs},)")
            x = x[0]
        if x.dtype.char == "f":  # float32 (either byte order): nothing can overflow
            np.copyto(dst, x)
        else:
            with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
                np.copyto(dst, x, casting="unsafe")
        # x . x is finite when every value is (inf and nan propagate); when large finite values
        # overflow it, the exact check tells them apart
        if not math.isfinite(blas.sumsq(dst)) and not np.isfinite(dst).all():
            bad = int(np.flatnonzero(~np.isfinite(dst))[0])
            raise BadSampleError(f"{name}[{bad}] = {x.ravel()[bad]!r} is not a finite float32")

    def _put_target(self, y: Any, row: int, name: str = "y") -> None:
        """Check a label (ce) or target vector (mse) and store it as row `row` of the targets."""
        K = self.n_outputs
        if self.loss.classification:
            try:
                label = int(y)
                ok = label == y and not isinstance(y, (bool, np.bool_))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise BadSampleError(f"{name} = {y!r} is not a class index; expected an integer in [0, {K})")
            if not 0 <= label < K:
                raise BadSampleError(f"{name} = {label} is outside the classes [0, {K})")
            self._targets[row] = label
            return
        t = np.asarray(y)
        if t.dtype.kind not in "biuf" or t.size != K or t.ndim > 1:
            raise BadSampleError(f"{name} must be {K} number(s), got {y!r}")
        if not np.isfinite(t).all():
            raise BadSampleError(f"{name} = {y!r} is not finite")
        self._targets[row] = t.reshape(K)


def MLP(sizes: Sequence[int], *, activation: str = "relu", rule: str = "fdfa", loss: str = "ce",
        optimizer: str | None = None, lr: float | None = None, alpha: float = 0.003, sigma: float = 1.0,
        batch_size: int = 32, seed: int = 0, tangents: int = 1) -> Learner:
    """A learner for a plain multilayer perceptron: `activation` on hidden layers, identity output.

    >>> learner = MLP([64, 128, 128, 10], rule="fdfa", loss="ce", seed=0)
    """
    sizes = tuple(sizes)
    acts = (activation,) * (len(sizes) - 2) + ("identity",)
    return Learner(LearnerConfig(sizes, acts, rule, loss, optimizer, lr, alpha, sigma, batch_size, seed, tangents))
