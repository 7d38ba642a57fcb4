"""The online loop: a stream of samples through a model, test-then-train (prequential).

For each sample (or window of samples): predict, score the prediction against the label, then
learn from the sample whose label is due (`delay` samples later). Around that: drift detection on
the loss with an optional reaction, steps the learner refuses as diverged (DivergedError: not
applied) reported as events, and periodic atomic checkpoints that hold everything needed to resume
exactly: the model, the stream position, the window and the samples still waiting for labels.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from . import checkpoint
from .atomic import remove_leftovers
from .drift import PageHinkley
from .errors import BadSampleError, ConfigError, DivergedError
from .learner import Learner
from .metrics import Prequential
from .range_guard import RangeGuard
from .model import EdgeModel
from .stream import DelayedLabels, RunningNorm, Sample, Window

REACTIONS = ("report", "boost-lr", "reset-feedback")


@dataclass
class RunConfig:
    learn: bool = True  # False: predict and score only (the frozen baseline)
    delay: int = 0  # labels are learned from this many samples after arrival
    rolling: int = 200  # rolling metrics over the last N scored samples
    checkpoint: str | None = None  # periodic atomic checkpoints go here, and a final one
    checkpoint_every: float = 30.0  # seconds between periodic checkpoints
    drift: str = "report"  # report | boost-lr | reset-feedback: what a detected drift does
    drift_clip: float = 3.0  # the detector sees min(loss, clip): one confident miss counts as one miss
    boost: float = 3.0  # boost-lr: multiply the learning rate by this ...
    boost_samples: int = 300  # ... for this many learned samples
    history_every: int = 5  # one point of the accuracy/loss history every N scored samples
    range_guard: str = "skip"  # skip | clip | off: a sample far outside the learned range (range_guard.py)
    range_margin: float = 3.0  # ... beyond this many spans of a feature's range
    range_warmup: int = 50  # ... judged after this many samples


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under `prefix`, named without it."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _events(events: list) -> list[dict]:
    """A checkpoint's event list, each event checked to be what `_event` writes."""
    for e in events:
        ok = (isinstance(e, dict) and isinstance(e.get("kind"), str) and isinstance(e.get("detail"), str)
              and all(isinstance(e.get(k), int) and not isinstance(e.get(k), bool) for k in ("sample", "scored")))
        if not ok:
            raise checkpoint.CheckpointError(f"has run event {e!r:.60}, not {{kind, sample, scored, detail}}")
    return events


def _finite(a: np.ndarray) -> bool:
    """One float64 sum is finite exactly when every float32 value is."""
    return math.isfinite(np.add.reduce(a, axis=None, dtype=np.float64))


