"""Every learning rule on the shipped image data, online, one sample at a time, with its defaults.

Same network, seed and data budget (3 passes) for every rule; accuracy on the held-out test split,
over several seeds. Also reports each rule at its best *MNIST-only* validation learning rate (from
bench/results/tune_defaults.json), so that FDFA's lead over DFA on MNIST is not an artefact of
DFA's shared default. Prints a markdown table and writes bench/results/compare_rules.json.

    python tools/compare_rules.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from edgefdfa.evaluate import accuracy, compare_rules, fit_online
from edgefdfa.datasets import load
from edgefdfa.learner import MLP

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
CASES = [("digits", [64, 128, 128, 10], ["bp", "dfa", "fdfa", "fg-a", "fg-w"]),
         ("mnist5k", [784, 256, 256, 10], ["bp", "dfa", "fdfa", "fg-a"])]


def best_on(data: str, rule: str) -> dict:
    """The grid point with the best validation accuracy on `data` alone."""
    runs = json.loads((RESULTS / "tune_defaults.json").read_text())["runs"]
    return max((r for r in runs if r["data"] == data and r["rule"] == rule), key=lambda r: r["val_accuracy"])["options"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for data, sizes, rules in CASES:
        for seed in seeds:
            for r in compare_rules(data, sizes, rules, epochs=3, seed=seed):
                del r["learner"]
                rows.append(dict(r, setting="default"))
        if data == "mnist5k":  # per-data-set tuning for the two feedback-alignment rules
            ds = load(data)
            for rule in ("dfa", "fdfa"):
                options = best_on(data, rule)
                for seed in seeds:
                    learner = MLP(sizes, rule=rule, loss="ce", seed=seed, **options)
                    fit_online(learner, ds.X_train, ds.y_train, epochs=3, seed=seed)
                    rows.append(dict(data=data, rule=rule, seed=seed, setting=f"best on MNIST val {options}",
                                     test_accuracy=accuracy(learner, ds.X_test, ds.y_test)))
    print(f"| data | rule | setting | test accuracy, mean over seeds {seeds} | min | max |")
    print("|---|---|---|---|---|---|")
    summary = []
    for key in dict.fromkeys((r["data"], r["rule"], r["setting"]) for r in rows):
        accs = [r["test_accuracy"] for r in rows if (r["data"], r["rule"], r["setting"]) == key]
        summary.append(dict(data=key[0], rule=key[1], setting=key[2], mean=statistics.mean(accs), min=min(accs), max=max(accs)))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {statistics.mean(accs):.1%} | {min(accs):.1%} | {max(accs):.1%} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compare_rules.json").write_text(json.dumps(dict(seeds=seeds, summary=summary, runs=rows), indent=1))


if __name__ == "__main__":
    main()
