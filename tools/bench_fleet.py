"""A fleet of 8 emulated devices against each device alone and central training, on a non-IID split
of the shipped IMU data (edgefdfa/fleet/split.py: each device sees two of the four activities,
every other device wears the watch upside down; held-out windows from recordings no device sees,
in both orientations).

Every device is the fleet's own Device (device.py: an EdgeModel learning online with FDFA from
its stream, its state in a checkpoint between rounds) and the server's step is Flower's: the same
guard as the ServerApp, then Flower's FedAvg weighting (strategy_utils.aggregate_arrayrecords) or
its trimmed mean, called in this process instead of over SuperLink/SuperNode (the tests in
tests/fleet run those processes). Reported: held-out accuracy per round for
  fleet         FedAvg of the heads, feedback matrices kept on each device
  fleet+B       FedAvg of heads and FDFA feedback matrices
  fleet sparse  each device's change sent as the bridge's sparse int8 delta (default budget)
  alone         each device learning the same samples on its own (the best and the mean)
  central       one model learning all devices' streams, as many samples as the whole fleet
  bad device    one device sending a head x -20 (finite): FedAvg against trimmed mean; and
                one sending NaN, refused by the guard
and bytes sent per round per device (float32 ArrayRecord, sparse int8 delta).

    python tools/bench_fleet.py [--rounds 20] [--samples 60] [--lr 0.001] [--seed 0]
    -> bench/results/bench_fleet.json and bench_fleet.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgefdfa  # noqa: E402
from edgefdfa.fleet import record, split  # noqa: E402
from edgefdfa.fleet.device import Device, DeviceConfig  # noqa: E402
from edgefdfa.fleet.server_app import accuracy  # noqa: E402
from firmware_bridge import encoding as bridge_encoding  # noqa: E402
from firmware_bridge import image as bridge_image  # noqa: E402
from firmware_bridge.host import sparse_budget  # noqa: E402
from firmware_bridge.protocol import Encoding  # noqa: E402

MODEL = ROOT / "models" / "imu-activity.onnx"
OUT = ROOT / "bench" / "results"


def held_out(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["X"], z["y"]


def content(arrays: ArrayRecord, n: int) -> RecordDict:
    return RecordDict({"arrays": arrays, "metrics": MetricRecord({record.WEIGHT: n})})


def fedavg(replies: list[RecordDict]) -> ArrayRecord:
    return aggregate_arrayrecords(replies, record.WEIGHT)


def trimmed(replies: list[RecordDict], beta: float = 0.2) -> ArrayRecord:
    """Flower's FedTrimmedAvg step: the trimmed mean of every array across the replies."""
    keys = list(replies[0]["arrays"].keys())
    return ArrayRecord({k: Array(np.asarray(trim_mean(np.stack([r["arrays"][k].numpy() for r in replies]), beta),
                                            np.float32)) for k in keys})


def sparse_reply(reply: ArrayRecord, base: ArrayRecord, model: edgefdfa.EdgeModel) -> tuple[ArrayRecord, int]:
    """What the server holds if the device sends its change as a sparse int8 delta: base + decoded."""
    head = model.head()
    layers = bridge_image.layers_of(head)
    target, start = reply[record.PARAMS].numpy(), base[record.PARAMS].numpy()
    update = bridge_encoding.encode(target, layers, Encoding.SPARSE_INT8, base=start, budget=sparse_budget(None, layers))
    got = bridge_encoding.decode(update, layers, Encoding.SPARSE_INT8, base=start)
    arrays = {record.PARAMS: Array(got)}
    if record.FEEDBACK in reply:
        arrays[record.FEEDBACK] = reply[record.FEEDBACK]
    return ArrayRecord(arrays), len(update)


def federate(name: str, streams: list[Path], work: Path, args, X, y, *, feedback=False, sparse=False,
             aggregate=fedavg, bad: dict[int, str] | None = None) -> dict:
    """Rounds of the fleet; held-out accuracy of the global head before round 1 and after each."""
    eval_model = edgefdfa.load(MODEL)
    devices = [Device(DeviceConfig(str(MODEL), str(s), str(work / name / f"d{i}"), samples=args.samples,
                                   window=split.WINDOW, hop=split.HOP, lr=args.lr, seed=i)) for i, s in enumerate(streams)]
    g = record.record_of(eval_model.learner, feedback)
    expected = record.expected_shapes(g)
    acc, sent, refused = [accuracy(eval_model, X, y)], [], []
    for r in range(1, args.rounds + 1):
        replies, sizes = [], []
        for i, device in enumerate(devices):
            reply, metrics = device.round(g, r, feedback)
            size = metrics["bytes"]
            if sparse:
                reply, size = sparse_reply(reply, g, eval_model)
            if bad and i in bad:
                reply = corrupt(reply, bad[i])
            c = content(reply, metrics[record.WEIGHT])
            why = record.refusal(c, expected)
            if why:
                refused.append({"round": r, "device": i, "reason": why})
                continue
            replies.append(c)
            sizes.append(size)
        g = aggregate(replies)
        record.adopt(eval_model.learner, g)
        acc.append(accuracy(eval_model, X, y))
        sent.append(float(np.mean(sizes)))
        print(f"{name:14} round {r:2}: held-out {acc[-1]:.3f}", file=sys.stderr, flush=True)
    return {"accuracy": acc, "bytes_per_device": sent, "refused": refused[:3], "n_refused": len(refused)}


