"""Benchmark the firmware bridge: bytes on the wire per encoding, protocol efficiency, line time.

For the shipped imu-activity and digits heads and for a 784-256-256-10 head it pushes the head, in
every encoding (f32, f16, int8 = per channel, int8-tensor), over two real pseudo-terminals joined
by a relay thread to the Python emulator (firmware_bridge.emulator), and reads what the push did:
payload bytes (the encoded update), wire bytes (every byte written and read on the port, both
directions), frames each way. Efficiency = payload bytes / wire bytes.

Sparse, the realistic case: the device holds the head as loaded (an f32 push, so the host mirrors
it); the host then learns 1,000 samples online (FDFA, default settings: imu on its held-out windows,
digits on load("digits"), the 784 head on load("mnist5k"), cycling) and pushes the learned head
with encoding "sparse"; then an f32 push of the same learned head gives the ratio. The device's
INFER is compared with the host on real inputs: parity = max |device - host decode of the update|
(PROTOCOL.md §4: host and device decode bit for bit, so the tolerance is 0) and drift = max
|device - the host's float head| (informational). The encoding's tolerance on the weights
(PROTOCOL.md §4: q = rint(Δ / scale), scale = max|Δ| / 127 per tensor, so a delta that fits the
slot leaves every weight within scale / 2 = max|Δ| / 254 of the host's) is checked on the
device's active image, tensor by tensor.

Line time is COMPUTED, not paced (pseudo-terminals ignore the baud rate): a UART sends 10 bits a
byte (start, 8 data, stop), and both directions are counted as if serialised (an upper bound for a
full-duplex UART, where chunk ACKs travel back while chunks go out), plus a turnaround per blocking
round trip (HELLO, BEGIN, COMMIT; chunk ACKs overlap the go-back-N window) of --turnaround-ms,
0 by default (device processing and USB-serial latency not modelled). The pty seconds are measured
but say nothing about a real line.

max_frame is the emulator's default (1024) unless the head's INFER does not fit it (784 inputs:
12 + 4 × 784 bytes); then 4096, the protocol's largest (PROTOCOL.md §2).

    PYTHONPATH=. python tools/bench_bridge.py [--turnaround-ms MS]

Prints a markdown table and writes bench/results/bench_bridge.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import threading
import time
import tty
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

import edgefdfa
from edgefdfa.datasets import load as load_data
from edgefdfa.export import head_of
from edgefdfa.formats.base import Dense
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.emulator import Device, Emulator
from firmware_bridge.frame import OVERHEAD
from firmware_bridge.link import open_port
from firmware_bridge.protocol import model_id

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "bench_bridge.json"
BAUDS = (115_200, 1_000_000)
BITS_PER_BYTE = 10  # UART 8N1: start + 8 data + stop
SAMPLES = 1000  # samples learned online before the sparse push
N_CHECK = 4  # real inputs the device's INFER is checked on
ENCODINGS = ("f16", "int8", "int8-tensor", "f32")  # pushes of the head as loaded; f32 last: the sparse base
TARGET_EFFICIENCY, TARGET_RATIO = 0.95, 10.0
WINDOW, RETRIES = 8, 5  # host.push's window; retries bound every wait (push's timeout follows max_frame)


@dataclass
class Case:
    """One head to push: its layers as loaded, a learner of them, and what it learns from / is checked on."""

    name: str
    learner: Any  # edgefdfa.Learner or EdgeModel: learn_one(x, y), head_of(...)
    train: tuple[np.ndarray, np.ndarray]  # (samples, labels) cycled for learning
    check: np.ndarray  # (N_CHECK, ...) raw model inputs for INFER


def cases() -> Iterator[Case]:
    from tools.make_models import held_out

    X, y = held_out("imu-activity")
    yield Case("imu-activity.onnx", edgefdfa.load(ROOT / "models" / "imu-activity.onnx"), (X, y), X[:N_CHECK])
    ds = load_data("digits")
    yield Case("digits.onnx", edgefdfa.load(ROOT / "models" / "digits.onnx"), (ds.X_train, ds.y_train),
               ds.X_test[:N_CHECK])
    ds = load_data("mnist5k")
    yield Case("784-256-256-10", edgefdfa.MLP([784, 256, 256, 10], seed=0), (ds.X_train, ds.y_train),
               ds.X_test[:N_CHECK])


# --- two real ptys and a relay (as tests/bridge/conftest.py joins host and emulator) ---------------

class Pty:
    """One pty: the relay owns the master; `path` is the slave a serial port opens (held open, raw)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Relay:
    """Copies bytes between the host's pty and the device's until closed; no faults."""

    def __init__(self) -> None:
        self.host, self.device = Pty(), Pty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        other = {self.host.master: self.device.master, self.device.master: self.host.master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(other), [], [], 0.02)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                    while data:
                        data = data[os.write(other[fd], data):]
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.host.close()
        self.device.close()