class OnlineRun:
    """One model over one stream. `run(samples)` may be called again (another pass, a resumed run)."""

    def __init__(self, model: EdgeModel | Learner, config: RunConfig = RunConfig(), window: Window | None = None,
                 progress: Callable[[dict], None] | None = None, norm: RunningNorm | None = None,
                 writer: Callable[[str, dict, dict], None] = checkpoint.save):
        if config.drift not in REACTIONS:
            raise ConfigError(f"unknown drift reaction {config.drift!r}; choose one of {', '.join(REACTIONS)}")
        self.model, self.config, self.window, self.progress, self.norm = model, config, window, progress, norm
        self.writer = writer  # checkpoint.save, or a state directory's (the model file stored once)
        self._step = np.zeros(len(norm.mean), np.float32) if norm is not None else None  # the normalised step
        self.learner = model.learner if isinstance(model, EdgeModel) else model
        self.classification = self.learner.loss.classification
        self.n_classes = self.learner.n_outputs
        self.sample_shape = model.sample_shape if isinstance(model, EdgeModel) else (self.learner.n_inputs,)
        self.metrics = Prequential(self.classification, config.rolling)
        self.delayed = DelayedLabels(config.delay, self.learner.n_inputs)
        self.drift = PageHinkley()
        n_raw = window.n_channels if window is not None else int(np.prod([d or 1 for d in self.sample_shape]))
        self.range = RangeGuard(n_raw, config.range_guard, config.range_margin, config.range_warmup)
        self.consumed = 0  # source samples taken from the stream, across passes (the resume position)
        self.events: list[dict] = []  # drift points and refused (diverged) steps
        self.skipped_by: dict[str, int] = {}  # samples the loop refused, by reason (the source counts its own)
        self.history: list[tuple[int, float, float]] = []  # (scored samples, rolling score, rolling loss)
        self._boost_left = 0
        self._base_lr = self.learner.optimizer.lr
        self._stop = False
        self._last_checkpoint = time.monotonic()
        if config.checkpoint:  # a run killed while writing its checkpoint left a temporary file
            remove_leftovers(config.checkpoint)

    # the loop

    def run(self, samples: Iterable[Sample], skip: int = 0) -> int:
        """Consume `samples`, passing over the first `skip` (a resumed replay of a file); returns
        how many are still to pass over (when a pass was shorter than `skip`)."""
        for sample in samples:
            if self._stop:
                break
            if skip:
                skip -= 1
                continue
            self.consumed += 1
            self.step(sample)
            if self.config.checkpoint and time.monotonic() - self._last_checkpoint > self.config.checkpoint_every:
                self.save(self.config.checkpoint)
        return skip

    def stop(self) -> None:
        """End the run after the current sample (safe from a signal handler)."""
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop

    def step(self, sample: Sample) -> None:
        if sample.y is not None and not self._label_ok(sample.y):  # e.g. a class the model does not have
            self._skip("label outside the classes")
            return
        x = self.range.check(sample.x.reshape(-1))  # before the norm: a 1e20 would wreck its statistics too
        if x is None:
            self._skip("out of range")
            return
        if self.norm is not None:  # running per-channel standardisation, statistics first
            self.norm.update(x)
            x = self.norm.normalize(x, out=self._step)
        if self.window is not None:
            ready = self.window.push(x, sample.y)
            if ready is None:
                return
            x, y = ready
        else:
            x, y = x.reshape(self.sample_shape), sample.y
        if y is not None and self.config.learn and self.config.delay == 0:
            self._test_then_train(x, y)
            return
        try:
            out, features = self._observe(x)
        except BadSampleError:
            self._skip("bad input")
            return
        if not _finite(features):  # the backbone overflowed (e.g. a std of 1e20s): nothing to learn from
            self._skip("bad input")
            return
        if y is not None:
            self._score(out, y)
        if self.config.learn:
            due = self.delayed.push(features, y)
            if due is not None:
                self._learn(*due)

    def _test_then_train(self, x: np.ndarray, y: Any) -> None:
        """A labelled sample learned at once: one head pass, learn_one's, whose output before the update
        is the prediction scored (a drift reaction it sets off acts from the next sample on)."""
        try:
            features = x if not isinstance(self.model, EdgeModel) else self.model.features(x)
        except BadSampleError:
            self._skip("bad input")
            return
        if not _finite(features):  # the backbone overflowed (e.g. a std of 1e20s): nothing to learn from
            self._skip("bad input")
            return
        if self._learn(features, y):
            self._score(self.learner.last_output(probabilities=self.classification), y)
        else:  # refused: nothing learned, the prediction from a plain forward pass
            try:
                self._score(self._observe(x)[0], y)
            except BadSampleError:
                pass  # counted once, by _learn

    def _score(self, out: np.ndarray, y: Any) -> None:
        """Test: score the prediction made before any learning on this sample, feed the drift detector."""
        self.metrics.score(int(out.argmax()) if self.classification else out, y)
        loss = self._prediction_loss(out, y)
        self.metrics.loss(loss)
        if self.drift.update(min(loss, self.config.drift_clip)):
            self._react()
        if self.metrics.n % self.config.history_every == 0:
            self._record()

    def _observe(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities or prediction, head features) for one sample."""
        if not isinstance(self.model, EdgeModel):
            return self.learner.predict_proba_one(x), x
        out, features = self.model.observe(x)
        if self.classification and not self.model.split.softmax:  # the file outputs logits
            out = np.exp(out - out.max())
            out /= out.sum()
        return out, features

    def _prediction_loss(self, out: np.ndarray, y: Any) -> float:
        """The loss of the prediction before learning: cross-entropy, or MSE for regression."""
        if self.classification:
            return -math.log(max(float(out[int(y)]), 1e-12))
        return float(np.mean((out - np.asarray(y, dtype=np.float64)) ** 2))

    def _learn(self, features: np.ndarray, y: Any) -> bool:
        """learn_one, refusals counted and reported; whether the step was applied."""
        try:
            self.learner.learn_one(features, y)
        except BadSampleError:  # refused by the learner: nothing was applied
            self._skip("bad input")
            return False
        except DivergedError as exc:  # the step would have left non-finite weights: not applied
            self._skip("diverged")
            self._event("diverged", f"sample {self.consumed}: {exc}")
            return False
        if self._boost_left:
            self._boost_left -= 1
            if not self._boost_left:
                self.learner.optimizer.set_lr(self._base_lr)
        return True

    def _react(self) -> None:
        detail = "reported"
        if self.config.drift == "boost-lr":
            self.learner.optimizer.set_lr(self._base_lr * self.config.boost)
            self._boost_left = self.config.boost_samples
            detail = f"learning rate x{self.config.boost} for {self.config.boost_samples} samples"
        elif self.config.drift == "reset-feedback":
            detail = "feedback matrices reset" if self.learner.rule.reset_feedback() else "no feedback to reset"
        self._event("drift", detail)

    def _label_ok(self, y: Any) -> bool:
        if not self.classification:
            return True
        return isinstance(y, (int, np.integer)) and 0 <= y < self.n_classes

    def _skip(self, reason: str) -> None:
        self.metrics.skipped += 1
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1

    def _event(self, kind: str, detail: str) -> None:
        self.events.append({"kind": kind, "sample": self.consumed, "scored": self.metrics.n, "detail": detail})

    def _record(self) -> None:
        snap = self.metrics.snapshot()
        name = "rolling_accuracy" if self.classification else "rolling_mae"
        self.history.append((self.metrics.n, snap[name], snap["rolling_loss"] if snap["rolling_loss"] is not None else math.nan))
        if self.progress is not None:
            self.progress(snap)

    # checkpoints

    def save(self, path: str) -> None:
        """Model, learner, stream position, window and pending labels, atomically."""
        arrays, meta = self.model.state()
        run_meta: dict[str, Any] = {"consumed": self.consumed, "events": self.events, "base_lr": self._base_lr,
                                    "lr": self.learner.optimizer.lr, "boost_left": self._boost_left,
                                    "drift": self.drift.state()}
        delay_arrays, run_meta["delay"] = self.delayed.state()
        arrays.update({f"run.delay.{k}": v for k, v in delay_arrays.items()})
        if self.window is not None:
            window_arrays, run_meta["window"] = self.window.state()
            arrays.update({f"run.window.{k}": v for k, v in window_arrays.items()})
        range_arrays, run_meta["range"] = self.range.state()
        arrays.update({f"run.range.{k}": v for k, v in range_arrays.items()})
        if self.norm is not None:
            norm_arrays, run_meta["norm"] = self.norm.state()
            arrays.update({f"run.norm.{k}": v for k, v in norm_arrays.items()})
        meta["run"] = run_meta
        self.writer(path, arrays, meta)
        self._last_checkpoint = time.monotonic()

    def resume(self, path: str) -> None:
        """Put back the stream state `save` wrote (the model itself comes from load_checkpoint), every
        part checked first; a missing or mismatched part is a CheckpointError naming it and the file."""
        arrays, meta = checkpoint.load(path)
        with checkpoint.named(path):
            if "run" not in meta:
                raise checkpoint.CheckpointError("holds a model without a run to resume")
            run = checkpoint.field(meta, "run", dict)
            consumed = checkpoint.number(run, "consumed", lo=0, where="run ")
            events = _events(checkpoint.field(run, "events", list, "run "))
            base_lr, lr = (checkpoint.number(run, key, float, lo=1e-30, where="run ") for key in ("base_lr", "lr"))
            boost_left = checkpoint.number(run, "boost_left", lo=0, where="run ")
            self.drift.load_state(checkpoint.field(run, "drift", dict, "run "))
            self.range.load_state(_section(arrays, "run.range."), checkpoint.field(run, "range", dict, "run "))
            self.delayed.load_state(_section(arrays, "run.delay."), checkpoint.field(run, "delay", dict, "run "))
            if self.window is not None:  # a run with a window resumes only from one that had a window
                self.window.load_state(_section(arrays, "run.window."), checkpoint.field(run, "window", dict, "run "))
            if self.norm is not None:
                self.norm.load_state(_section(arrays, "run.norm."), checkpoint.field(run, "norm", dict, "run "))
        self.consumed, self.events, self._base_lr, self._boost_left = consumed, events, base_lr, boost_left
        self.learner.optimizer.set_lr(lr)  # boosted if the run stopped inside a boost

    def summary(self) -> dict:
        return {**self.metrics.snapshot(), "consumed": self.consumed, "learned": self.learner.n_seen,
                "events": self.events, "skipped_by": dict(self.skipped_by)}
