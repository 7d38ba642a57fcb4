"""FDFA's options against its paper form, BP and DFA, on the MNIST subset's validation split only.

Online (batch 1, plain SGD), 784-800-800-10, learned on the first 80% of the training rows and
scored on the last 20% (the test split is never read). Each candidate is one set of options; the
same seeds and data order for all. Writes bench/results/fdfa_variants.json and prints a table.

    python tools/fdfa_variants.py [--seeds 0,1,2] [--epochs 1] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one core each, on a shared machine
from edgefdfa import datasets  # noqa: E402
from edgefdfa.errors import DivergedError  # noqa: E402
from edgefdfa.evaluate import accuracy, fit_online  # noqa: E402
from edgefdfa.learner import MLP  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
CANDIDATES = {  # name -> MLP options; rules not named fdfa are the references
    "bp": dict(rule="bp"),
    "dfa": dict(rule="dfa"),
    "fdfa (paper, defaults)": dict(rule="fdfa"),
    "fdfa tangents=4": dict(rule="fdfa", tangents=4),
    "fdfa lr=0.01": dict(rule="fdfa", lr=0.01),
    "fdfa tangents=4 lr=0.01": dict(rule="fdfa", tangents=4, lr=0.01),
    "fdfa alpha=0.01": dict(rule="fdfa", alpha=0.01),  # less lag behind the changing Jacobian
    "fdfa alpha=0.01 lr=0.01": dict(rule="fdfa", alpha=0.01, lr=0.01),
    "fdfa alpha=0.03 lr=0.01 tangents=4": dict(rule="fdfa", alpha=0.03, lr=0.01, tangents=4),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="names from CANDIDATES, comma-separated")
    ap.add_argument("--smoke", action="store_true", help="a 64-wide net on 200 rows: the test suite's run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="fdfa_variants.json", help="the JSON file's name under --out")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    X_fit, y_fit, X_val, y_val = datasets.load("mnist5k").validation_split()
    sizes = [784, 800, 800, 10]
    if args.smoke:
        sizes, X_fit, y_fit, X_val, y_val = [784, 64, 64, 10], X_fit[:200], y_fit[:200], X_val[:100], y_val[:100]
    names = args.candidates.split(",")
    rows = []
    for seed in seeds:
        for name in names:
            options = CANDIDATES[name]
            start = time.perf_counter()
            learner = MLP(sizes, loss="ce", seed=seed, **options)
            try:
                fit_online(learner, X_fit, y_fit, epochs=args.epochs, seed=seed)
                score, diverged = accuracy(learner, X_val, y_val), None
            except DivergedError as e:  # a result too: scored as chance, the message kept
                score, diverged = 0.1, str(e)
            rows.append(dict(candidate=name, options=options, seed=seed, val_accuracy=score, diverged=diverged,
                             lr=learner.config.lr, alpha=learner.config.alpha, seconds=time.perf_counter() - start))
            print(rows[-1], flush=True)
    summary = []
    print(f"| candidate | val accuracy, mean of seeds {seeds} | std | min | max |\n|---|---|---|---|---|")
    for name in names:
        accs = [r["val_accuracy"] for r in rows if r["candidate"] == name]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary.append(dict(candidate=name, mean=statistics.mean(accs), std=std, min=min(accs), max=max(accs)))
        print(f"| {name} | {statistics.mean(accs):.2%} | {std:.2%} | {min(accs):.2%} | {max(accs):.2%} |")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = dict(sizes=sizes, epochs=args.epochs, seeds=seeds, split="validation (last 20% of train)",
               summary=summary, runs=rows)
    (args.out / args.name).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