class CountingPort:
    """A pyserial port that counts frames (0x00 delimiters) written and read; all else passes through."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self.frames_out = self.frames_in = 0

    def write(self, data: bytes) -> int | None:
        self.frames_out += bytes(data).count(0)
        return self._port.write(data)

    def read(self, n: int = 1) -> bytes:
        data = self._port.read(n)
        self.frames_in += data.count(0)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


@contextmanager
def rig(head: Sequence[Dense], max_frame: int) -> Iterator[tuple[CountingPort, Emulator]]:
    """A relay, an emulated device holding `head` (its factory weights) and the host's open port."""
    relay = Relay()
    emulator = Emulator(relay.device.path, Device(img.layers_of(head), img.image_of(head), max_frame=max_frame)).start()
    port = CountingPort(open_port(relay.host.path))
    try:
        yield port, emulator
    finally:
        port.close()
        emulator.stop()
        relay.close()


# --- measuring ---------------------------------------------------------------------------------

def line_seconds(wire_bytes: int, round_trips: int, baud: int, turnaround: float) -> float:
    """Computed line time: every wire byte at 10 bits, serialised, plus a turnaround per blocking round trip."""
    return wire_bytes * BITS_PER_BYTE / baud + round_trips * turnaround


def measured_push(port: CountingPort, head: Sequence[Dense], encoding: str, images: dict, max_frame: int,
                  turnaround: float) -> dict:
    """One real push and what it cost: bytes, frames, efficiency, computed line times."""
    out0, in0 = port.frames_out, port.frames_in
    report = host.push(port, head, encoding=encoding, window=WINDOW, retries=RETRIES, images=images)
    frames_out, frames_in = port.frames_out - out0, port.frames_in - in0
    chunk_frames = math.ceil(report.payload_bytes / (max_frame - OVERHEAD - 4)) + report.resends
    round_trips = frames_out - chunk_frames  # HELLO_REQ, BEGIN, COMMIT (more if any were resent)
    row = {"encoding": report.encoding, "update_id": f"{report.update_id:08x}", "payload_bytes": report.payload_bytes,
           "wire_bytes": report.wire_bytes, "frames_out": frames_out, "frames_in": frames_in,
           "round_trips": round_trips, "resends": report.resends,
           "efficiency": report.payload_bytes / report.wire_bytes,
           "pty_seconds_measured": report.seconds}
    for baud in BAUDS:
        row[f"line_s_{baud}"] = line_seconds(report.wire_bytes, round_trips, baud, turnaround)
    return row


def parity(port: CountingPort, row: dict, images: dict, head: Sequence[Dense], inputs: np.ndarray) -> dict:
    """The device's INFER on real head inputs against the host: the host's decode of the update it
    pushed (its mirror, `images`) and the float head it pushed."""
    layers = img.layers_of(head)
    expected, target = images[(model_id(layers), int(row["update_id"], 16))], img.image_of(head)
    dev = np.array([host.infer(port, x, timeout=1.0, retries=RETRIES) for x in inputs])
    mine = np.array([img.forward(expected, layers, x) for x in inputs])
    floats = np.array([img.forward(target, layers, x) for x in inputs])
    return {"parity": float(np.abs(dev - mine).max()), "drift": float(np.abs(dev - floats).max()),
            "output_range": float(np.abs(floats).max())}


