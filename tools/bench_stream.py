"""Benchmark the whole online loop (source -> window -> backbone+head -> learn -> metrics) on the
shipped IMU model, and the share of time each stage takes.

The stream is the demo's BasicMotions IMU stream (6 channels, a label per step) written to a
temporary CSV and replayed, unpaced, through `open_source(path, n_features=6)`, so CSV parsing is
part of the loop, as a user runs it. The "memory" rows feed the same samples from a list (no
parsing), to show what parsing costs. Each run is a fresh
`OnlineRun(edgefdfa.load(model, rule=...), RunConfig(), Window(32, 8, 6)).run(source)`, after
WARMUP untimed steps, for imu-activity.onnx and .tflite and rules fdfa and bp.

Stage shares come from a third kind of run, "staged": the same real OnlineRun with perf_counter_ns
wrapped around the source's `next`, `Window.push`, `EdgeModel.observe` (ONNX: backbone + head in one
interpreter call, the head's weights re-fed after each update; TFLite: the backbone in the
interpreter and the compiled head on the weights in place) and `Learner.learn_one`; "metrics"
is the rest of the loop (label check, scoring, loss, drift test, history, delayed-label ring,
guard). Its windows/s is printed beside the plain CSV run's: the shares describe the real loop
when the two agree within 15%.

Runs go in rounds, every case once per round, so machine noise hits all cases alike; each case
reports its fastest round (the least disturbed, as timeit does). Everything runs on one thread.
Target: >= 2,000 windows learned/s on imu-activity, CSV source, fdfa, both formats (160x the
12.5 windows/s of a 100 Hz sensor at hop 8).

    PYTHONPATH=. python tools/bench_stream.py [--quick]

Prints a markdown table and writes bench/results/bench_stream.json.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ[_var] = "1"

import argparse
import json
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterable, Iterator

import edgefdfa
from edgefdfa.demo import imu_stream
from edgefdfa.online import OnlineRun, RunConfig
from edgefdfa.stream import Sample, Window, open_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from bench_engine import cpu_model  # noqa: E402

OUT = ROOT / "bench" / "results" / "bench_stream.json"
MODELS = ("imu-activity.onnx", "imu-activity.tflite")
RULES = ("fdfa", "bp")
KINDS = ("csv", "memory", "staged")  # CSV replay, list in memory, CSV replay with stage clocks
STAGES = ("source", "window", "observe", "learn", "metrics")
MIN_STEPS, WARMUP, ROUNDS = 20_000, 800, 5  # steps timed per run; untimed steps before; rounds
TARGET, AGREE = 2_000.0, 0.15  # windows learned/s; staged vs plain throughput
REAL_RATE = 100 / 8  # windows/s of a 100 Hz sensor at hop 8


def write_csv(path: Path, min_steps: int) -> int:
    """The demo IMU stream as CSV lines (6 features, label), repeated to >= min_steps; the line count."""
    samples, _ = imu_stream()
    block = "".join(",".join(f"{v:.7g}" for v in s.x) + f",{s.y}\n" for s in samples)
    copies = -(-min_steps // len(samples))
    path.write_text(block * copies)
    return copies * len(samples)


def timed_run(run: OnlineRun, source: Iterable[Sample]) -> dict:
    """Run the loop over `source`: steps/s and windows learned/s."""
    seen, consumed = run.learner.n_seen, run.consumed
    t0 = time.perf_counter()
    run.run(source)
    seconds = time.perf_counter() - t0
    steps, windows = run.consumed - consumed, run.learner.n_seen - seen
    return {"steps": steps, "windows": windows, "seconds": seconds,
            "steps_per_s": steps / seconds, "windows_per_s": windows / seconds}


def clocked(fn: Callable, ns: dict, stage: str) -> Callable:
    """`fn`, adding the nanoseconds each call takes to ns[stage]."""
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            ns[stage] += time.perf_counter_ns() - t0
    return wrapper


def clocked_iter(source: Iterable[Sample], ns: dict) -> Iterator[Sample]:
    """The samples of `source`, adding the nanoseconds each takes to arrive to ns["source"]."""
    it = iter(source)
    while True:
        t0 = time.perf_counter_ns()
        sample = next(it, None)
        ns["source"] += time.perf_counter_ns() - t0
        if sample is None:
            return
        yield sample


def staged_run(run: OnlineRun, path: str) -> dict:
    """The real loop over the CSV with its stages wrapped in clocks: each stage's share of the time."""
    ns = dict.fromkeys(STAGES, 0)
    run.window.push = clocked(run.window.push, ns, "window")  # instance attributes shadow the methods
    run.model.observe = clocked(run.model.observe, ns, "observe")
    run.learner.learn_one = clocked(run.learner.learn_one, ns, "learn")
    result = timed_run(run, clocked_iter(open_source(path, n_features=6), ns))
    ns["metrics"] = round(result["seconds"] * 1e9) - sum(ns.values())  # everything not in a named stage
    result["shares"] = {k: v / sum(ns.values()) for k, v in ns.items()}
    result["us_per_window"] = {k: v / 1e3 / result["windows"] for k, v in ns.items()}
    result["dominant"] = max(ns, key=ns.get)
    return result


