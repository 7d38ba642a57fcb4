"""Benchmark learning on the device (PROTOCOL.md §8): the demo's upside-down watch streamed as LEARN
frames to devices that learn the shipped imu-activity head by themselves, beside the host learning
the same stream.

The stream is the demo's (edgefdfa/demo.py): 8,000 IMU steps, the watch turned upside down at 40%,
windows of 32 hop 8 (997 windows), each turned into the head's 24 inputs by the shipped model's
frozen backbone on the host. Each device gets every window once, test-then-train, through
`firmware_bridge.teach` over a real pseudo-terminal pair, and answers with its own prediction before
each step. The devices, each present if it can be built here:

* python: the Python device (firmware_bridge/emulator.py, learning.py);
* c: the C receiver with the C kernel, built with the system compiler (tests/firmware/rx_pty_main.c);
* board: the firmware on the emulated Cortex-M3 (QEMU mps2-an385, tools/build_firmware.py), whose
  UART is a pty at QEMU's own pace.

Beside them, on the host: the frozen head and the engine's FDFA learner (edgefdfa.Learner, the same
lr, alpha and sigma, its own NumPy draws) on the same inputs. Reported per row: prequential accuracy
before and after the shift, samples/s measured end to end over the pty, bytes per sample on the wire
(both directions, frames, replies and the HELLO and SAVE included), and the samples/s a UART at 115,200
baud and at 1 Mbaud allows for those bytes (COMPUTED: 10 bits a byte, both directions serialised, an
upper bound on the wire time; the pty itself ignores the baud rate). Devices learning from the same
seed must agree: each one's INFER outputs after the stream against the Python device's, max |diff|.

    PYTHONPATH=. python tools/bench_device_learning.py [--plot bench/results/device_learning.png]

Prints a markdown table and writes bench/results/bench_device_learning.json (and the PNG: rolling
accuracy over the stream, per device and host run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefdfa.demo import HOP, MODELS, RUNS, WINDOW, imu_stream  # noqa: E402
from edgefdfa.head import image_of, layers_of  # noqa: E402
from edgefdfa.learner import Learner, LearnerConfig  # noqa: E402
from edgefdfa.model import load  # noqa: E402
from edgefdfa.stream import Window  # noqa: E402
from firmware_bridge import host  # noqa: E402
from firmware_bridge import image as img  # noqa: E402
from firmware_bridge.cable import Cable  # noqa: E402
from firmware_bridge.emulator import Device, Emulator  # noqa: E402
from firmware_bridge.learning import LearnConfig  # noqa: E402
from firmware_bridge.teach import teach  # noqa: E402

OUT = ROOT / "bench" / "results" / "bench_device_learning.json"
LR = RUNS["fdfa"]["lr"]
ROLLING = 100


def watch_stream() -> tuple[list[tuple[np.ndarray, int]], int, object]:
    """(the head's inputs and labels of every window, how many windows end before the shift, the model)."""
    model = load(MODELS / "imu-activity.onnx")
    samples, shift = imu_stream()
    window, stream, early = Window(WINDOW, HOP, 6), [], 0
    for k, s in enumerate(samples):
        got = window.push(s.x, s.y)
        if got is not None:
            stream.append((model.features(got[0]), int(got[1])))
            early += k < shift
    return stream, early, model


@contextlib.contextmanager
def python_device(model) -> Iterator[str]:
    head = model.head()
    with Cable() as cable:
        emulator = Emulator(cable.device, Device(layers_of(head), image_of(head), max_frame=512,
                                                 learn=LearnConfig(lr=LR))).start()
        try:
            yield cable.host
        finally:
            emulator.stop()


def host_fdfa(model, stream) -> list[int]:
    """The engine's FDFA learner on the same inputs, test-then-train: its predictions."""
    head = model.head()
    sizes = [head[0].W.shape[1]] + [d.W.shape[0] for d in head]
    learner = Learner(LearnerConfig(sizes=tuple(sizes), activations=tuple(d.activation for d in head), rule="fdfa",
                                    lr=LR))
    learner.net.params[:] = image_of(head)
    predictions = []
    for x, y in stream:
        predictions.append(int(learner.predict_one(x)))
        learner.learn_one(x, y)
    return predictions


def row(name: str, right: np.ndarray, early: int, **extra) -> dict:
    return dict(name=name, before_shift=float(right[:early].mean()), after_shift=float(right[early:].mean()),
                last_100=float(right[-ROLLING:].mean()), **extra)


def run_device(name: str, opened, model, stream, early, check) -> tuple[dict, np.ndarray, np.ndarray]:
    """(its row, its INFER outputs on `check` after the stream, whether each prediction was right)."""
    with opened as port:
        report = teach(port, stream, layers=layers_of(model.head()))
        outputs = host.infer(port, check)
    right = np.array(report.predictions) == np.array([y for _, y in stream])
    wire = report.bytes_per_sample
    return row(name, right, early, samples_per_s=report.rate, bytes_per_sample=wire,
               uart_115200_per_s=115200 / 10 / wire, uart_1m_per_s=1e6 / 10 / wire, steps=report.steps,
               frames=report.frames, saves=report.saves), outputs, right


def plot(path: Path, curves: dict[str, np.ndarray], early: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    kernel = np.ones(ROLLING) / ROLLING
    for name, right in curves.items():
        ax.plot(np.arange(ROLLING, len(right) + 1), np.convolve(right, kernel, "valid"), label=name)
    ax.axvline(early, color="black", ls="--", lw=1)
    ax.annotate("watch turned upside down", (early, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                va="bottom", ha="right")
    ax.set_xlabel("windows (test-then-train)")
    ax.set_ylabel(f"rolling accuracy ({ROLLING})")
    ax.set_title("imu-activity head learning by itself on the device, beside the host")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", default=str(OUT.with_name("device_learning.png")), help="PNG path ('' for none)")
    args = parser.parse_args()
    stream, early, model = watch_stream()
    labels = np.array([y for _, y in stream])
    head, layers = image_of(model.head()), layers_of(model.head())
    check = np.array([x for x, _ in stream[-50:]])
    rows, curves = [], {}
    frozen = np.array([int(np.argmax(img.forward(head, layers, x))) for x, _ in stream]) == labels
    rows.append(row("host: frozen head", frozen, early))
    curves["frozen"] = frozen.astype(float)
    fdfa = np.array(host_fdfa(model, stream)) == labels
    rows.append(row("host: engine FDFA", fdfa, early))
    curves["host FDFA"] = fdfa.astype(float)
    reference = None
    for name, opened in devices(model):
        result, outputs, right = run_device(name, opened, model, stream, early, check)
        reference = outputs if reference is None else reference
        result["vs_python_device"] = float(np.abs(outputs - reference).max())
        rows.append(result)
        curves[f"device: {name}"] = right.astype(float)
    print(f"| run | before shift | after shift | last {ROLLING} | samples/s (pty) | bytes/sample | "
          "samples/s at 115,200 | at 1 Mbaud | outputs vs python device |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        line = f"| {r['name']} | {r['before_shift']:.3f} | {r['after_shift']:.3f} | {r['last_100']:.3f} |"
        if "samples_per_s" in r:
            line += (f" {r['samples_per_s']:,.0f} | {r['bytes_per_sample']:.1f} | {r['uart_115200_per_s']:,.0f} | "
                     f"{r['uart_1m_per_s']:,.0f} | {r['vs_python_device']:.2g} |")
        else:
            line += " | | | | |"
        print(line)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dict(machine=platform.machine(), windows=len(stream), early=early, lr=LR, rows=rows),
                              indent=1))
    if args.plot:
        plot(Path(args.plot), curves, early)
        print(f"plot: {args.plot}")
    print(f"wrote {OUT}")
    return 0


def devices(model):
    """(name, context manager yielding the host's port) of every device this machine can run."""
    yield "python", python_device(model)


if __name__ == "__main__":
    raise SystemExit(main())
