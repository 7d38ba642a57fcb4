"""Benchmark the whole online loop (source -> window -> backbone+head -> learn -> metrics) on the
shipped IMU model, and the share of time each stage takes.

The stream is the demo's BasicMotions IMU stream (6 channels, a label per step) written to a
temporary CSV and replayed, unpaced, through `open_source(path, n_features=6)`, so CSV parsing is
part of the loop, as a user runs it. A second row per case feeds the same samples from a list in
memory (no parsing), to show what parsing costs. Each case is
`OnlineRun(edgefdfa.load(model, rule=...), RunConfig(), Window(32, 8, 6)).run(source)` for
imu-activity.onnx and .tflite, rules fdfa and bp; the median of three fresh runs
(one with --quick) is reported, each after 800 untimed warm-up steps.

Stage shares come from one more run of the real OnlineRun per case, with perf_counter_ns wrapped
around the source's `next`, `Window.push`, `EdgeModel.observe` (backbone + head in one interpreter
call, with the head's weights re-fed after each update) and `Learner.learn_one`; "metrics" is the
rest of the loop (label check, scoring, loss, drift test, history, delayed-label ring, guard).
The instrumented run's throughput is printed beside the plain one's, so the shares can be trusted
when the two agree (within 15%). Everything runs on one thread.

Target: >= 2,000 windows learned per second on imu-activity, both formats (a 100 Hz sensor with
hop 8 gives 12.5 windows/s, so that is 160x the real rate).

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
STAGES = ("source", "window", "observe", "learn", "metrics")
MIN_STEPS, TARGET, AGREE = 20_000, 2_000.0, 0.15  # steps replayed; windows learned/s; instrumented vs plain
REAL_RATE = 100 / 8  # windows/s of a 100 Hz sensor at hop 8
REPEATS, WARMUP = 3, 800  # runs per case (median reported); untimed steps before each


def write_csv(path: Path, min_steps: int) -> int:
    """The demo IMU stream as CSV lines (6 features, label), repeated to >= min_steps; the line count."""
    samples, _ = imu_stream()
    block = "".join(",".join(f"{v:.7g}" for v in s.x) + f",{s.y}\n" for s in samples)
    copies = -(-min_steps // len(samples))
    path.write_text(block * copies)
    return copies * len(samples)


def new_run(model: str, rule: str) -> OnlineRun:
    return OnlineRun(edgefdfa.load(ROOT / "models" / model, rule=rule), RunConfig(), Window(32, 8, 6))


def timed_run(run: OnlineRun, source: Iterable[Sample]) -> dict:
    """Run the loop over `source`; steps/s and windows learned/s."""
    seen, steps = run.learner.n_seen, run.consumed
    t0 = time.perf_counter()
    run.run(source)
    elapsed = time.perf_counter() - t0
    learned = run.learner.n_seen - seen
    return {"steps": run.consumed - steps, "windows": learned, "seconds": elapsed,
            "steps_per_s": (run.consumed - steps) / elapsed, "windows_per_s": learned / elapsed}


def whole_loop(model: str, rule: str, make_source: Callable[[], Iterable[Sample]], warmup: list[Sample],
               repeats: int) -> dict:
    """The median (by windows/s) of `repeats` fresh runs, each after an untimed warm-up on `warmup`."""
    runs = []
    for _ in range(repeats):
        run = new_run(model, rule)
        run.run(warmup)
        runs.append(timed_run(run, make_source()))
    return sorted(runs, key=lambda r: r["windows_per_s"])[len(runs) // 2]


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


def stage_shares(model: str, rule: str, path: str, warmup: list[Sample]) -> dict:
    """One run of the real OnlineRun with its stages wrapped in clocks: each stage's share of the time."""
    run = new_run(model, rule)
    run.run(warmup)
    ns = dict.fromkeys(STAGES, 0)
    run.window.push = clocked(run.window.push, ns, "window")  # instance attributes shadow the methods
    run.model.observe = clocked(run.model.observe, ns, "observe")
    run.learner.learn_one = clocked(run.learner.learn_one, ns, "learn")
    result = timed_run(run, clocked_iter(open_source(path, n_features=6), ns))
    ns["metrics"] = round(result["seconds"] * 1e9) - sum(ns.values())  # everything not in a named stage
    total = sum(ns.values())
    result["shares"] = {k: v / total for k, v in ns.items()}
    result["us_per_window"] = {k: v / 1e3 / result["windows"] for k, v in ns.items()}
    result["dominant"] = max(ns, key=ns.get)
    return result