def one_run(model: str, rule: str, kind: str, path: str, memory: list[Sample]) -> dict:
    run = OnlineRun(edgefdfa.load(ROOT / "models" / model, rule=rule), RunConfig(), Window(32, 8, 6))
    run.run(memory[:WARMUP])
    if kind == "staged":
        return staged_run(run, path)
    return timed_run(run, open_source(path, n_features=6) if kind == "csv" else memory)


def measure(path: str, memory: list[Sample], rounds: int) -> dict[tuple[str, str, str], dict]:
    """(model, rule, kind) -> its fastest run over `rounds` rounds of every case."""
    best: dict[tuple[str, str, str], dict] = {}
    for _ in range(rounds):
        for key in [(m, r, k) for m in MODELS for r in RULES for k in KINDS]:
            result = one_run(*key, path, memory)
            if key not in best or result["windows_per_s"] > best[key]["windows_per_s"]:
                best[key] = result
    for m in MODELS:
        for r in RULES:
            staged, plain = best[m, r, "staged"], best[m, r, "csv"]
            staged["agreement"] = staged["windows_per_s"] / plain["windows_per_s"] - 1
            staged["agrees"] = abs(staged["agreement"]) <= AGREE
    return best


def table(best: dict, targets: list[dict], steps: int, rounds: int) -> str:
    lines = [f"Whole loop, {steps:,} IMU steps (6 ch), Window(32, 8), RunConfig() defaults, ONE thread; "
             f"fastest of {rounds} interleaved rounds.", "",
             f"| model | rule | source | steps/s | windows learned/s | × real rate ({REAL_RATE}/s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {r} | {k} | {v['steps_per_s']:,.0f} | {v['windows_per_s']:,.0f} | "
              f"{v['windows_per_s'] / REAL_RATE:,.0f}× |" for (m, r, k), v in best.items() if k != "staged"]
    lines += ["", "Stage shares of the CSV loop (µs per learned window in brackets):", "",
              "| model | rule | " + " | ".join(STAGES) + " | dominant | staged vs plain windows/s |",
              "|" + "---|" * (len(STAGES) + 4)]
    for (m, r, k), s in best.items():
        if k == "staged":
            cells = " | ".join(f"{s['shares'][st]:.0%} ({s['us_per_window'][st]:.0f})" for st in STAGES)
            lines.append(f"| {m} | {r} | {cells} | **{s['dominant']}** | {s['windows_per_s']:,.0f} vs "
                         f"{best[m, r, 'csv']['windows_per_s']:,.0f} ({s['agreement']:+.0%}"
                         f"{'' if s['agrees'] else ', DISAGREE: shares unreliable'}) |")
    lines += ["", "| target | model | windows learned/s | result |", "|---|---|---|---|"]
    lines += [f"| ≥ {TARGET:,.0f} windows learned/s (CSV source, fdfa) | {t['model']} | {t['measured']:,.0f} | "
              f"{'PASS' if t['pass'] else 'FAIL'} |" for t in targets]
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"one round instead of {ROUNDS}")
    rounds = 1 if parser.parse_args().quick else ROUNDS
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "imu.csv")
        steps = write_csv(Path(path), MIN_STEPS)
        with open_source(path, n_features=6) as src:
            memory = list(src)  # the same samples, parsed once
        best = measure(path, memory, rounds)
    targets = [{"model": m, "measured": best[m, "fdfa", "csv"]["windows_per_s"], "threshold": TARGET,
                "pass": best[m, "fdfa", "csv"]["windows_per_s"] >= TARGET} for m in MODELS]
    print(table(best, targets, steps, rounds))
    for (m, r, k), s in best.items():
        if k == "staged":
            print(f"{m} {r}: {s['dominant']} dominates ({s['shares'][s['dominant']]:.0%} of the loop)")
    machine = {"cpu_model": cpu_model(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average": os.getloadavg(), "python": platform.python_version(), "numpy": version("numpy"),
               "threads": 1, **{lib: _version(lib) for lib in ("onnxruntime", "ai-edge-litert", "tflite-runtime")}}
    rows = [{"model": m, "rule": r, "source": k, **v} for (m, r, k), v in best.items()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine, "steps": steps, "warmup_steps": WARMUP, "window": [32, 8, 6],
                               "rounds": rounds, "rows": rows, "targets": targets}, indent=2) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
