"""Benchmark per-sample inference of the shipped models through the runtime against the bare
interpreter running the whole original file, in the same run.

For every file in models/manifest.json it times, on real held-out inputs, one sample at a time:

  bare      the interpreter's own documented calls on the original file, no checks: set_tensor /
            invoke / get_tensor (TFLite), session.run (onnxruntime). The target is measured against it.
  zerocopy  the fastest way we know to call the interpreter on the original file, no checks: TFLite
            through its C++ wrapper with views held on the input and output buffers (what edgefdfa's
            backend does, see backends/tflite.py), onnxruntime through an IOBinding with the input and
            output buffers bound once. Reported beside bare, for the runtime's cost over the floor.
  session   edgefdfa's backend Session on the original file (Session.run, with its checks)
  proba     EdgeModel.predict_proba_one: input checks, then the backbone cut from the file
            (Split.backbone) in its interpreter as a feature extractor (TFLite through views held on its
            input and output buffers, onnxruntime through bound buffers; a quantized file's backbone runs
            quantized, its int8 features dequantized), then the head, which only the learner computes:
            compiled (edgefdfa/native.py: the firmware's C forward pass in an extension module) on the
            learner's weights in place, softmax included (EDGEFDFA_NATIVE=0, or no build of the module
            at install: in NumPy); a quantized file's head runs dequantized, in C as well (its int8
            features dequantized by one C table look-up, native.dequantize)
  observe   EdgeModel.observe: the same, returning (output, head features): the call a learning loop
            makes before learner.learn_one
  learn     observe + learner.learn_one: the online step

bare, zerocopy, session, proba and observe alternate call by call in one loop, so machine noise hits
them alike. Each has its own interpreter (proba and observe each their own EdgeModel), and the order is
shuffled every round, so no call runs more often than another right after a call warming its own
interpreter's buffers in the cache (a fixed rotation put observe after proba, on the same session, at
almost every round). learn runs in its own loop afterwards (it changes the weights). Everything
runs on one thread (BLAS pinned before NumPy loads, interpreters with threads=1). Overhead =
runtime / bare - 1 for proba and for observe (and / zerocopy - 1); the target is <= 10% over bare on
imu-activity, both formats and the int8 file, for both calls.

    PYTHONPATH=. python tools/bench_infer.py [--quick]

Prints a markdown table and writes bench/results/bench_infer.json.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ[_var] = "1"

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

import edgefdfa
from edgefdfa.model import backend_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_models import held_out  # real test inputs, as the manifest describes them

OUT = ROOT / "bench" / "results" / "bench_infer.json"
TARGET_MODEL, TARGET = "imu-activity", 0.10
WARMUP = 300
COLUMNS = ("bare", "zerocopy", "session", "proba", "observe")


def bare_call(data: bytes, suffix: str) -> Callable[[np.ndarray], Any]:
    """The interpreter's own calls on the file, as bare as Python allows: no checks, no copies of ours."""
    backend = backend_module(suffix)
    inner = backend._load(data, 1, "bare")  # the onnxruntime session / TFLite interpreter the backend makes
    if suffix == ".onnx":
        name, outputs = inner.get_inputs()[0].name, [inner.get_outputs()[0].name]
        return lambda x: inner.run(outputs, {name: x[None]})
    i, o = inner.get_input_details()[0]["index"], inner.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        inner.set_tensor(i, x[None])
        inner.invoke()
        return inner.get_tensor(o)

    return run


def zerocopy_call(data: bytes, suffix: str, sample_shape: tuple[int, ...]) -> Callable[[np.ndarray], Any]:
    """The interpreter on the file with its buffers bound once: write the input in place, run, copy the output."""
    backend = backend_module(suffix)
    inner = backend._load(data, 1, "zerocopy")
    if suffix == ".onnx":
        name, output = inner.get_inputs()[0].name, inner.get_outputs()[0].name
        x = np.zeros((1, *sample_shape), np.float32)  # one sample: the batch dimension may be symbolic
        y = np.zeros_like(inner.run([output], {name: x})[0])
        binding = inner.io_binding()
        binding.bind_cpu_input(name, x)
        binding.bind_output(output, "cpu", 0, y.dtype, y.shape, y.ctypes.data)

        def run_bound(sample: np.ndarray) -> np.ndarray:
            x[0] = sample
            inner.run_with_iobinding(binding)
            return y.copy()

        return run_bound
    wrapper = inner._interpreter  # see backends/tflite.py: views held across invokes, as C++ clients do
    i, o = inner.get_input_details()[0]["index"], inner.get_output_details()[0]["index"]
    x, y, invoke = wrapper.tensor(wrapper, i), wrapper.tensor(wrapper, o), wrapper.Invoke

    def run_views(sample: np.ndarray) -> np.ndarray:
        x[0] = sample
        invoke()
        return y.copy()

    return run_views


