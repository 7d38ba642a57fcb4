"""Evidence for the input-scale guard: prequential accuracy on the digits and IMU streams, clean and
with rows of 1e5, 1e10 and 1e20 injected, with the guard off, skipping (the default) and clipping.

    python tools/bench_range_guard.py [--out bench/results/range_guard.json]

Each injected run adds 5 rows (every feature the value, the label of the row before) at fixed places
after the guard's warm-up; accuracy is over the samples the run scored. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefdfa.datasets import load  # noqa: E402
from edgefdfa.model import load as load_model  # noqa: E402
from edgefdfa.online import OnlineRun, RunConfig  # noqa: E402
from edgefdfa.stream import Sample, Window  # noqa: E402

MAGNITUDES = (1e5, 1e10, 1e20)
GUARDS = ("off", "skip", "clip")


def streams() -> dict[str, tuple[str, list[tuple[np.ndarray, int]], int | None]]:
    """name -> (model file, [(x, y)], window length or None)."""
    digits = load("digits")
    imu = load("basicmotions")
    imu_steps = [(s[:, t].astype(np.float32), int(y)) for s, y in zip(imu.X_test, imu.y_test) for t in range(s.shape[1])]
    return {"digits": ("digits.onnx", [(x.astype(np.float32), int(y)) for x, y in zip(digits.X_test, digits.y_test)], None),
            "imu": ("imu-activity.onnx", imu_steps, 32)}


def inject(rows: list, value: float) -> list:
    out = list(rows)
    for at in sorted({int(len(rows) * f) for f in (0.2, 0.35, 0.5, 0.65, 0.8)}, reverse=True):
        out.insert(at, (np.full_like(rows[at][0], value), rows[at - 1][1]))
    return out


def run(model_file: str, rows: list, window: int | None, guard: str) -> dict:
    model = load_model(ROOT / "models" / model_file)
    win = Window(window, 8, len(rows[0][0])) if window else None
    r = OnlineRun(model, RunConfig(range_guard=guard), win)
    with np.errstate(all="ignore"):  # the unguarded runs overflow on purpose
        r.run(Sample(x, y, float(i)) for i, (x, y) in enumerate(rows))
    s = r.summary()
    W = np.concatenate([w.ravel() for w in model.learner.net.W])
    return {"accuracy": s["accuracy"], "scored": s["samples"], "skipped_by": s["skipped_by"],
            "max_abs_weight": float(np.nanmax(np.abs(W))) if np.isfinite(W).any() else None,
            "finite": bool(np.isfinite(W).all())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "range_guard.json"))
    args = parser.parse_args()
    results: dict = {}
    for name, (model_file, rows, window) in streams().items():
        results[name] = {"clean": {g: run(model_file, rows, window, g) for g in GUARDS}}
        for value in MAGNITUDES:
            results[name][f"{value:g}"] = {g: run(model_file, inject(rows, value), window, g) for g in GUARDS}
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'stream':7} {'data':6} " + " ".join(f"{g:>14}" for g in GUARDS))
    for name, by_data in results.items():
        for data, by_guard in by_data.items():
            print(f"{name:7} {data:6} " + " ".join(f"{by_guard[g]['accuracy']:8.2%} ({by_guard[g]['scored']:4})" for g in GUARDS))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
