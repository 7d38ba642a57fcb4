"""Numbers to compare across machines (tools/arm64.sh runs it on arm64 and on x86-64).

    python tools/arm_parity.py write OUT.npz      # features, outputs and learned heads of the shipped models
    python tools/arm_parity.py compare A B --tol 1e-5   # .npz or .json (the demo's summary), number by number

`write` runs each shipped model file in its interpreter on fixed inputs, learns 300 samples with
FDFA and with BP from a fixed seed, and stores the features, outputs and final head weights.
`compare` prints the largest difference of each array relative to max(1, |x|) and exits 1 past `--tol`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import edgefdfa
from edgefdfa import datasets, native

MODELS = Path(edgefdfa.__file__).parent / "models"
N_LEARN = 300


def _inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed samples for each shipped model: IMU windows of 32 steps, or digits images."""
    if name.startswith("imu-activity"):
        ds = datasets.load("basicmotions")
        x = np.concatenate([ds.X_train, ds.X_test]).transpose(0, 2, 1)  # (series, 100 steps, 6)
        y = np.concatenate([ds.y_train, ds.y_test])
        windows = [(s[i:i + 32], label) for s, label in zip(x, y) for i in range(0, 68, 16)]
        return np.stack([w for w, _ in windows]).astype(np.float32), np.array([label for _, label in windows])
    ds = datasets.load("digits")
    return ds.X_train.astype(np.float32), ds.y_train


def write(out: str) -> None:
    """Features, outputs and learned heads of every shipped model file, one array each."""
    arrays: dict[str, np.ndarray] = {}
    for path in sorted(p for p in MODELS.iterdir() if p.suffix in (".onnx", ".tflite")):
        x, y = _inputs(path.stem)
        for rule in ("fdfa", "bp"):
            model = edgefdfa.load(path, rule=rule, seed=0)
            key = f"{path.name}.{rule}"
            if rule == "fdfa":  # the frozen pass, before any learning
                obs = [model.observe(s) for s in x[:64]]
                arrays[f"{path.name}.outputs"] = np.stack([o for o, _ in obs])
                arrays[f"{path.name}.features"] = np.stack([f for _, f in obs])
            for s, label in zip(x[:N_LEARN], y[:N_LEARN]):
                model.learn_one(s, int(label))
            for i, (W, b) in enumerate(zip(model.learner.net.W, model.learner.net.b)):
                arrays[f"{key}.W{i}"], arrays[f"{key}.b{i}"] = W.copy(), b.copy()
            arrays[f"{key}.outputs_after"] = np.stack([model.output_one(s) for s in x[:64]])
    np.savez(out, **arrays)
    print(f"{out}: {len(arrays)} arrays; compiled head {'built' if native.available() else 'absent'}")


def _numbers(path: str) -> dict[str, np.ndarray]:
    """An .npz's arrays, or a JSON document's numbers keyed by their path."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    flat: dict[str, np.ndarray] = {}

    def walk(node, key):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            flat[key] = np.array(node, dtype=np.float64)
    walk(json.loads(Path(path).read_text()), "")
    return flat


def compare(a: str, b: str, tol: float) -> int:
    """Largest relative difference per array; 1 when any passes `tol` or the keys differ."""
    left, right = _numbers(a), _numbers(b)
    if left.keys() != right.keys():
        print(f"keys differ: only in {a}: {sorted(left.keys() - right.keys())}; "
              f"only in {b}: {sorted(right.keys() - left.keys())}")
        return 1
    worst, bad = 0.0, []
    for k in sorted(left):
        x, z = left[k].astype(np.float64), right[k].astype(np.float64)
        if x.shape != z.shape:
            bad.append(f"{k}: shape {x.shape} vs {z.shape}")
            continue
        d = float(np.max(np.abs(x - z) / np.maximum(1.0, np.abs(x)), initial=0.0))
        worst = max(worst, d)
        if not d <= tol:
            bad.append(f"{k}: {d:.3g}")
    print(f"{len(left)} arrays compared, largest relative difference {worst:.3g} (tolerance {tol:g})")
    for line in bad:
        print(f"  beyond tolerance: {line}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("write").add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args(argv)
    if args.cmd == "write":
        write(args.out)
        return 0
    return compare(args.a, args.b, args.tol)


if __name__ == "__main__":
    sys.exit(main())
