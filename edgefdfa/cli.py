"""The `edgefdfa` command. Subcommands are small functions; argparse does the parsing.

    edgefdfa demo [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EdgeFDFAError

DEMO_RULES = ("bp", "dfa", "fdfa", "fg-a", "fg-w")


def demo(args: argparse.Namespace) -> int:
    """Online learning on the shipped digits, one sample at a time, every rule side by side."""
    from .evaluate import compare_rules

    sizes = [64, 128, 128, 10]
    rows = compare_rules("digits", sizes, DEMO_RULES, epochs=args.epochs, seed=0, progress=sys.stderr.isatty())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for row in rows:
            row["learner"].save(out / f"digits-{row['rule']}.npz")
    for row in rows:
        del row["learner"]
    if args.json:
        print(json.dumps(dict(demo="digits", rows=rows), indent=1))
        return 0
    print(f"Online learning on scikit-learn digits ({'-'.join(map(str, sizes))}), one sample at a time, "
          f"{args.epochs} passes, seed 0; accuracy on the held-out test split:\n")
    print(f"{'rule':6} {'optimizer':9} {'lr':>7} {'alpha':>6} {'test acc':>9} {'us/sample':>10}")
    for r in rows:
        alpha = f"{r['alpha']:g}" if r["alpha"] is not None else "-"
        print(f"{r['rule']:6} {r['optimizer']:9} {r['lr']:7g} {alpha:>6} {r['test_accuracy']:9.1%} "
              f"{r['us_per_sample']:10.0f}")
    if args.out:
        print(f"\ncheckpoints written to {args.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefdfa", description="On-device learning for edge devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the main job on the shipped defaults, no arguments needed")
    p.add_argument("--out", metavar="DIR", help="write each rule's checkpoint here")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training data (default 3)")
    p.set_defaults(run=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeFDFAError as exc:
        print(f"edgefdfa: error: {exc}", file=sys.stderr)
        return 2
