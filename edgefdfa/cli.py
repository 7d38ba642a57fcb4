"""The `edgefdfa` command. Subcommands are small functions; argparse does the parsing.

    edgefdfa demo [--out DIR] [--json]
    edgefdfa train MODEL --data SOURCE [--rule R] [--loss L] [--head N] [--window L --hop H] [--delay D]
                   [--epochs E] [--range-guard skip|clip|off] [--checkpoint FILE] [--resume] [--state-dir DIR] [--out DIR]
                   [--json] [--plot FILE]
    edgefdfa info MODEL [--head N]
    edgefdfa export CHECKPOINT --format onnx|tflite|c|c-int8|bundle --out FILE
    edgefdfa push CHECKPOINT_OR_MODEL --port PORT [--encoding f32|f16|int8|sparse] [--key FILE] [--verify]
    edgefdfa device --port PORT | --pty [--key FILE] [--model CHECKPOINT_OR_MODEL]
    edgefdfa fleet server MODEL ... | client MODEL --data SOURCE --server HOST:PORT ...  (fleet/command.py)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ConfigError, EdgeFDFAError
from .rules import RULES as RULE_NAMES


def demo(args: argparse.Namespace) -> int:
    """The main job: a smartwatch stream with a sensor shift, frozen vs adapted on the device."""
    from .demo import demo as run_demo

    summary = run_demo(Path(args.out), plot=not args.no_plot)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    s = summary["stream"]
    print(f"imu-activity on a smartwatch IMU stream: {s['steps']:,} steps of 6 channels, windows of {s['windows_of']}, "
          f"hop {s['hop']}, test-then-train.\nAt step {s['shift_at_step']:,}: {s['shift']}.\n")
    print(f"{'model':18} {'before shift':>12} {'after shift':>12} {'last 100':>9}")
    names = {"frozen": "frozen", "fdfa": "fdfa (on device)", "bp": "bp (reference)"}
    for name, m in summary["models"].items():
        print(f"{names[name]:18} {m['before_shift']:12.1%} {m['after_shift']:12.1%} {m['last_100']:9.1%}")
    m = summary["device_learning"]
    print(f"{'fdfa (by the MCU)':18} {m['before_shift']:12.1%} {m['after_shift']:12.1%} {m['last_100']:9.1%}")
    d = summary["device"]
    print(f"\npushed to an emulated device over a serial line: {d['encoding']} update of {d['payload_bytes']:,} bytes "
          f"({d['wire_bytes']:,} on the wire; float32 would be {d['f32_bytes']:,}); device answers vs the host's: "
          f"max |diff| {d['parity']:.2g}, same class on {d['same_class']:.0%} of {d['checked']} windows")
    print(f"the MCU learned by itself: {m['steps']:,} FDFA steps from LEARN frames of 4 windows' features "
          f"({m['bytes_per_sample']:.0f} bytes a window on the wire; line rates: tools/bench_device_learning.py)\n")
    for kind, path in summary["files"].items():
        print(f"{kind:7} {path}")
    if "plot_skipped" in summary:
        print(f"plot    skipped: {summary['plot_skipped']}")
    return 0


class Progress:
    """Live metrics: a tqdm bar on a terminal, a log line every `every` seconds otherwise."""

    def __init__(self, desc: str, every: float = 5.0):
        self.desc, self.every, self._last = desc, every, time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit="sample", mininterval=0.5)

    def __call__(self, snap: dict) -> None:
        score = snap.get("rolling_accuracy", snap.get("rolling_mae"))
        text = f"{'acc' if 'rolling_accuracy' in snap else 'mae'} {score:.3f} loss {snap['rolling_loss'] or float('nan'):.3f}"
        if self.bar is not None:
            self.bar.n = snap["samples"]
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(f"{self.desc}: {snap['samples']} samples, {text}, {snap['samples_per_s']:.0f}/s", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(args: argparse.Namespace) -> int:
    """Learn from a stream (serial sensor, file replay, stdin), test-then-train, with checkpoints."""
    from .export import export
    from .model import check_resumes, load, load_checkpoint
    from .online import OnlineRun, RunConfig
    from .stream import RunningNorm, Window, open_source

    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or (str(out / "checkpoint.npz") if out else None)
    state = _state_dir(args)
    if state:
        ckpt = str(state.checkpoint)
    if args.resume:
        if not ckpt or not Path(ckpt).exists():
            raise ConfigError(f"--resume needs an existing checkpoint (--checkpoint or --out); {ckpt!r} does not exist")
        model = load_checkpoint(ckpt)
        check_resumes(model, args.model, ckpt)
    else:
        options = {k: v for k, v in (("lr", args.lr), ("optimizer", args.optimizer)) if v is not None}
        model = load(args.model, head=args.head, rule=args.rule, loss=args.loss, **options)
    window, n_features = _window(model, args)
    progress = None if args.json else Progress(f"train {Path(args.model).name}")
    config = RunConfig(delay=args.delay, checkpoint=ckpt, checkpoint_every=args.checkpoint_every, drift=args.drift,
                       range_guard=args.range_guard, range_margin=args.range_margin)
    norm = RunningNorm(window.n_channels if window else n_features) if args.normalize else None
    run = OnlineRun(model, config, window, progress=progress, norm=norm,
                    **({"writer": state.write} if state else {}))
    replayable = Path(args.data).suffix.lower() in (".csv", ".npz")
    skip = 0
    if args.resume:
        run.resume(ckpt)
        skip = run.consumed if replayable else 0
    if state:
        state.log(f"resuming {state.checkpoint} at sample {run.consumed}" if args.resume
                  else f"starting {Path(args.model).name} afresh in {state.path}")
    with _signals_stop(run) as sources:
        stats = []
        for _ in range(args.epochs if replayable else 1):
            with open_source(args.data, n_features=n_features, rate=args.rate, reconnect=args.reconnect) as source:
                sources.append(source)
                print(f"edgefdfa: reading {args.data}", file=sys.stderr, flush=True)
                skip = run.run(source, skip)
                stats.append(source.stats)
            if run.stopped:
                break
        if progress:
            progress.close()
        if ckpt:
            run.save(ckpt)
    if state:
        state.log(f"{'stopped by a signal' if run.stopped else 'stream ended'} after sample {run.consumed}; "
                  f"checkpoint written")
    summary = run.summary()
    summary["source"] = _source_summary(stats)
    summary["skipped"] += summary["source"]["skipped"]
    for reason, n in summary["source"]["skipped_by"].items():
        summary["skipped_by"][reason] = summary["skipped_by"].get(reason, 0) + n
    summary["interrupted"] = run.stopped
    if ckpt:
        summary["checkpoint"] = ckpt
    if out:
        summary["exported"] = export(model, out / f"{Path(args.model).stem}-adapted{model.suffix}", model.suffix[1:])
    if args.plot:
        from .plot import plot_runs

        plot_runs(args.plot, {args.rule if not args.resume else "resumed": run}, f"{Path(args.model).name} on {args.data}")
        summary["plot"] = args.plot
    _report(summary, args.json)
    return 0


def _state_dir(args: argparse.Namespace) -> Any:
    """--state-dir: the run's checkpoint and log live there, and a run found there is resumed, so a
    service starts with the same command line every time (state_dir.py)."""
    if not args.state_dir:
        return None
    from .state_dir import StateDir

    if args.checkpoint:
        raise ConfigError("--state-dir holds the checkpoint: give --state-dir or --checkpoint, not both")
    state = StateDir(args.state_dir)
    if state.removed:
        state.log(f"removed {len(state.removed)} half-written file(s) of an interrupted write", "warning")
    if state.resumable:  # train()'s check_resumes refuses a run of another model file
        args.resume = True
    return state


@contextlib.contextmanager
def _signals_stop(run: Any) -> Iterator[list]:
    """SIGINT and SIGTERM end `run` after its current sample, for as long as the block runs. The
    handler only sets flags (a handler runs inside whatever the main thread was doing, maybe holding a
    lock): the loop stops, the block closes the source and writes the final checkpoint."""
    sources: list = []  # the block appends each source it opens

    def on_signal(signum, frame):
        run.stop()
        if sources:
            sources[-1].request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield sources
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _source_summary(stats: list) -> dict:
    by: dict[str, int] = {}
    for s in stats:
        for reason, n in s.skipped_by.items():
            by[reason] = by.get(reason, 0) + n
    return {"read": sum(s.read for s in stats), "skipped": sum(s.skipped for s in stats), "skipped_by": by,
            "first_skipped": [dataclasses.asdict(r) for s in stats for r in s.reports][:5],
            "lost": next((s.lost_reason for s in stats if s.lost_reason), None),
            "reconnects": sum(s.reconnects for s in stats)}


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=1, default=float))
        return
    name = "accuracy" if "accuracy" in summary else "mae"
    value = summary[name]
    print(f"{summary['samples']} samples scored, {summary['learned']} learned, {summary['skipped']} skipped"
          + (f" ({', '.join(f'{k} {v}' for k, v in summary['skipped_by'].items())})" if summary["skipped_by"] else ""))
    if value is not None:
        print(f"prequential {name} {value:.3f} (last {summary['rolling_' + name]:.3f}), "
              f"mean loss {summary['loss'] or float('nan'):.4f}, {summary['samples_per_s']:.0f} samples/s")
    for event in summary["events"]:
        print(f"{event['kind']} at sample {event['sample']}: {event['detail']}")
    if summary["source"]["lost"]:
        print(f"source lost: {summary['source']['lost']}")
    for key in ("checkpoint", "exported", "plot"):
        if key in summary:
            print(f"{key}: {summary[key]}")


def info(args: argparse.Namespace) -> int:
    """Inputs and outputs (with quantization), operators, the head and where it stops, and the split
    load() makes: also for a file load() refuses, then with why."""
    from collections import Counter

    from .errors import BadModelError
    from .formats.base import FORMS
    from .model import FORMATS, backend_module, format_module, load

    path = Path(args.model)
    if path.suffix.lower() not in FORMATS:
        raise BadModelError(f"{path.name}: unknown model format {path.suffix!r}; edgefdfa reads {', '.join(FORMATS)}")
    fmt = format_module(path.suffix.lower())
    desc = fmt.describe(fmt.read(path)[0], path.name)
    extras = ", ".join(f"{k} {v}" for k, v in desc.details.items())
    print(f"model    {path.name} ({desc.format}{', ' + extras if extras else ''})")
    for kind, tensors in (("input", desc.inputs), ("output", desc.outputs)):
        for t in tensors:
            q = f" quantized: scale {t.quantization[0]:.6g}, zero point {t.quantization[1]}" if t.quantization else ""
            print(f"{kind:8} {t.name} {_shape(t.shape)} {t.dtype}{q}")
    ops = Counter(desc.operators)
    print(f"ops      {len(desc.operators)}: " + ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()))
    print(f"head     {len(desc.head)} dense layer(s) at the end of the model")
    for line in desc.head:
        print(f"  {line}")
    print(f"         {desc.stop}")
    try:
        model = load(path, head=args.head)
    except BadModelError as exc:
        print(f"load     refused: {exc}")
        return 2
    backbone = (f"backbone in {backend_module(model.suffix).NAME} -> {_shape(model.split.head_input.shape)}"
                if model.split.backbone is not None else "no backbone")
    print(f"split    {backbone} -> head of {len(model.split.head)} dense layer(s)"
          + (" -> softmax" if model.split.softmax else ""))
    total = 0
    for l, layer in enumerate(model.split.head):
        n_out, n_in = layer.W.shape
        total += layer.W.size + layer.b.size
        print(f"  head {l}  {layer.where:32} {n_in:>5} -> {n_out:<5} {layer.activation:8} "
              f"{layer.W.size + layer.b.size:>8,} params  {FORMS[layer.form]}")
    print(f"trainable parameters {total:,}")
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    """A checkpoint (of a model or a plain learner) to a model file, C header or bundle."""
    from .export import export
    from .model import load_checkpoint

    print(export(load_checkpoint(args.checkpoint), args.out, args.format))
    return 0


def _shape(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def teach(args: argparse.Namespace) -> int:
    """Stream a source through the model's backbone to a device that learns the head by itself."""
    from firmware_bridge.teach import teach as teach_device
    from tqdm import tqdm

    from .head import layers_of
    from .model import load
    from .stream import open_source

    model = load(args.model, head=args.head)
    window, n_features = _window(model, args)
    key = Path(args.key).read_bytes() if args.key else None

    def samples(source):
        for sample in source:
            if window is not None:
                got = window.push(sample.x, sample.y)
                if got is None:
                    continue
                x, y = got
            else:
                x, y = sample.x, sample.y
            if y is not None:  # a device learns only from labelled samples
                yield model.features(x), int(y) if float(y).is_integer() else y

    with open_source(args.data, n_features=n_features, rate=args.rate) as source, \
            tqdm(desc=f"teach {Path(args.model).name}", unit="sample", disable=args.json or None) as bar:
        print(f"edgefdfa: reading {args.data}", file=sys.stderr, flush=True)
        report = teach_device(args.port, samples(source), key=key, save_every=args.save_every, save=not args.no_save,
                              baud=args.baud, timeout=args.timeout, layers=layers_of(model.head()),
                              progress=lambda n: bar.update(n - bar.n))
    if args.json:
        print(json.dumps(report.summary(), indent=1))
    else:
        print(report)
    return 0


