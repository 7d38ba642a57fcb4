"""Test accuracy of every rule on the shipped data, online and mini-batch, mean ± std over seeds.

Rules: BP, DFA, FG-W, FG-A, FDFA in the paper's form and FDFA with the engine's default options
(the same while no option has won on validation data: tools/fdfa_variants.py). Cases: digits
64-128-128-10, the MNIST subset at 784-800xL-10 (L = 1, 2, 3) and 784-256-256-10, and the IMU
windows through the shipped imu-activity.onnx backbone into a fresh 24-32-4 head.
- online: batch 1, plain SGD, each rule's default learning rate (learner.DEFAULTS, chosen on validation
  splits by tools/tune_defaults.py; the number of settings each rule was tried at is recorded);
- mini-batch: batches of 64, Adam at lr 1e-4 for every rule (the paper's reference setting; no tuning).
Writes bench/results/paper_table.json and paper_table.md.

    python tools/paper_table.py [--seeds 0,1,2] [--epochs 1] [--batch-epochs 5] [--cases digits,mnist-800x2]
    python tools/paper_table.py --smoke   # tiny, seconds: the test suite's run
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one core each, on a shared machine
import numpy as np  # noqa: E402

from edgefdfa import datasets  # noqa: E402
from edgefdfa.evaluate import accuracy, fit_online  # noqa: E402
from edgefdfa.learner import DEFAULTS, MLP  # noqa: E402
from edgefdfa.model import load as load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tools"))
from make_models import windows  # noqa: E402  (the IMU windows the shipped models were made on)

RULES = {"bp": dict(rule="bp"), "dfa": dict(rule="dfa"), "fg-w": dict(rule="fg-w"), "fg-a": dict(rule="fg-a"),
         "fdfa (paper)": dict(rule="fdfa", tangents=1), "fdfa (default)": dict(rule="fdfa")}
CASES = {"digits": ("digits", [128, 128]), "mnist-800x1": ("mnist5k", [800]), "mnist-800x2": ("mnist5k", [800, 800]),
         "mnist-800x3": ("mnist5k", [800, 800, 800]), "mnist-256x2": ("mnist5k", [256, 256]), "imu": ("imu", [32])}


def case_data(data: str, smoke: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(X_train, y_train, X_test, y_test, n_classes); IMU rows are the shipped backbone's features."""
    if data == "imu":
        ds = datasets.load("basicmotions")
        model = load_model(ROOT / "edgefdfa" / "models" / "imu-activity.onnx")
        (Xw, yw), (Xt, yt) = windows(ds.X_train, ds.y_train), windows(ds.X_test, ds.y_test)
        feats = lambda X: np.stack([model.features(x) for x in X])  # noqa: E731
        out = feats(Xw), yw, feats(Xt), yt, 4
    else:
        ds = datasets.load(data)
        out = ds.X_train, ds.y_train, ds.X_test, ds.y_test, int(ds.y_train.max()) + 1
    if smoke:
        out = out[0][:120], out[1][:120], out[2][:60], out[3][:60], out[4]
    return out


def fit_batches(learner, X, y, epochs: int, seed: int, batch: int = 64) -> None:
    """learn_many over seeded shuffles, `batch` rows per step."""
    order_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = order_rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            learner.learn_many(X[idx], y[idx])


def run(case: str, rule: str, mode: str, seed: int, args, data) -> dict:
    X, y, Xt, yt, K = data
    hidden = CASES[case][1] if not args.smoke else [16] * len(CASES[case][1])
    sizes = [X.shape[1], *hidden, K]
    options = dict(RULES[rule])
    start = time.perf_counter()
    if mode == "online":
        learner = MLP(sizes, loss="ce", seed=seed, batch_size=1, **options)
        fit_online(learner, X, y, epochs=args.epochs, seed=seed)
    else:
        learner = MLP(sizes, loss="ce", seed=seed, batch_size=64, optimizer="adam", lr=1e-4, **options)
        fit_batches(learner, X, y, args.batch_epochs, seed)
    return dict(case=case, rule=rule, mode=mode, seed=seed, sizes=sizes, optimizer=learner.config.optimizer,
                lr=learner.config.lr, test_accuracy=accuracy(learner, Xt, yt), seconds=time.perf_counter() - start)


def tuning_budget() -> dict:
    """Settings tried per rule when its online default was chosen (tools/tune_defaults.py's record)."""
    path = RESULTS / "tune_defaults.json"
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["runs"]
    return dict(collections.Counter(r["rule"] for r in runs if r["data"] == runs[0]["data"]))


def markdown(summary: list[dict], seeds: list[int]) -> str:
    rules = list(RULES)
    lines = [f"| case | mode | {' | '.join(rules)} |", "|---|---|" + "---|" * len(rules)]
    for case, mode in dict.fromkeys((s["case"], s["mode"]) for s in summary):
        cells = {s["rule"]: f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" for s in summary
                 if (s["case"], s["mode"]) == (case, mode)}
        lines.append(f"| {case} | {mode} | " + " | ".join(cells.get(r, "–") for r in rules) + " |")
    lines.append(f"\nTest accuracy %, mean ± std over seeds {seeds}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=1, help="online passes over the training rows")
    ap.add_argument("--batch-epochs", type=int, default=5, help="mini-batch passes")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--modes", default="online,batch")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    start = time.perf_counter()
    for case in args.cases.split(","):
        data = case_data(CASES[case][0], args.smoke)
        for mode in args.modes.split(","):
            for rule in args.rules.split(","):
                for seed in seeds:
                    rows.append(run(case, rule, mode, seed, args, data))
                    print(json.dumps(rows[-1]), flush=True)
    summary = []
    for key in dict.fromkeys((r["case"], r["mode"], r["rule"]) for r in rows):
        accs = [r["test_accuracy"] for r in rows if (r["case"], r["mode"], r["rule"]) == key]
        summary.append(dict(case=key[0], mode=key[1], rule=key[2], mean=statistics.mean(accs),
                            std=statistics.stdev(accs) if len(accs) > 1 else 0.0, n=len(accs)))
    budget = dict(online={r: dict(settings_tried=tuning_budget().get(RULES[r]["rule"]),
                                  chosen=DEFAULTS[RULES[r]["rule"]]) for r in RULES},
                  batch="adam lr 1e-4 for every rule, no tuning (1 setting each)")
    doc = dict(seeds=seeds, epochs=args.epochs, batch_epochs=args.batch_epochs, smoke=args.smoke,
               rules=RULES, tuning_budget=budget, summary=summary, runs=rows, seconds=time.perf_counter() - start,
               machine=dict(python=platform.python_version(), numpy=np.__version__, cpu=platform.machine()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_table.json").write_text(json.dumps(doc, indent=1))
    md = markdown(summary, seeds)
    (args.out / "paper_table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
