"""Benchmark the engine's per-sample `learn_one` against PyTorch and the memory-traffic bound.

For a 64-128-10 network (digits) and a 784-256-256-10 network (MNIST-5k) it times one online step
(batch 1, softmax cross-entropy, plain SGD) of this engine's fdfa, dfa and bp rules and of PyTorch
BP (nn.Linear+ReLU stack, CrossEntropyLoss, zero_grad/backward/step per sample), on the same rows.
The memory-traffic bound is what NumPy needs, in the same run, to read and write the parameter
bytes three times (three np.copyto passes over a float32 array of the parameter count): what a
step that reads W forward, writes a gradient and applies it must move. The fused SGD path writes
no gradient (W is read forward, then read and written once by BLAS ger), so on a network whose
weights dominate the step, x_bound below 1 is possible.

The call floor is the other bound, the one that holds small networks: the bare sequence of
NumPy/BLAS calls one fdfa step makes (input copy and finiteness check, draws, forward with
tangents, softmax error in Python floats, hidden errors, feedback update, fused SGD) on
preallocated arrays, from one flat Python function with every array bound in advance: no learner,
no checks, no Python structure. It is what the calls themselves cost; the engine's distance
from it is the cost of its Python structure. "guard" is the part of fdfa's step that keeps a
diverging step from being applied (DivergedError): its checks alone, timed the same way. Everything runs on one thread (BLAS and torch pinned).

Timing: all implementations of a network run in one process, taking turns in blocks of BLOCK
steps, so that drift of a shared machine hits them alike and the ratios hold; medians per step.

Memory: each configuration also runs in a fresh process. After imports and data loading its peak-RSS
mark is reset (Linux /proc/self/clear_refs), so "peak" is the peak while learning and "learner"
is what building and stepping the learner added on top (its arrays, the library's first-use
buffers, autograd's graph). "import" is the peak RSS of a bare process that only imported numpy
(and torch, for torch rows). The launcher imports neither, so ru_maxrss, which Linux carries over
from the launcher through exec, stays below every worker's.

"ort" is ONNX Runtime's on-device training (onnxruntime-training-cpu 1.19.2: artifacts with SGD and
cross-entropy made by onnxruntime.training.artifacts from an ONNX Gemm/Relu graph of the same net; one
intra-op and one inter-op thread in the Module's SessionOptions), the strongest peer at batch 1.
"c-floor" is the compiled step's own floor: tools/bench_learn_floor.c runs edgefdfa_learn_step in a C
loop (the extension's compiler flags, u drawn in advance), so the Python overhead of fdfa's learn_one is the
difference. The script runs in a virtual environment of its own under ~/.cache (VENV), made on first
use with the pinned packages (PINS) and re-entered by the script itself.

    PYTHONPATH=. python tools/bench_engine.py [--quick]

Prints a markdown table and writes bench/results/bench_engine.json.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ[_var] = "1"

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the launcher itself never imports numpy: see the docstring
    import numpy as np

NETS = {"64-128-10": ("digits", [64, 128, 10]), "784-256-256-10": ("mnist5k", [784, 256, 256, 10])}
IMPLS = ("fdfa", "dfa", "bp", "torch-bp", "ort", "bound", "floor", "guard")
VENV = Path.home() / ".cache" / "edgefdfa-ort-training"
PINS = ["onnxruntime-training-cpu==1.19.2", "torch==2.13.0", "onnx==1.17.0", "scipy"]
ROOT = Path(__file__).resolve().parents[1]
TARGETS = [  # (description, net, measure, threshold): fdfa's speedup must reach it, its x_bound stay under it
    ("fdfa >= 10x faster than torch BP", "64-128-10", "speedup_vs_torch", 10.0),
    ("fdfa >= 5x faster than torch BP", "784-256-256-10", "speedup_vs_torch", 5.0),
    ("fdfa within 2.5x of the memory bound", "784-256-256-10", "x_bound", 2.5),
    ("fdfa >= 3x ONNX Runtime training's steps/s", "64-128-10", "speedup_vs_ort", 3.0),
    ("fdfa >= 3x ONNX Runtime training's steps/s", "784-256-256-10", "speedup_vs_ort", 3.0),
    ("fdfa peak RSS <= 1/3 of ONNX Runtime training's", "64-128-10", "rss_vs_ort", 1 / 3),
    ("fdfa peak RSS <= 1/3 of ONNX Runtime training's", "784-256-256-10", "rss_vs_ort", 1 / 3),
    ("fdfa >= 20x faster than torch BP", "64-128-10", "speedup_vs_torch", 20.0),
]
AT_MOST = {"x_bound", "rss_vs_ort"}  # measures a target bounds from above
WARMUP = 300
BLOCK = 100  # steps per implementation before the next one takes over (interleaved timing)
RSS_STEPS = 300  # steps a memory worker takes before reading its peak RSS
OUT = Path(__file__).resolve().parents[1] / "bench" / "results" / "bench_engine.json"
Step = Callable[[int], Any]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_model() -> str:
    """The CPU's name: platform.processor() is empty on most Linux systems, /proc/cpuinfo is not."""
    cpuinfo = Path("/proc/cpuinfo")
    pairs = [ln.split(":", 1) for ln in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])]
    info = {kv[0].strip(): kv[1].strip() for kv in reversed(pairs) if len(kv) == 2}  # first occurrence wins
    return info.get("model name") or info.get("Model") or platform.processor()  # x86 | Raspberry Pi