def _window(model: Any, args: argparse.Namespace) -> tuple[Any, int]:
    """The Window a time-series model's --window asks for (or None) and the features a source step has."""
    from .stream import Window

    n_features = int(np.prod([d or 1 for d in model.sample_shape]))
    if not args.window:
        return None, n_features
    if len(model.sample_shape) != 2 or model.sample_shape[0] not in (None, args.window):
        raise ConfigError(f"--window {args.window}: the model takes samples of shape {model.sample_shape}, "
                          f"not windows of {args.window} steps x channels")
    return Window(args.window, args.hop or args.window, model.sample_shape[1]), model.sample_shape[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefdfa", description="On-device learning for edge devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the main job on the shipped defaults, no arguments needed")
    p.add_argument("--out", metavar="DIR", default="edgefdfa-demo", help="where the adapted models go (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    p.add_argument("--no-plot", action="store_true", help="skip the plot (it needs matplotlib)")
    p.set_defaults(run=demo)

    p = sub.add_parser("train", help="learn from a stream: a serial sensor, a replayed file, or stdin")
    p.add_argument("model", help="an .onnx or .tflite file")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="serial:///dev/ttyUSB0?baud=115200[&format=binary], a .csv or .npz file, or - for stdin")
    p.add_argument("--rule", default="fdfa", choices=sorted(RULE_NAMES))
    p.add_argument("--loss", default="ce", choices=("ce", "mse"))
    p.add_argument("--head", type=int, help="dense layers in the head (default: the trailing run)")
    p.add_argument("--lr", type=float, help="learning rate (default: the rule's)")
    p.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), help="default: the rule's")
    p.add_argument("--window", type=int, metavar="L", help="make windows of L steps (time-series models)")
    p.add_argument("--hop", type=int, metavar="H", help="steps between windows (default: L)")
    p.add_argument("--delay", type=int, default=0, metavar="D", help="labels arrive D samples late")
    p.add_argument("--normalize", action="store_true",
                   help="standardise each channel by its running mean and variance (fixed memory)")
    p.add_argument("--epochs", type=int, default=1, metavar="E", help="passes over a replayed file")
    p.add_argument("--rate", type=float, help="replay a file at this many samples per second")
    p.add_argument("--reconnect", action="store_true", help="wait for a lost serial device to come back")
    p.add_argument("--drift", default="report", choices=("report", "boost-lr", "reset-feedback"))
    p.add_argument("--range-guard", default="skip", choices=("skip", "clip", "off"),
                   help="a sample far outside each feature's learned range is skipped (default), clipped, or let through")
    p.add_argument("--range-margin", type=float, default=3.0, metavar="SPANS",
                   help="how far outside the learned range, in spans of it, a value may be (default %(default)s)")
    p.add_argument("--checkpoint", metavar="FILE", help="periodic and final checkpoints (default: DIR/checkpoint.npz)")
    p.add_argument("--checkpoint-every", type=float, default=300.0, metavar="S",
                   help="seconds between checkpoints (default %(default)s: gentle on an SD card)")
    p.add_argument("--state-dir", metavar="DIR", help="checkpoint, model and log of an unattended run; "
                   "resumes the run found there (the systemd unit's StateDirectory)")
    p.add_argument("--resume", action="store_true", help="continue exactly from the checkpoint")
    p.add_argument("--out", metavar="DIR", help="the checkpoint and the adapted model, in the input's format")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--plot", metavar="FILE.png", help="draw accuracy and loss over the stream")
    p.set_defaults(run=train)

    p = sub.add_parser("info", help="what a model file holds and how it splits into backbone and head")
    p.add_argument("model", help="an .onnx or .tflite file")
    p.add_argument("--head", type=int, help="dense layers in the head (default: the trailing run)")
    p.set_defaults(run=info)

    p = sub.add_parser("export", help="write a checkpoint's learned head as a model file, C header or bundle")
    p.add_argument("checkpoint", help="a .npz checkpoint written by edgefdfa")
    p.add_argument("--format", required=True, choices=("onnx", "tflite", "c", "c-int8", "bundle"))
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(run=export_cmd)

    from firmware_bridge import emulator as bridge_device
    from firmware_bridge import host as bridge_host

    from .export import head_from

    p = sub.add_parser("push", help="stream a checkpoint's or model's head to a microcontroller over serial")
    bridge_host.add_arguments(p, head_from)
    p.set_defaults(run=bridge_host.run)
    p = sub.add_parser("teach", help="stream a source through the model's backbone to a device that learns by itself")
    p.add_argument("model", help="the .onnx or .tflite file whose backbone makes the device head's inputs")
    p.add_argument("--data", required=True, metavar="SOURCE", help="as `edgefdfa train --data`")
    p.add_argument("--port", required=True, help="the device: a path or pyserial URL")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--head", type=int, help="dense layers in the head (default: the trailing run)")
    p.add_argument("--window", type=int, metavar="L", help="make windows of L steps (time-series models)")
    p.add_argument("--hop", type=int, metavar="H", help="steps between windows (default: L)")
    p.add_argument("--rate", type=float, help="replay a file at this many samples per second")
    p.add_argument("--key", help="file holding the pre-shared HMAC key of a keyed device")
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="SAVE after every N samples (default: at the end)")
    p.add_argument("--no-save", action="store_true", help="leave what the device learned unsaved (lost at its reset)")
    p.add_argument("--timeout", type=float, help="seconds to wait for a reply before resending (default: from --baud)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=teach)
    p = sub.add_parser("device", help="an emulated device serving the bridge protocol on a serial port")
    bridge_device.add_arguments(p, head_from)
    p.set_defaults(run=bridge_device.run)

    from .fleet import command as fleet

    p = sub.add_parser("fleet", help="devices learning together: federated rounds over Flower (edgefdfa[fleet])")
    fleet.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeFDFAError as exc:
        print(f"edgefdfa: error: {exc}", file=sys.stderr)
        return 2
