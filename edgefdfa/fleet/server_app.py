"""The fleet's ServerApp: Flower's strategy (FedAvg or trimmed mean, guarded) over the devices'
heads. After every round the global head is evaluated on a held-out set (if given), saved as an
edgefdfa checkpoint (`edgefdfa export` / `edgefdfa push` take it) and exported in the model's
format; a restarted server resumes from that checkpoint and its round count.

Run config keys (`flwr run ... --run-config`): model, out, rounds, strategy, min-nodes, feedback,
held-out, timeout, beta. `edgefdfa fleet server` sets them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from ..atomic import atomic_write
from ..errors import ConfigError
from ..export import export
from ..model import EdgeModel, load, load_checkpoint
from . import record
from .strategy import STRATEGIES

GLOBAL, STATE, HISTORY = "global.npz", "state.json", "rounds.jsonl"
log = logging.getLogger("flwr")
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds still to run, from the saved global head if there is one."""
    cfg = dict(context.run_config)
    coordinator = Coordinator(Path(str(cfg["out"])), str(cfg["model"]), str(cfg.get("held-out") or ""),
                              bool(cfg.get("feedback", False)))
    remaining = int(cfg["rounds"]) - coordinator.done
    if remaining <= 0:
        log.info("all %d rounds are done already (%s)", coordinator.done, coordinator.out / STATE)
        return
    name = str(cfg.get("strategy", "fedavg"))
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    n = int(cfg.get("min-nodes", 2))
    extra = {"beta": float(cfg.get("beta", 0.2))} if name == "trimmed-mean" else {}
    initial = coordinator.global_record()
    strategy = STRATEGIES[name](fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                                min_available_nodes=n, expected=record.expected_shapes(initial), **extra)
    coordinator.strategy = strategy
    strategy.start(grid=grid, initial_arrays=initial, num_rounds=remaining, timeout=float(cfg.get("timeout", 600)),
                   train_config=ConfigRecord({"feedback": coordinator.feedback, "rounds-before": coordinator.done}), evaluate_fn=coordinator.after_round)


class Coordinator:
    """The server's state between rounds, in `out`: the global head, the round count, the history."""

    def __init__(self, out: Path, model_path: str, held_out: str, feedback: bool):
        self.out, self.feedback, self.strategy = out, feedback, None
        out.mkdir(parents=True, exist_ok=True)
        state = out / STATE
        self.done = json.loads(state.read_text())["round"] if state.exists() else 0
        self.resumed = self.done > 0
        self.model: EdgeModel = load_checkpoint(out / GLOBAL) if self.resumed else load(model_path)
        self.model_stem = Path(model_path).stem
        self.X, self.y = _held_out(held_out, self.model) if held_out else (None, None)

    def global_record(self) -> ArrayRecord:
        """The head the next round starts from, with FDFA's feedback when the fleet shares it."""
        return record.record_of(self.model.learner, self.feedback)

    def after_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower calls this before round 1 (0) and after each round: adopt, evaluate, save, log."""
        if server_round == 0 and self.resumed:
            log.info("resumed from %s after round %d", self.out / GLOBAL, self.done)
        record.adopt(self.model.learner, arrays)
        n = self.done + server_round
        line: dict[str, Any] = {"round": n}
        if self.X is not None:
            line["accuracy"] = accuracy(self.model, self.X, self.y)
        if server_round > 0:
            line.update(self.strategy.last)
            self._save(n)
        with open(self.out / HISTORY, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.info("round %d: %s", n, json.dumps(line))
        return MetricRecord({"accuracy": line["accuracy"]}) if "accuracy" in line else None

    def _save(self, n: int) -> None:
        """The global head as a checkpoint and a model file, then the round count (so a crash
        in between redoes a round at worst, never skips one)."""
        self.model.save(self.out / GLOBAL)
        export(self.model, self.out / f"{self.model_stem}-fleet{self.model.suffix}", self.model.suffix[1:])
        with atomic_write(self.out / STATE) as f:
            f.write(json.dumps({"round": n}).encode())


def _held_out(path: str, model: EdgeModel) -> tuple[np.ndarray, np.ndarray]:
    """A held-out .npz: X (n, *sample shape), y (n,) labels."""
    with np.load(path, allow_pickle=False) as z:
        X, y = z["X"].astype(np.float32), z["y"]
    shape = tuple(d or 1 for d in model.sample_shape)
    if X.shape[1:] != shape or y.shape != (len(X),):
        raise ConfigError(f"{path}: X {X.shape} and y {y.shape}; expected (n, {', '.join(map(str, shape))}) and (n,)")
    return X, y


def accuracy(model: EdgeModel, X: np.ndarray, y: np.ndarray) -> float:
    """The share of held-out samples the model's current head classifies right."""
    return float(np.mean([model.predict_one(x) == int(t) for x, t in zip(X, y)]))