def table(rows: list[dict], shares: list[dict], targets: list[dict], steps: int, repeats: int) -> str:
    lines = [f"Whole loop, {steps:,} IMU steps (6 ch), Window(32, 8), RunConfig() defaults, ONE thread; "
             f"median of {repeats} runs.", "",
             f"| model | rule | source | steps/s | windows learned/s | × real rate ({REAL_RATE}/s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['rule']} | {r['source']} | {r['steps_per_s']:,.0f} | {r['windows_per_s']:,.0f} "
              f"| {r['windows_per_s'] / REAL_RATE:,.0f}× |" for r in rows]
    lines += ["", "Stage shares (one instrumented run, CSV source; µs per learned window in brackets):", "",
              "| model | rule | " + " | ".join(STAGES) + " | dominant | instrumented vs plain windows/s |",
              "|" + "---|" * (len(STAGES) + 4)]
    for s in shares:
        cells = " | ".join(f"{s['shares'][k]:.0%} ({s['us_per_window'][k]:.1f})" for k in STAGES)
        lines.append(f"| {s['model']} | {s['rule']} | {cells} | **{s['dominant']}** | {s['windows_per_s']:,.0f} vs "
                     f"{s['plain_windows_per_s']:,.0f} ({s['agreement']:+.0%}{'' if s['agrees'] else ', DISAGREE'}) |")
    lines += ["", "| target | model | windows learned/s | result |", "|---|---|---|---|"]
    lines += [f"| ≥ {TARGET:,.0f} windows learned/s (CSV source, fdfa) | {t['model']} | {t['measured']:,.0f} | "
              f"{'PASS' if t['pass'] else 'FAIL'} |" for t in targets]
    return "\n".join(lines)


def all_stages(rows: list[dict], path: str, warmup: list[Sample]) -> list[dict]:
    """Stage shares for every model x rule, each beside the plain CSV run's windows/s."""
    out = []
    for m in MODELS:
        for r in RULES:
            s = {"model": m, "rule": r, **stage_shares(m, r, path, warmup)}
            plain = next(x for x in rows if (x["model"], x["rule"], x["source"]) == (m, r, "csv"))
            s["plain_windows_per_s"] = plain["windows_per_s"]
            s["agreement"] = s["windows_per_s"] / plain["windows_per_s"] - 1
            s["agrees"] = abs(s["agreement"]) <= AGREE
            out.append(s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case instead of three")
    repeats = 1 if parser.parse_args().quick else REPEATS
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "imu.csv")
        steps = write_csv(Path(path), MIN_STEPS)
        with open_source(path, n_features=6) as src:
            memory = list(src)  # the same samples, parsed once
        warmup = memory[:WARMUP]
        sources = {"csv": lambda: open_source(path, n_features=6), "memory": lambda: memory}
        rows = [{"model": m, "rule": r, "source": s, **whole_loop(m, r, make, warmup, repeats)}
                for m in MODELS for r in RULES for s, make in sources.items()]
        stages = all_stages(rows, path, warmup)
    targets = [{"model": r["model"], "measured": r["windows_per_s"], "threshold": TARGET,
                "pass": r["windows_per_s"] >= TARGET} for r in rows if r["rule"] == "fdfa" and r["source"] == "csv"]
    print(table(rows, stages, targets, steps, repeats))
    for s in stages:
        print(f"{s['model']} {s['rule']}: {s['dominant']} dominates ({s['shares'][s['dominant']]:.0%} of the loop)")
    machine = {"cpu_model": cpu_model(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "python": platform.python_version(), "numpy": version("numpy"), "threads": 1,
               **{lib: _version(lib) for lib in ("onnxruntime", "ai-edge-litert", "tflite-runtime")}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine, "steps": steps, "window": [32, 8], "repeats": repeats,
                               "warmup_steps": WARMUP, "rows": rows, "stages": stages, "targets": targets},
                              indent=2) + "\n")
    print(f"\nwrote {OUT}")


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
