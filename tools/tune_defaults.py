"""Search the per-rule defaults (optimiser, learning rate, FDFA's alpha) for online, batch-1 learning.

Scored on a validation split of the *training* data only (the last 20% of each training set); the
test split is never read. The score is the mean validation accuracy over the two shipped image sets
with the networks of the acceptance checks (digits 64-128-128-10, MNIST-5k 784-256-256-10), same
seed and epochs for every rule. Writes bench/results/tune_defaults.json and prints the best per rule;
the chosen values go into edgefdfa/learner.py's DEFAULTS.

    python tools/tune_defaults.py [--rules fdfa,dfa] [--epochs 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import edgefdfa
from edgefdfa.datasets import load
from edgefdfa.evaluate import accuracy, fit_online

NETWORKS = {"digits": [64, 128, 128, 10], "mnist5k": [784, 256, 256, 10]}
LRS = [0.002, 0.005, 0.01, 0.02, 0.05]
GRID = {
    "bp": [dict(optimizer="sgd", lr=lr) for lr in LRS],
    "dfa": [dict(optimizer="sgd", lr=lr) for lr in LRS],
    "fdfa": [dict(optimizer="sgd", lr=lr, alpha=a) for lr, a in itertools.product(LRS, [0.0003, 0.001, 0.003, 0.01])],
    "fg-a": [dict(optimizer="sgd", lr=lr) for lr in [0.0002, 0.0005, 0.001, 0.002, 0.005]],
    "fg-w": [dict(optimizer="sgd", lr=lr) for lr in [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3]],
}


def score(job: tuple[str, str, dict, int]) -> dict:
    data, rule, options, epochs = job
    ds = load(data)
    X_fit, y_fit, X_val, y_val = ds.validation_split()
    learner = edgefdfa.MLP(NETWORKS[data], rule=rule, loss="ce", seed=0, **options)
    t = time.perf_counter()
    fit_online(learner, X_fit, y_fit, epochs=epochs, seed=0)
    return dict(data=data, rule=rule, options=options, epochs=epochs,
                val_accuracy=accuracy(learner, X_val, y_val), seconds=time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=",".join(GRID))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "bench/results/tune_defaults.json"))
    args = ap.parse_args()
    jobs = [(data, rule, opt, args.epochs) for rule in args.rules.split(",") for opt in GRID[rule] for data in NETWORKS]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = []
        for r in pool.map(score, jobs):
            results.append(r)
            print(f"{r['data']:8s} {r['rule']:5s} {r['options']} val={r['val_accuracy']:.4f} ({r['seconds']:.0f}s)", flush=True)
    out = Path(args.out)
    if out.exists():  # keep earlier runs of the rules not searched this time
        searched = set(args.rules.split(","))
        results = [r for r in json.loads(out.read_text())["runs"] if r["rule"] not in searched] + results
    best = {}
    for rule in dict.fromkeys(r["rule"] for r in results):
        by_opt = {}
        for r in results:
            if r["rule"] == rule:
                by_opt.setdefault(json.dumps(r["options"], sort_keys=True), []).append(r["val_accuracy"])
        opt, accs = max(by_opt.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
        best[rule] = dict(options=json.loads(opt), mean_val_accuracy=sum(accs) / len(accs))
        print(f"best {rule:5s} {best[rule]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(epochs=args.epochs, networks=NETWORKS, best=best, runs=results), indent=1))


if __name__ == "__main__":
    main()