def time_steps(step: Step, n: int) -> list[float]:
    """Run `step(i)` WARMUP times untimed, then n times, each timed alone; microseconds."""
    for i in range(WARMUP):
        step(i)
    times = []
    for i in range(WARMUP, WARMUP + n):
        t0 = time.perf_counter_ns()
        step(i)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return times


def engine_step(rule: str, sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    import edgefdfa

    learner = edgefdfa.MLP(sizes, rule=rule, loss="ce", optimizer="sgd", lr=0.01, alpha=0.003, seed=0)
    rows, labels = list(X), y.tolist()
    return lambda i: learner.learn_one(rows[i % len(rows)], labels[i % len(rows)])


def torch_step(sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])  # no ReLU on the logits
    loss_fn, opt = torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.01)
    xs, ys = torch.from_numpy(X).split(1), torch.from_numpy(y).split(1)

    def step(i: int) -> Any:
        opt.zero_grad()
        loss = loss_fn(model(xs[i % len(xs)]), ys[i % len(ys)])
        loss.backward()
        opt.step()
        return loss

    return step


def ort_step(sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    """ONNX Runtime on-device training: SGD + cross-entropy artifacts for the same Gemm/Relu net,
    one thread in and between ops; one Module call and one Optimizer step per sample."""
    import tempfile

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.training import artifacts
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    rng = np.random.default_rng(0)
    nodes, inits, params, h = [], [], [], "x"
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = np.sqrt(6.0 / n_in)
        inits += [numpy_helper.from_array(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32), f"W{l}"),
                  numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{l}")]
        params += [f"W{l}", f"b{l}"]
        out = "logits" if l == len(sizes) - 2 else f"a{l}"
        nodes.append(helper.make_node("Gemm", [h, f"W{l}", f"b{l}"], [out], transB=1))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"h{l}"]))
            h = f"h{l}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder = Path(tempfile.mkdtemp(prefix="ort-artifacts-"))
    artifacts.generate_artifacts(model, requires_grad=params, loss=artifacts.LossType.CrossEntropyLoss,
                                 optimizer=artifacts.OptimType.SGD, artifact_directory=folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    state = CheckpointState.load_checkpoint(str(folder / "checkpoint"))
    module = Module(str(folder / "training_model.onnx"), state, str(folder / "eval_model.onnx"),
                    session_options=options)
    optimizer = Optimizer(str(folder / "optimizer_model.onnx"), module)
    optimizer.set_learning_rate(0.01)
    module.train()
    rows, labels = [x[None, :] for x in X.astype(np.float32)], [np.array([t], np.int64) for t in y]

    def step(i: int) -> Any:
        loss = module(rows[i % len(rows)], labels[i % len(rows)])
        optimizer.step()
        module.lazy_reset_grad()
        return loss

    return step


def c_floor(sizes: list[int], X: np.ndarray, y: np.ndarray, n: int) -> dict:
    """tools/bench_learn_floor.c built with the extension's flags (Python's CFLAGS, then setup.py's)
    and run on the same rows: µs per step."""
    import re
    import sysconfig
    import tempfile

    import numpy as np

    flags = re.search(r"extra_compile_args=\[([^]]*)\]", (ROOT / "setup.py").read_text()).group(1)
    exe = Path(tempfile.mkdtemp(prefix="learn-floor-")) / "floor"
    c_dir = ROOT / "firmware_bridge" / "c"
    subprocess.run(["cc", *sysconfig.get_config_var("CFLAGS").split(), *(f.strip().strip('"') for f in flags.split(",")),
                    f"-I{c_dir}",
                    str(ROOT / "tools" / "bench_learn_floor.c"), str(c_dir / "edgefdfa_learn.c"), "-lm", "-o",
                    str(exe)], check=True)
    data = X.astype("<f4").tobytes() + y.astype("<i4").tobytes()
    out = subprocess.run([str(exe), str(n), *map(str, sizes)], input=data, capture_output=True, check=True).stdout
    return json.loads(out)


def bound_step(sizes: list[int]) -> Step:
    import numpy as np

    n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    src, dst = np.ones(n_params, dtype=np.float32), np.zeros(n_params, dtype=np.float32)

    def step(i: int) -> None:
        for _ in range(3):
            np.copyto(dst, src)

    return step


def floor_step(sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    """The NumPy/BLAS calls of one fdfa + SGD step (relu hidden layers, identity output, softmax
    cross-entropy), straight-line on arrays bound in advance; BLAS by position as edgefdfa.blas does."""
    import math

    import numpy as np
    from scipy.linalg.blas import saxpy, sdot, sger, sscal

    f32 = np.float32
    rng = np.random.default_rng(0)
    L, K = len(sizes) - 1, sizes[-1]
    W = [rng.uniform(-0.05, 0.05, (n_out, n_in)).astype(f32) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    WT, b = [w.T for w in W], [np.zeros((1, n), f32) for n in sizes[1:]]
    b1 = [v[0] for v in b]
    x = np.zeros(sizes[0], f32)
    A = [np.zeros((2, n), f32) for n in sizes[1:]]  # activity and tangent rows of a_l
    H = [np.zeros((2, n), f32) for n in sizes[1:-1]] + [A[-1]]  # h_{l+1}; the identity output is a_{L-1}
    df = [np.zeros((1, n), f32) for n in sizes[1:-1]]
    u = [np.zeros((1, n), f32) for n in sizes[1:-1]]
    delta = [np.zeros((1, n), f32) for n in sizes[1:-1]]
    flat = np.zeros(K * sum(sizes[1:-1]), f32)
    B, offset = [], 0
    for n in sizes[1:-1]:
        B.append(flat[offset:offset + K * n].reshape(K, n))
        offset += K * n
    BT, e2 = [m.T for m in B], np.zeros((1, K), f32)
    e, y_out, d_out = e2[0], A[-1][0], A[-1][1]
    normal, dot, copyto, maximum, sign, multiply = rng.standard_normal, np.dot, np.copyto, np.maximum, np.sign, np.multiply
    zero, lr, decay, c = np.zeros((), f32), 0.01, 1 - 0.003, 0.003
    rows, labels = list(X), y.tolist()

    x2 = x[None, :]
    ap, at = [a[:1] for a in A], [a[1:] for a in A]  # row views, made once
    hp, ht = [h[:1] for h in H], [h[1:] for h in H]
    u1, delta1 = [v[0] for v in u], [v[0] for v in delta] + [e]
    h1 = [x] + [h[0] for h in H[:-1]]

    def step(i: int) -> float:
        copyto(x, rows[i % len(rows)])
        label = int(labels[i % len(rows)])
        if not math.isfinite(sdot(x, x)):
            raise ValueError("not finite")
        for v in u:
            normal(out=v, dtype=f32)
        for l in range(L):
            if l == 0:
                dot(x2, WT[0], out=ap[0])
            else:
                dot(H[l - 1], WT[l], out=A[l])
            ap[l] += b[l]
            if l < L - 1:
                maximum(ap[l], zero, out=hp[l])
                sign(hp[l], out=df[l])
                if l == 0:
                    copyto(ht[0], u[0])
                else:
                    multiply(df[l], at[l], out=ht[l])
                    ht[l] += u[l]
        logits = y_out.tolist()  # softmax error in Python floats, as the engine does for a few classes
        top = max(logits)
        p = [math.exp(v - top) for v in logits]
        total = sum(p)
        p = [v / total for v in p]
        p[label] -= 1.0
        e[:] = p
        for l in range(L - 1):
            dot(e2, B[l], out=delta[l])
            delta[l] *= df[l]
        sscal(decay, flat)
        for l in range(L - 1):
            sger(c, u1[l], d_out, 1, 1, BT[l], 1, 1, 1)
        for l in range(L):
            sger(-lr, h1[l], delta1[l], 1, 1, WT[l], 1, 1, 1)
            saxpy(delta1[l], b1[l], sizes[l + 1], -lr)
        return math.log(total) - (logits[label] - top)

    return step


def guard_step(sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    """What refusing a diverging fdfa step costs a sound one (Learner._refuse, included in fdfa's time):
    the random stream's state kept, |gradient|^2 from the deltas and activities, the feedback
    change's bound, on a learner's buffers after a real step."""
    import math

    import edgefdfa

    learner = edgefdfa.MLP(sizes, rule="fdfa", loss="ce", optimizer="sgd", lr=0.01, alpha=0.003, seed=0)
    learner.learn_one(X[0], int(y[0]))
    bt, net, rule, bits = learner.workspace.batch(1), learner.net, learner.rule, learner.rng.bit_generator

    def step(i: int) -> bool:
        state = bits.state
        return math.isfinite(net.step_sumsq(bt)) and rule.pending_sumsq(bt) < 1e30 and state is not None

    return step


def make_step(impl: str, sizes: list[int], X: np.ndarray, y: np.ndarray) -> Step:
    if impl == "torch-bp":
        return torch_step(sizes, X, y)
    if impl == "ort":
        return ort_step(sizes, X, y)
    if impl == "bound":
        return bound_step(sizes)
    if impl == "floor":
        return floor_step(sizes, X, y)
    if impl == "guard":
        return guard_step(sizes, X, y)
    return engine_step(impl, sizes, X, y)


def timing_worker(net: str, n: int) -> dict:
    """Every implementation in this one process, in alternating blocks of BLOCK steps, so that the
    machine's drift (large on shared VMs) hits them alike and the ratios hold; per-step microseconds."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from edgefdfa.datasets import load

    data, sizes = NETS[net]
    ds = load(data)
    X, y = ds.X_train, ds.y_train.astype(np.int64)
    steps = {impl: make_step(impl, sizes, X, y) for impl in IMPLS}
    for step in steps.values():
        for i in range(WARMUP):
            step(i)
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    i = WARMUP
    while len(times[IMPLS[0]]) < n:
        for impl, step in steps.items():
            for _ in range(BLOCK):
                t0 = time.perf_counter_ns()
                step(i)
                times[impl].append((time.perf_counter_ns() - t0) / 1e3)
                i += 1
    rows = {impl: {"median_us": statistics.median(t), "p90_us": statistics.quantiles(t, n=10)[-1]}
            for impl, t in times.items()}
    floor = c_floor(sizes, X, y, max(n, 3000))  # after the Python rows: the same machine state
    rows["c-floor"] = {"median_us": floor["median_us"], "p90_us": float("nan"), "refused": floor["refused"]}
    return rows


def worker(impl: str, net: str, n: int) -> dict:
    """One configuration in this fresh process: its memory (and its own timing), as a JSON-able row."""
    import numpy as np
    import numpy.random  # noqa: F401  (loaded lazily otherwise, and counted as the learner's 7 MiB)

    if "torch" in impl or impl == "ort":
        import torch

        torch.set_num_threads(1)
    if impl.startswith("idle"):  # bare-import baseline
        return {"impl": impl, "peak_rss_mib": peak_rss_mib()}
    from edgefdfa.datasets import load

    data, sizes = NETS[net]
    ds = load(data)
    X, y = ds.X_train, ds.y_train.astype(np.int64)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark to the current RSS: data loading is not the learner's
    setup = peak_rss_mib()
    step = make_step(impl, sizes, X, y)
    t = time_steps(step, n)
    median = statistics.median(t)
    return {"net": net, "impl": impl, "median_us": median, "p90_us": statistics.quantiles(t, n=10)[-1],
            "steps_per_s": 1e6 / median, "peak_rss_mib": peak_rss_mib(), "learner_rss_mib": peak_rss_mib() - setup}


def run_worker(impl: str, net: str = "", n: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, net, str(n)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_timing(net: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--timing", net, str(n)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def measure(n: int) -> tuple[dict, list[dict]]:
    """Bare-import baselines, then every net x impl; ratios against the same net's torch and bound rows."""
    imports = {lib: run_worker(f"idle-{lib}")["peak_rss_mib"] for lib in ("numpy", "torch")}
    rows = []
    for net in NETS:
        times = run_timing(net, n)  # all implementations interleaved in one process
        timed = {impl: {**run_worker(impl, net, RSS_STEPS), **times[impl]} for impl in IMPLS}
        timed["c-floor"] = {"net": net, "impl": "c-floor", **times["c-floor"], "peak_rss_mib": float("nan"),
                            "learner_rss_mib": float("nan")}
        for impl, row in timed.items():
            row["steps_per_s"] = 1e6 / row["median_us"]
            row["import_rss_mib"] = imports["torch" if impl in ("torch-bp", "ort") else "numpy"]
            row["speedup_vs_torch"] = timed["torch-bp"]["median_us"] / row["median_us"]
            row["speedup_vs_ort"] = timed["ort"]["median_us"] / row["median_us"]
            row["rss_vs_ort"] = row["peak_rss_mib"] / timed["ort"]["peak_rss_mib"]
            row["x_bound"] = row["median_us"] / timed["bound"]["median_us"]
            rows.append(row)
    return imports, rows


def check_targets(rows: list[dict]) -> list[dict]:
    out = []
    for desc, net, measure_, threshold in TARGETS:
        value = next(r for r in rows if r["net"] == net and r["impl"] == "fdfa")[measure_]
        floor = next(r for r in rows if r["net"] == net and r["impl"] == "floor")[measure_]
        ok = value <= threshold if measure_ in AT_MOST else value >= threshold
        out.append({"target": desc, "net": net, "measured": value, "threshold": threshold, "pass": ok,
                    "call_floor": floor})
    return out


def table(rows: list[dict], targets: list[dict], n: int) -> str:
    cols = [("net", "net", "s"), ("impl", "impl", "s"), ("median µs", "median_us", ".1f"), ("p90 µs", "p90_us", ".1f"),
            ("steps/s", "steps_per_s", ",.0f"), ("speedup vs torch", "speedup_vs_torch", ".2f"),
            ("speedup vs ort", "speedup_vs_ort", ".2f"),
            ("× bound", "x_bound", ".2f"), ("peak RSS MiB", "peak_rss_mib", ".1f"),
            ("import MiB", "import_rss_mib", ".1f"), ("learner MiB", "learner_rss_mib", ".1f")]
    lines = [f"learn_one, batch 1, everything on ONE thread (BLAS and torch pinned to 1): median of {n} "
             f"timed steps after {WARMUP} warm-up. bound = 3 np.copyto passes over the parameter bytes; "
             "floor = the bare NumPy/BLAS calls of one fdfa step; c-floor = edgefdfa_learn_step in a C loop; "
             "ort = ONNX Runtime on-device training.", "",
             "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format(r[key], spec) for _, key, spec in cols) + " |" for r in rows]
    lines += ["", "| target | net | measured | the call floor's | result |", "|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['net']} | {t['measured']:.2f} | {t['call_floor']:.2f} | "
              f"{'PASS' if t['pass'] else 'FAIL'} |" for t in targets]
    return "\n".join(lines)


def enter_venv() -> None:
    """Re-run this script in VENV (made with PINS on first use), the repository on its path."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], env)


def main() -> None:
    enter_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time 300 steps instead of 3000")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # impl net n: one config, JSON to stdout
    parser.add_argument("--timing", nargs=2, help=argparse.SUPPRESS)  # net n: interleaved timing, JSON to stdout
    args = parser.parse_args()
    if args.timing:
        print(json.dumps(timing_worker(args.timing[0], int(args.timing[1]))))
        return
    if args.worker:
        impl, net, n = args.worker
        print(json.dumps(worker(impl, net, int(n))))
        return
    n = 300 if args.quick else 3000
    imports, rows = measure(n)
    targets = check_targets(rows)
    print(table(rows, targets, n))
    machine = {"processor": platform.processor(), "cpu_model": cpu_model(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "python": platform.python_version(), "numpy": version("numpy"), "torch": version("torch"),
               "onnxruntime-training": version("onnxruntime-training-cpu"), "threads": 1}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine, "steps": n, "warmup": WARMUP, "import_rss_mib": imports,
                               "rows": rows, "targets": targets}, indent=2) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
