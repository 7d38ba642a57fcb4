"""The main job on the shipped defaults: a smartwatch IMU stream whose sensor placement changes
part-way, the frozen model against the same model adapting on the device.

The 80 BasicMotions recordings (6 channels: accelerometer and gyroscope x, y, z) are replayed in
a seeded order as one continuous stream and cut into windows of 32 steps, hop 8. After 40% of the
stream the watch is strapped on upside down: the x and y axes of both sensors are reversed. Three
copies of the shipped imu-activity model see the same windows, test-then-train: frozen, adapted
with FDFA, and adapted with BP as the reference. The FDFA-adapted head is then written into both
shipped model files and a C header, and each file is run in its interpreter to check its answers.
Then it is pushed as a sparse int8 delta over a serial line (a pair of pseudo-terminals) to an
emulated microcontroller holding the shipped head, whose answers are checked against the host's.
Last, a second emulated microcontroller with the shipped head learns by itself (PROTOCOL.md §8):
the host's backbone turns the same stream into the head's inputs, streamed to it as LEARN frames,
and the device's own test-then-train predictions are scored as the host's are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import datasets
from .atomic import atomic_write
from .errors import ConfigError
from .export import export
from .formats import tflite as tflite_format
from .head import Dense, image_of, layers_of, size
from .model import EdgeModel, backend_module, load
from .online import OnlineRun, RunConfig
from .stream import Sample, Window

MODELS = Path(__file__).resolve().parent / "models"  # shipped inside the package (models/ links here)
WINDOW, HOP, SHIFT_AT = 32, 8, 0.4
FLIP = np.array([-1, -1, 1, -1, -1, 1], np.float32)  # upside down: x and y of acc and gyro reversed
RUNS = {"frozen": dict(learn=False), "fdfa": dict(rule="fdfa", lr=0.05), "bp": dict(rule="bp", lr=0.05)}


@dataclass
class Result:
    name: str
    before: float  # prequential accuracy before the shift
    after: float  # ... after it
    last: float  # rolling accuracy at the end of the stream
    run: OnlineRun


def imu_stream(seed: int = 0) -> tuple[list[Sample], int]:
    """Every recording, in a seeded order, as one step-by-step stream; the index where the shift starts."""
    ds = datasets.load("basicmotions")
    series = np.concatenate([ds.X_train, ds.X_test])  # (80, 6, 100)
    labels = np.concatenate([ds.y_train, ds.y_test])
    steps = []
    for i in np.random.default_rng(seed).permutation(len(series)):
        steps += [(series[i][:, t], int(labels[i])) for t in range(series.shape[2])]
    shift = int(len(steps) * SHIFT_AT)
    samples = [Sample(x * FLIP if k >= shift else x.copy(), y, float(k)) for k, (x, y) in enumerate(steps)]
    return samples, shift


def run_one(name: str, samples: list[Sample], shift: int, path: Path) -> Result:
    options = dict(RUNS[name])
    learn = options.pop("learn", True)
    model = load(path, **options)
    run = OnlineRun(model, RunConfig(learn=learn, rolling=100), Window(WINDOW, HOP, 6))
    run.run(samples[:shift])
    n_before, acc_before = run.metrics.n, run.metrics.snapshot()["accuracy"]
    run.run(samples[shift:])
    snap = run.metrics.snapshot()
    after = (snap["accuracy"] * snap["samples"] - acc_before * n_before) / (snap["samples"] - n_before)
    return Result(name, acc_before, after, snap["rolling_accuracy"], run)


def write_adapted(model: EdgeModel, out: Path, check: list[np.ndarray]) -> dict[str, str]:
    """The adapted head in both shipped formats and as a C header; each file checked in its interpreter."""
    files = {"onnx": out / "imu-activity-adapted.onnx", "tflite": out / "imu-activity-adapted.tflite",
             "c": out / "imu_activity_head.h"}
    export(model, files["onnx"], "onnx")
    source = (MODELS / "imu-activity.tflite").read_bytes()  # same backbone and head layout as the .onnx
    with atomic_write(files["tflite"]) as f:
        f.write(tflite_format.write_head(source, [(d.W, d.b) for d in model.head()], "imu-activity.tflite"))
    export(model, files["c"], "c")
    expected = np.array([model.output_one(x) for x in check])
    for fmt in ("onnx", "tflite"):
        session = backend_module(f".{fmt}").Session(files[fmt].read_bytes(), name=files[fmt].name)
        got = np.array([session.run(x[None]).ravel() for x in check])
        if not np.allclose(got, expected, atol=1e-5):
            raise AssertionError(f"{files[fmt].name} disagrees with the engine by {np.abs(got - expected).max():.2e}")
    return {k: str(v) for k, v in files.items()}


def push_to_device(model: EdgeModel, factory: list[Dense], check: list[np.ndarray]) -> dict:
    """Push the adapted head to an emulated device that holds `factory`; its answers on `check`."""
    from firmware_bridge import host
    from firmware_bridge.cable import Cable
    from firmware_bridge.emulator import Device, Emulator
    from firmware_bridge.protocol import model_id

    layers = layers_of(factory)
    images = {(model_id(layers), 0): image_of(factory)}  # the host knows the device's factory weights
    with Cable() as cable:
        emulator = Emulator(cable.device, Device(layers, image_of(factory))).start()
        try:
            report = host.push(cable.host, model.head(), encoding="sparse", images=images, verify=True)
            features = [model.features(x) for x in check]
            device = np.array([host.infer(cable.host, f) for f in features])
        finally:
            emulator.stop()
    host_answers = np.array([model.output_one(x) for x in check])
    return dict(encoding=report.encoding, payload_bytes=report.payload_bytes, wire_bytes=report.wire_bytes,
                f32_bytes=4 * size(layers), parity=report.parity, vs_float_head=report.drift,
                same_class=float(np.mean(device.argmax(1) == host_answers.argmax(1))), checked=len(check))


def device_learns(frozen: EdgeModel, samples: list[Sample], shift: int) -> dict:
    """An emulated microcontroller holding the shipped head learns the whole stream by itself over a
    serial line; its prequential accuracy before and after the shift, scored as run_one scores."""
    from firmware_bridge.cable import Cable
    from firmware_bridge.emulator import Device, Emulator
    from firmware_bridge.learning import LearnConfig
    from firmware_bridge.teach import teach

    window, stream, late = Window(WINDOW, HOP, 6), [], 0
    for k, s in enumerate(samples):
        got = window.push(s.x, s.y)
        if got is not None:
            stream.append((frozen.features(got[0]), int(got[1])))
            late += k >= shift
    head = frozen.head()
    with Cable() as cable:
        device = Device(layers_of(head), image_of(head), max_frame=512, learn=LearnConfig(lr=RUNS["fdfa"]["lr"]))
        emulator = Emulator(cable.device, device).start()
        try:
            report = teach(cable.host, stream, layers=layers_of(head))
        finally:
            emulator.stop()
    right = np.array(report.predictions) == np.array([y for _, y in stream])
    early = len(stream) - late
    return dict(before_shift=float(right[:early].mean()), after_shift=float(right[early:].mean()),
                last_100=float(right[-100:].mean()), steps=report.steps, saves=report.saves,
                bytes_per_sample=report.bytes_per_sample, frames=report.frames)


def demo(out: Path, plot: bool = True) -> dict:
    samples, shift = imu_stream()
    path = MODELS / "imu-activity.onnx"
    results = [run_one(name, samples, shift, path) for name in RUNS]
    out.mkdir(parents=True, exist_ok=True)
    windows = [np.stack([s.x for s in samples[k - WINDOW:k]]) for k in range(len(samples) - 200, len(samples), 20)]
    files = write_adapted(results[1].run.model, out, windows)
    device = push_to_device(results[1].run.model, results[0].run.model.head(), windows)
    summary = {
        "stream": dict(steps=len(samples), windows_of=WINDOW, hop=HOP, shift_at_step=shift,
                       shift="watch strapped on upside down: x and y axes of both sensors reversed"),
        "models": {r.name: dict(before_shift=r.before, after_shift=r.after, last_100=r.last,
                                drift_points=[e["scored"] for e in r.run.events if e["kind"] == "drift"])
                   for r in results},
        "files": files,
        "device": device,
        "device_learning": device_learns(results[0].run.model, samples, shift),
    }
    if plot:
        from .plot import plot_runs

        shift_window = (shift - WINDOW) // HOP + 1  # windows scored before the first shifted step
        try:
            plot_runs(str(out / "demo.png"), {r.name: r.run for r in results},
                      "imu-activity on a smartwatch stream: frozen vs adapted on the device",
                      marks=[(shift_window, "watch turned upside down")])
            summary["files"]["plot"] = str(out / "demo.png")
        except ConfigError as exc:  # no matplotlib: the demo's numbers stand without the picture
            summary["plot_skipped"] = str(exc)
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    return summary
