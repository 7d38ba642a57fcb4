"""The `edgefdfa` command. Subcommands are small functions; argparse does the parsing.

    edgefdfa demo [--out DIR] [--json]
    edgefdfa info MODEL [--head N]
    edgefdfa export CHECKPOINT --format onnx|tflite|c|c-int8|bundle --out FILE
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


def info(args: argparse.Namespace) -> int:
    """Inputs, outputs, operators, the backbone/head split and the head's parameters."""
    from collections import Counter

    from .model import backend_module, format_module, load

    path = Path(args.model)
    model = load(path, head=args.head)
    desc = format_module(model.suffix).describe(model.source, path.name)
    extras = ", ".join(f"{k} {v}" for k, v in desc.details.items())
    print(f"model    {path.name} ({desc.format}{', ' + extras if extras else ''})")
    for kind, tensors in (("input", desc.inputs), ("output", desc.outputs)):
        for t in tensors:
            print(f"{kind:8} {t.name} {_shape(t.shape)} {t.dtype}")
    ops = Counter(desc.operators)
    print(f"ops      {len(desc.operators)}: " + ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()))
    backbone = (f"backbone in {backend_module(model.suffix).NAME} -> {_shape(model.split.head_input.shape)}"
                if model.backbone else "no backbone")
    print(f"split    {backbone} -> head of {len(model.split.head)} dense layer(s)"
          + (" -> softmax" if model.split.softmax else ""))
    total = 0
    for l, layer in enumerate(model.split.head):
        n_out, n_in = layer.W.shape
        total += layer.W.size + layer.b.size
        print(f"  head {l}  {layer.where:32} {n_in:>5} -> {n_out:<5} {layer.activation:8} {layer.W.size + layer.b.size:>8,} params")
    print(f"trainable parameters {total:,}")
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    """A checkpoint (of a model or a plain learner) to a model file, C header or bundle."""
    from .export import export
    from .model import load_checkpoint

    print(export(load_checkpoint(args.checkpoint), args.out, args.format))
    return 0


def _shape(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefdfa", description="On-device learning for edge devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the main job on the shipped defaults, no arguments needed")
    p.add_argument("--out", metavar="DIR", help="write each rule's checkpoint here")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training data (default 3)")
    p.set_defaults(run=demo)

    p = sub.add_parser("info", help="what a model file holds and how it splits into backbone and head")
    p.add_argument("model", help="an .onnx or .tflite file")
    p.add_argument("--head", type=int, help="dense layers in the head (default: the trailing run)")
    p.set_defaults(run=info)

    p = sub.add_parser("export", help="write a checkpoint's learned head as a model file, C header or bundle")
    p.add_argument("checkpoint", help="a .npz checkpoint written by edgefdfa")
    p.add_argument("--format", required=True, choices=("onnx", "tflite", "c", "c-int8", "bundle"))
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(run=export_cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeFDFAError as exc:
        print(f"edgefdfa: error: {exc}", file=sys.stderr)
        return 2