def interleaved(calls: dict[str, Callable[[np.ndarray], Any]], X: np.ndarray, n: int) -> dict[str, list[float]]:
    """WARMUP untimed rounds, then n rounds each calling every function once on the same sample (in
    an order shuffled by round); microseconds per call."""
    names, rng = list(calls), np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(WARMUP + n):
        x = X[i % len(X)]
        for k in [names[j] for j in rng.permutation(len(names))]:
            t0 = time.perf_counter_ns()
            calls[k](x)
            if i >= WARMUP:
                times[k].append((time.perf_counter_ns() - t0) / 1e3)
    return times


def learn_times(model: edgefdfa.EdgeModel, X: np.ndarray, y: np.ndarray, n: int) -> list[float]:
    learner, times = model.learner, []
    for i in range(WARMUP + n):
        t0 = time.perf_counter_ns()
        _, features = model.observe(X[i % len(X)])
        learner.learn_one(features, y[i % len(X)])
        if i >= WARMUP:
            times.append((time.perf_counter_ns() - t0) / 1e3)
    return times


def measure(path: Path, n: int) -> dict:
    X, y = held_out(path.stem)
    data = path.read_bytes()
    session = backend_module(path.suffix).Session(data, 1, path.name)
    model, other = edgefdfa.load(path, threads=1), edgefdfa.load(path, threads=1)
    calls = {"bare": bare_call(data, path.suffix), "zerocopy": zerocopy_call(data, path.suffix, X[0].shape),
             "session": lambda x: session.run(x[None]),
             "proba": model.predict_proba_one, "observe": other.observe}
    times = interleaved(calls, X, n)
    row: dict[str, Any] = {"file": path.name, "interpreter": backend_module(path.suffix).NAME}
    for k in COLUMNS:
        row[f"{k}_us"] = statistics.median(times[k])
    row["learn_us"] = statistics.median(learn_times(model, X, y, n))
    row["overhead"] = row["proba_us"] / row["bare_us"] - 1
    row["overhead_observe"] = row["observe_us"] / row["bare_us"] - 1
    row["overhead_zerocopy"] = row["proba_us"] / row["zerocopy_us"] - 1
    row["overhead_observe_zerocopy"] = row["observe_us"] / row["zerocopy_us"] - 1
    return row


def table(rows: list[dict], n: int) -> str:
    lines = [(f"Per-sample latency, median of {n} interleaved calls after {WARMUP} warm-up, one thread, real "
              "held-out inputs. bare = the interpreter's documented calls on the original file (the target's "
              "baseline); zero-copy = the same file with the input and output buffers bound once; Session.run = "
              "edgefdfa's backend session on it; proba = EdgeModel.predict_proba_one; observe = EdgeModel.observe "
              "(the cut backbone in the interpreter + the learner's head: compiled, on an int8 "
              "file's dequantized features); learn = observe + learner.learn_one. "
              "Overheads over bare (over zero-copy)."),
             "", ("| file | interpreter | bare µs | zero-copy µs | Session.run µs | proba µs | observe µs | learn µs "
                  "| proba overhead | observe overhead |"), "|" + "---|" * 10]
    lines += [f"| {r['file']} | {r['interpreter']} | {r['bare_us']:.1f} | {r['zerocopy_us']:.1f} | {r['session_us']:.1f} "
              f"| {r['proba_us']:.1f} | {r['observe_us']:.1f} | {r['learn_us']:.1f} "
              f"| {r['overhead']:+.1%} ({r['overhead_zerocopy']:+.1%}) "
              f"| {r['overhead_observe']:+.1%} ({r['overhead_observe_zerocopy']:+.1%}) |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time 300 calls instead of 10,000")
    n = 300 if parser.parse_args().quick else 10000
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    rows = [measure(ROOT / "models" / f, n) for entry in manifest["models"] for f in entry["files"]]
    targets = [{"target": f"{call} overhead <= {TARGET:.0%} over the bare interpreter on {r['file']}",
                "measured": r[key], "pass": r[key] <= TARGET}
               for r in rows if r["file"].startswith(TARGET_MODEL)
               for call, key in (("observe", "overhead_observe"), ("predict_proba_one", "overhead"))]
    print(table(rows, n))
    print("\n| target | measured | result |\n|---|---|---|")
    print("\n".join(f"| {t['target']} | {t['measured']:+.1%} | {'PASS' if t['pass'] else 'FAIL'} |" for t in targets))
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "numpy": version("numpy"), "onnxruntime": version("onnxruntime"),
               "tflite": backend_module(".tflite").NAME, "threads": 1}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine, "calls": n, "warmup": WARMUP, "rows": rows, "targets": targets},
                              indent=2) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