def weight_tolerance(held: np.ndarray, target: np.ndarray, base: np.ndarray, layers) -> dict:
    """PROTOCOL.md §4 sparse tolerance per tensor: |held - target| <= scale / 2, scale = max|target - base| / 127."""
    worst, ok = 0.0, True
    for h, t, b in zip(img.tensors(held, layers), img.tensors(target, layers), img.tensors(base, layers)):
        half_step = float(np.abs(t - b).max()) / 254
        err = float(np.abs(h - t).max())
        slack = 1e-6 * float(np.abs(t).max()) + 1e-12  # one float32 multiply and add (§4)
        ok &= err <= half_step + slack
        worst = max(worst, err / half_step if half_step > 0 else 0.0)
    return {"weights_within_half_step": bool(ok), "worst_error_in_half_steps": worst}


def learn(case: Case) -> None:
    X, y = case.train
    for i in range(SAMPLES):
        case.learner.learn_one(X[i % len(X)], y[i % len(X)])


def head_inputs(case: Case) -> np.ndarray:
    """What the head sees for the check inputs: a shipped model's features, a plain MLP's raw input."""
    if isinstance(case.learner, edgefdfa.EdgeModel):
        return np.array([case.learner.features(x) for x in case.check])
    return np.asarray(case.check, np.float32).reshape(len(case.check), -1)


def bench(case: Case, turnaround: float) -> dict:
    loaded = head_of(case.learner)[0]
    layers = img.layers_of(loaded)
    max_frame = 1024 if OVERHEAD + 4 * max(layers[0].n_in, layers[-1].n_out) <= 1024 else 4096
    rows, images = [], {}
    t0 = time.monotonic()
    with rig(loaded, max_frame) as (port, emulator):
        inputs = head_inputs(case)
        for encoding in ENCODINGS:  # the head as loaded
            row = measured_push(port, loaded, encoding, images, max_frame, turnaround)
            row.update(parity(port, row, images, loaded, inputs), when="as loaded")
            rows.append(row)
        base = emulator.device.weights.copy()  # the f32 push: the device holds the head as loaded
        learn(case)
        learned = head_of(case.learner)[0]
        target = img.image_of(learned)
        inputs = head_inputs(case)
        sparse = measured_push(port, learned, "sparse", images, max_frame, turnaround)
        held = emulator.device.weights.copy()
        sparse.update(parity(port, sparse, images, learned, inputs), when=f"after {SAMPLES} samples")
        sparse.update(weight_tolerance(held, target, base, layers))
        n_tensors = 2 * len(layers)
        sparse["nonzero"] = (sparse["payload_bytes"] - 8 * n_tensors) // 5
        sparse["changed"] = int(np.count_nonzero(target != base))
        rows.append(sparse)
        full = measured_push(port, learned, "f32", images, max_frame, turnaround)
        full.update(parity(port, full, images, learned, inputs), when=f"after {SAMPLES} samples")
        rows.append(full)
    for row in rows:
        row["head"] = case.name
    return {"head": case.name, "layers": [[l.n_out, l.n_in, l.activation] for l in layers], "max_frame": max_frame,
            "slot_size": 4 * img.size(layers), "parameters": img.size(layers), "rows": rows,
            "ratio_f32_over_sparse": full["wire_bytes"] / sparse["wire_bytes"], "seconds": time.monotonic() - t0}