def corrupt(reply: ArrayRecord, how: str) -> ArrayRecord:
    p = reply[record.PARAMS].numpy().copy()
    p = p * np.float32(-20) if how == "flip-scale" else np.full_like(p, np.nan)
    return ArrayRecord({**{k: v for k, v in reply.items()}, record.PARAMS: Array(p)})


def alone(streams: list[Path], work: Path, args, X, y, samples: int, name: str) -> list[list[float]]:
    """Each stream learned by one device on its own: its head's held-out accuracy after each round."""
    out = []
    for i, s in enumerate(streams):
        model = edgefdfa.load(MODEL)
        device = Device(DeviceConfig(str(MODEL), str(s), str(work / name / f"d{i}"), samples=samples,
                                     window=split.WINDOW, hop=split.HOP, lr=args.lr, seed=i))
        g, acc = record.record_of(model.learner, False), [accuracy(model, X, y)]
        for r in range(1, args.rounds + 1):
            g, _ = device.round(g, r, False)
            record.adopt(model.learner, g)
            acc.append(accuracy(model, X, y))
        out.append(acc)
        print(f"{name:14} {i}: held-out {acc[-1]:.3f}", file=sys.stderr, flush=True)
    return out


def central_stream(streams: list[Path], path: Path, steps: int = 100) -> Path:
    """All devices' recordings in one seeded order (as if their data were sent to one place)."""
    pieces = []
    for s in streams:
        with np.load(s) as z:
            pieces += [(z["X"][i:i + steps], z["y"][i:i + steps]) for i in range(0, len(z["X"]), steps)]
    order = np.random.default_rng(0).permutation(len(pieces))
    np.savez(path, X=np.concatenate([pieces[i][0] for i in order]), y=np.concatenate([pieces[i][1] for i in order]))
    return path


def tail(acc: list[float], k: int = 3) -> float:
    return float(np.mean(acc[-k:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=60, help="windows each device learns per round")
    parser.add_argument("--lr", type=float, default=0.001,
                        help="0.001: the largest of 0.01, 0.003, 0.001 at which central training beat the frozen head")
    parser.add_argument("--seed", type=int, default=0, help="which recordings go where (split.make)")
    parser.add_argument("--out", default=str(OUT / "bench_fleet"), help="FILE (without suffix) for .json and .png")
    parser.add_argument("--only", nargs="*", help="run only these parts (fleet, fleet+B, sparse, alone, central, bad)")
    args = parser.parse_args()
    began = time.time()
    work = Path(tempfile.mkdtemp(prefix="bench_fleet."))
    try:
        data = split.make(work / "data", seed=args.seed)
        X, y = held_out(data.held_out)

        def want(part: str) -> bool:
            return not args.only or part in args.only

        runs: dict = {}
        if want("fleet"):
            runs["fleet"] = federate("fleet", data.streams, work, args, X, y)
        if want("fleet+B"):
            runs["fleet+B"] = federate("fleet+B", data.streams, work, args, X, y, feedback=True)
        if want("sparse"):
            runs["fleet sparse"] = federate("fleet sparse", data.streams, work, args, X, y, sparse=True)
        if want("alone"):
            runs["alone"] = alone(data.streams, work, args, X, y, args.samples, "alone")
        if want("central"):
            stream = central_stream(data.streams, work / "central.npz")
            runs["central"] = alone([stream], work, args, X, y, args.samples * len(data.streams), "central")[0]
        if want("bad"):
            bad = {1: "flip-scale"}
            runs["bad fedavg"] = federate("bad fedavg", data.streams, work, args, X, y, bad=bad)
            runs["bad trimmed"] = federate("bad trimmed", data.streams, work, args, X, y, bad=bad, aggregate=trimmed)
            runs["nan refused"] = federate("nan refused", data.streams, work, args, X, y, bad={1: "nan"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs, data, len(y), args, time.time() - began)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(runs, out.with_suffix(".png"), args)
    print(json.dumps(summary["table"], indent=1))
    return 0


def summarize(runs: dict, data: split.Split, n_held: int, args, seconds: float) -> dict:
    table = {}
    for name, run in runs.items():
        if name == "alone":
            finals = [tail(a) for a in run]
            table["alone (best device)"] = max(finals)
            table["alone (mean of devices)"] = float(np.mean(finals))
        elif name == "central":
            table[name] = tail(run)
        else:
            table[name] = tail(run["accuracy"])
    if runs.get("fleet"):
        table["frozen (round 0)"] = runs["fleet"]["accuracy"][0]
    return {"what": "held-out accuracy, mean of the last 3 rounds", "table": table, "runs": runs,
            "split": {"classes": data.classes, "flipped": data.flipped, "held_out": n_held},
            "settings": {"seed": args.seed, "rounds": args.rounds, "samples_per_round": args.samples, "lr": args.lr, "rule": "fdfa",
                         "model": MODEL.name, "window": split.WINDOW, "hop": split.HOP},
            "seconds": round(seconds, 1)}


def plot(runs: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    rounds = np.arange(args.rounds + 1)
    for name, run in runs.items():
        if name == "alone":
            best = max(run, key=tail)
            ax.plot(rounds, best, ls="--", label="alone (best device)")
            ax.plot(rounds, np.mean(run, axis=0), ls=":", label="alone (mean)")
        elif name == "central":
            ax.plot(rounds, run, ls="-.", color="black", label="central")
        else:
            ax.plot(rounds, run["accuracy"], marker="o", ms=3, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out accuracy (all devices' data)")
    ax.set_title(f"8 devices, non-IID IMU split, FDFA lr {args.lr}, {args.samples} windows per round")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
