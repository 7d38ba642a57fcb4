"""Bytes an unattended run writes to its SD card per hour of checkpoints, measured, not estimated.

    python tools/checkpoint_wear.py

For the shipped IMU model and a generated 5 MB model (a 5.2 MB dense backbone, the trailing two
dense layers learned): one `edgefdfa train` run writes its checkpoints the old way (`--checkpoint`,
the model file inside every one) and one into a state directory (the model stored once); the table
gives each checkpoint's size and the bytes per hour at 30 s and at the default interval.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgefdfa import cli
from edgefdfa.datasets import load

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = cli.build_parser().parse_args(["train", "m", "--data", "d"]).checkpoint_every


def big_model(path: Path, n_in: int = 6 * 32) -> None:
    """A classifier on IMU windows whose backbone is one dense layer of ~5 MB (192 x 5580 float32; with the head, 5.0 MB)."""
    rng = np.random.default_rng(0)
    sizes = [n_in, 5580, 32, 4]
    W = [rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    nodes = [helper.make_node("Reshape", ["window", "shape"], ["flat"])]
    inits = [numpy_helper.from_array(np.array([1, n_in], np.int64), "shape")]
    x = "flat"
    for i, w in enumerate(W):
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(np.zeros(w.shape[1], np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [f"g{i}"]))
        x = f"g{i}"
        if i < len(W) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=1))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 32, 6])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def imu_csv(path: Path) -> None:
    ds = load("basicmotions")
    rows = [",".join(f"{v:.6g}" for v in ds.X_test[i][:, t]) + f",{int(ds.y_test[i])}"
            for i in range(4) for t in range(100)]
    path.write_text("\n".join(rows) + "\n")


def checkpoint_bytes(model: Path, data: Path, work: Path) -> tuple[int, int, int]:
    """(old checkpoint, state-directory checkpoint, the stored model file), in bytes."""
    common = ["train", str(model), "--data", str(data), "--window", "32", "--hop", "8", "--head", "2", "--json"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main([*common, "--checkpoint", str(work / "old.npz")]) == 0
        assert cli.main([*common, "--state-dir", str(work / "state")]) == 0
    stored = next((work / "state" / "models").iterdir())
    return (work / "old.npz").stat().st_size, (work / "state" / "checkpoint.npz").stat().st_size, stored.stat().st_size


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "imu.csv"
        imu_csv(data)
        big = work / "big-5mb.onnx"
        big_model(big)
        print(f"| model | file | checkpoint with the model | state-dir checkpoint | per hour at 30 s: old / state dir "
              f"| per hour at {DEFAULT:g} s (default): old / state dir |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, model in (("imu-activity.onnx", ROOT / "edgefdfa" / "models" / "imu-activity.onnx"),
                            ("generated 5 MB", big)):
            (work / name).mkdir()
            old, new, stored = checkpoint_bytes(model, data, work / name)
            print(f"| {name} | {stored:,} B | {old:,} B | {new:,} B | {old * 120 / 1e6:.2f} MB / {new * 120 / 1e6:.2f} MB "
                  f"| {old * 3600 / DEFAULT / 1e6:.2f} MB / {new * 3600 / DEFAULT / 1e6:.3f} MB |")


if __name__ == "__main__":
    main()