def check_targets(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        f32 = next(row for row in r["rows"] if row["encoding"] == "f32" and row["when"] == "as loaded")
        out.append({"target": f"f32 efficiency >= {TARGET_EFFICIENCY:.0%}", "head": r["head"],
                    "measured": f"{f32['efficiency']:.2%}", "pass": f32["efficiency"] >= TARGET_EFFICIENCY})
        sparse = next(row for row in r["rows"] if row["encoding"] == "sparse")
        ok = (r["ratio_f32_over_sparse"] >= TARGET_RATIO and sparse["parity"] == 0
              and sparse["weights_within_half_step"])
        out.append({"target": f"sparse >= {TARGET_RATIO:.0f}x smaller than f32 after {SAMPLES} samples, "
                              "parity in tolerance", "head": r["head"], "pass": ok,
                    "measured": f"{r['ratio_f32_over_sparse']:.2f}x; parity {sparse['parity']:.3g}; weights within "
                                f"½ step: {sparse['weights_within_half_step']}"})
    return out


def table(results: list[dict], targets: list[dict], turnaround: float) -> str:
    note = (f"Real pushes over two ptys + relay to the Python emulator (window {WINDOW}). Line time COMPUTED, not "
            f"paced: wire bytes (both directions, serialised) x {BITS_PER_BYTE} bits / baud + {turnaround * 1e3:g} ms "
            f"x blocking round trips (RT). Efficiency = payload / wire bytes. parity = max|device - host decode| "
            f"(tolerance 0, §4); drift = max|device - host float head| (informational).")
    header = ("| head | max_frame | encoding | when | payload B | wire B | frames out/in | RT | efficiency | "
              "115,200 baud s | 1 Mbaud s | pty s (measured) | parity | drift |")
    lines = [note, "", header, "|" + "---|" * 14]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['head']} | {r['max_frame']} | {row['encoding']} | {row['when']} | "
                         f"{row['payload_bytes']:,} | {row['wire_bytes']:,} | {row['frames_out']}/{row['frames_in']} | "
                         f"{row['round_trips']} | {row['efficiency']:.2%} | {row['line_s_115200']:.3f} | "
                         f"{row['line_s_1000000']:.4f} | {row['pty_seconds_measured']:.3f} | {row['parity']:.3g} | "
                         f"{row['drift']:.3g} |")
    lines += ["", ("| head | params | sparse nonzero / changed | f32 ÷ sparse wire | "
                   "sparse worst weight error (½ steps) |"), "|---|---|---|---|---|"]
    for r in results:
        s = next(row for row in r["rows"] if row["encoding"] == "sparse")
        lines.append(f"| {r['head']} | {r['parameters']:,} | {s['nonzero']:,} / {s['changed']:,} | "
                     f"{r['ratio_f32_over_sparse']:.2f}x | {s['worst_error_in_half_steps']:.3f} |")
    lines += ["", "| target | head | measured | result |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['head']} | {t['measured']} | {'PASS' if t['pass'] else 'FAIL'} |" for t in targets]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turnaround-ms", type=float, default=0.0,
                        help="latency charged per blocking round trip in the computed line time (default 0)")
    args = parser.parse_args()
    turnaround = args.turnaround_ms / 1e3
    results = [bench(case, turnaround) for case in cases()]
    targets = check_targets(results)
    print(table(results, targets, turnaround))
    method = {"line_time": "computed, not paced: wire_bytes * 10 / baud + round_trips * turnaround",
              "bits_per_byte": BITS_PER_BYTE, "turnaround_s": turnaround, "bauds": list(BAUDS),
              "wire_bytes": "every byte written and read on the host's port during the push, both directions",
              "round_trips": "non-CHUNK requests (HELLO_REQ, BEGIN, COMMIT); chunk ACKs overlap the window",
              "samples_learned": SAMPLES, "window": WINDOW,
              "sparse_tolerance": "parity 0 (bit-exact decode, §4); "
                                  "|w_device - w_host| <= max|Δ|/254 per tensor (§4)"}
    machine = {"platform": platform.platform(), "python": platform.python_version(), "numpy": version("numpy"),
               "pyserial": version("pyserial")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine, "method": method, "heads": results, "targets": targets},
                              indent=2, default=str) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
