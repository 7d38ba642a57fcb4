"""One device of the fleet between rounds: its EdgeModel, its place in its own stream and its
history, kept in a state directory. Flower starts a ClientApp process for every message, so each
round loads the device's last checkpoint, adopts the global head, learns the next samples of the
stream test-then-train (as `edgefdfa train` does) and saves the checkpoint again: the stream goes
on where it stopped, window and delayed labels included."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from flwr.app import ArrayRecord

from firmware_bridge import encoding as bridge_encoding
from firmware_bridge.host import sparse_budget
from firmware_bridge.protocol import Encoding

from ..errors import ConfigError
from ..head import image_of, layers_of
from ..model import EdgeModel, load, load_checkpoint
from ..online import OnlineRun, RunConfig
from ..stream import Sample, Window, open_source
from . import record

CHECKPOINT, HISTORY = "checkpoint.npz", "rounds.jsonl"


@dataclass(frozen=True)
class DeviceConfig:
    """A device's settings (a SuperNode's --node-config)."""

    model: str  # the .onnx or .tflite file the device runs
    data: str  # its SOURCE, as `edgefdfa train --data` takes it
    state: str  # directory for its checkpoint and round history
    samples: int = 200  # samples learned per round
    window: int | None = None  # windows of this many steps (time-series models) ...
    hop: int | None = None  # ... every hop steps (default: window)
    rule: str = "fdfa"
    lr: float | None = None  # None: the rule's default
    seed: int = 0

    @classmethod
    def from_node_config(cls, cfg: dict[str, Any]) -> "DeviceConfig":
        """From Flower's node config (keys as in --node-config; 0 means unset for window, hop, lr)."""
        missing = [k for k in ("model", "data", "state") if k not in cfg]
        if missing:
            raise ConfigError(f"the SuperNode's --node-config lacks {', '.join(missing)}")
        def get(key: str, kind: type, default: Any) -> Any:
            return kind(cfg[key]) if cfg.get(key) not in (None, "", 0) else default

        return cls(str(cfg["model"]), str(cfg["data"]), str(cfg["state"]), get("samples", int, 200),
                   get("window", int, None), get("hop", int, None), get("rule", str, "fdfa"),
                   get("lr", float, None), get("seed", int, 0))


class Device:
    """The device's side of one round; `round` is all a ClientApp calls."""

    def __init__(self, config: DeviceConfig):
        self.config = config
        self.state = Path(config.state)
        self.state.mkdir(parents=True, exist_ok=True)

    def round(self, arrays: ArrayRecord, server_round: int, feedback: bool) -> tuple[ArrayRecord, dict]:
        """Adopt the global head, learn the next `samples` from the stream, and return the head to
        send with its metrics: the samples learned (the aggregation weight), the round's prequential
        accuracy on the stream, the reply's bytes and what a sparse int8 delta would take."""
        model, run = self._restore()
        record.adopt(model.learner, arrays)
        base = image_of(model.head())
        start, began = model.learner.n_seen, time.monotonic()
        self._learn(run, start + self.config.samples)
        run.save(str(self.state / CHECKPOINT))
        reply = record.record_of(model.learner, feedback)
        summary = run.summary()
        metrics = {record.WEIGHT: model.learner.n_seen - start, "consumed": run.consumed,
                   "accuracy": float(summary.get("accuracy") or 0.0), "bytes": reply.count_bytes(),
                   **self._sparse(model, base), "seconds": time.monotonic() - began}
        with open(self.state / HISTORY, "a") as f:
            f.write(json.dumps({"round": server_round, **metrics, "scored": summary["samples"]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return reply, metrics

    def _restore(self) -> tuple[EdgeModel, OnlineRun]:
        """The device as its last round left it, or fresh from the model file."""
        c, ckpt = self.config, self.state / CHECKPOINT
        options = {"lr": c.lr} if c.lr is not None else {}
        model = load_checkpoint(ckpt) if ckpt.exists() else load(c.model, rule=c.rule, seed=c.seed, **options)
        window = None
        if c.window:
            if len(model.sample_shape) != 2:
                raise ConfigError(f"window={c.window}: {model.name} takes samples of shape {model.sample_shape}")
            window = Window(c.window, c.hop or c.window, model.sample_shape[1])
        run = OnlineRun(model, RunConfig(), window)
        if ckpt.exists():
            run.resume(str(ckpt))
        return model, run

    def _learn(self, run: OnlineRun, target: int) -> None:
        """Read the stream from where it stopped until the learner has seen `target` samples; a
        replayed file starts over at its end (as `train --epochs` does)."""
        c, learner = self.config, run.learner
        n_features = run.window.n_channels if run.window else int(np.prod([d or 1 for d in run.sample_shape]))
        replayable = Path(c.data).suffix.lower() in (".csv", ".npz")
        skip = run.consumed if replayable else 0
        while learner.n_seen < target:
            before = (run.consumed, skip)
            with open_source(c.data, n_features=n_features) as source:
                skip = run.run(_until(source, learner, target), skip)
            if not replayable or (run.consumed, skip) == before:
                break  # a live stream that ended, or a file with nothing to learn from

    @staticmethod
    def _sparse(model: EdgeModel, base: np.ndarray) -> dict:
        """What the round's change would cost as the bridge's sparse int8 delta at its default
        budget, and how much of the change (relative L2) it would leave out."""
        head = model.head()
        layers = layers_of(head)
        target = image_of(head)
        update = bridge_encoding.encode(target, layers, Encoding.SPARSE_INT8, base=base,
                                        budget=sparse_budget(None, layers))
        got = bridge_encoding.decode(update, layers, Encoding.SPARSE_INT8, base=base)
        change = float(np.linalg.norm(target - base))
        return {"bytes-sparse": len(update), "bytes-f32-image": 4 * target.size,
                "sparse-residual": float(np.linalg.norm(target - got)) / change if change > 0 else 0.0}


def _until(samples: Iterable[Sample], learner, target: int) -> Iterator[Sample]:
    """`samples` until the learner has seen `target` samples."""
    for s in samples:
        yield s
        if learner.n_seen >= target:
            return
