"""`edgefdfa fleet server|client`: thin wrappers over Flower's own commands.

    edgefdfa fleet server MODEL [--rounds R] [--strategy fedavg|trimmed-mean] [--min-nodes N]
                          [--held-out FILE.npz] [--feedback] [--port P] [--out DIR] [--resume] [--json] [--plot FILE]
        starts `flower-superlink` and submits the fleet's app with `flwr run`; one line per round
    edgefdfa fleet client MODEL --data SOURCE --server HOST:PORT [--state DIR] [--samples N]
                          [--window L --hop H] [--rule R] [--lr LR] [--port P] [--json] [--plot FILE]
        starts `flower-supernode` for this device; one line per round it takes part in

The global head is saved after every round as DIR/global.npz (a checkpoint: `edgefdfa export`,
`edgefdfa push`) and exported as DIR/<model>-fleet.<suffix>.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..rules import RULES

STRATEGY_NAMES = ("fedavg", "trimmed-mean")
RESTART_PAUSE = 2.0  # seconds before a client starts its ended SuperNode again


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("server", help="a SuperLink and the fleet's ServerApp: rounds of federated averaging")
    p.add_argument("model", help="the .onnx or .tflite file every device runs")
    p.add_argument("--rounds", type=int, default=10, help="rounds in all, counting those done before a --resume")
    p.add_argument("--strategy", default="fedavg", choices=STRATEGY_NAMES,
                   help="fedavg: weighted by samples learned; trimmed-mean: robust to a device gone bad")
    p.add_argument("--beta", type=float, default=0.2, help="trimmed-mean: the share cut at each end")
    p.add_argument("--min-nodes", type=int, default=2, metavar="N", help="devices a round waits for")
    p.add_argument("--held-out", metavar="FILE.npz", help="X (n, *sample shape), y (n,): the global head is scored on it")
    p.add_argument("--feedback", action="store_true", help="share FDFA's feedback matrices too (see README)")
    p.add_argument("--port", type=int, default=9092, help="the SuperLink's port (Fleet, Control and runtime APIs)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="how long a round waits for replies")
    p.add_argument("--out", metavar="DIR", default="edgefdfa-fleet", help="global head, history (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from DIR's last saved global head")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--plot", metavar="FILE.png", help="draw held-out accuracy over the rounds")
    p.set_defaults(run=server)

    p = sub.add_parser("client", help="a SuperNode: this device learns from its stream and joins the rounds")
    p.add_argument("model", help="an .onnx or .tflite file (the server's)")
    p.add_argument("--data", required=True, metavar="SOURCE", help="as `edgefdfa train --data` takes it")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="the SuperLink's address")
    p.add_argument("--state", metavar="DIR", default="edgefdfa-device", help="checkpoint and history (default %(default)s)")
    p.add_argument("--samples", type=int, default=200, metavar="N", help="samples learned per round")
    p.add_argument("--window", type=int, metavar="L", help="make windows of L steps (time-series models)")
    p.add_argument("--hop", type=int, metavar="H", help="steps between windows (default: L)")
    p.add_argument("--rule", default="fdfa", choices=sorted(RULES))
    p.add_argument("--lr", type=float, help="learning rate (default: the rule's)")
    p.add_argument("--port", type=int, default=9094, help="the SuperNode's own ClientApp API port")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--plot", metavar="FILE.png", help="draw this device's accuracy on its stream over the rounds")
    p.set_defaults(run=client)


def server(args: argparse.Namespace) -> int:
    """A SuperLink on --port, the app submitted to it, followed round by round until it ends."""
    from . import processes

    out = Path(args.out).resolve()
    if (out / "state.json").exists() and not args.resume:
        raise ConfigError(f"{out} holds a fleet's rounds already: add --resume to continue it, or choose another --out")
    if args.resume and not (out / "state.json").exists():
        raise ConfigError(f"--resume: {out} holds no saved global head")
    home = out / "flower"
    processes.connection(home, f"127.0.0.1:{args.port}")
    run_config = processes.write_toml(home / "run.toml", {
        "model": str(Path(args.model).resolve()), "out": str(out), "rounds": args.rounds, "strategy": args.strategy,
        "min-nodes": args.min_nodes, "feedback": args.feedback, "beta": args.beta, "timeout": args.timeout,
        "held-out": str(Path(args.held_out).resolve()) if args.held_out else ""})
    history = out / "rounds.jsonl"
    seen = _lines(history)
    with open(home / "superlink.log", "ab") as link_log, open(home / "run.log", "ab") as run_log:
        link = processes.superlink(args.port, home, link_log)
        started = [link]
        restore = _stop_on_signals(lambda: [processes.stop(p) for p in reversed(started)])
        try:
            _wait_for_port(args.port, link)
            started.append(processes.submit(run_config, home, run_log))
            progress = None if args.json else _print_round("fleet server")
            _follow(started[1], history, seen, progress)
            status = started[1].returncode
        finally:
            restore()
            for p in reversed(started):
                processes.stop(p)
    rounds = _records(history)[seen:]
    summary = {"rounds": rounds, "out": str(out), "global": str(out / "global.npz"), "strategy": args.strategy,
               "run_exit": status, "log": str(home / "run.log")}
    if args.plot:
        from ..plot import plot_rounds

        scored = [(r["round"], r["accuracy"]) for r in _records(history) if "accuracy" in r]
        plot_rounds(args.plot, {"global head": scored}, f"fleet of {Path(args.model).name}: held-out accuracy")
        summary["plot"] = args.plot
    _report(summary, args.json)
    return 0 if status == 0 else 1


def client(args: argparse.Namespace) -> int:
    """A SuperNode for this device, followed round by round until it ends (SIGINT/SIGTERM stop it)."""
    from . import processes

    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    data = args.data if "://" in args.data or args.data == "-" else str(Path(args.data).resolve())
    node_config = processes.write_toml(state / "node.toml", {
        "model": str(Path(args.model).resolve()), "data": data, "state": str(state), "samples": args.samples,
        "window": args.window or 0, "hop": args.hop or 0, "rule": args.rule, "lr": args.lr or 0})
    history = state / "rounds.jsonl"
    first = seen = _lines(history)
    progress = None if args.json else _print_round(f"fleet client {state.name}")
    stopped, node = [], None  # a signal appends to `stopped` and stops the SuperNode running now
    restarts = 0

    def on_signal() -> None:
        stopped.append(True)
        if node is not None:
            processes.stop(node)

    with open(state / "supernode.log", "ab") as node_log:
        restore = _stop_on_signals(on_signal)
        try:
            while True:  # a SuperNode ends when its SuperLink goes away: start it again, the device's
                # state is in its checkpoint (as systemd's Restart=always would on a real device)
                node = processes.supernode(args.server, args.port, node_config, state / "flower", node_log)
                seen = _follow(node, history, seen, progress)
                if stopped:
                    break
                restarts += 1
                print(f"fleet client {state.name}: flower-supernode ended ({node.returncode}); starting it again",
                      file=sys.stderr, flush=True)
                time.sleep(RESTART_PAUSE)
        finally:
            restore()
            processes.stop(node)
    rounds = _records(history)[first:]
    summary = {"rounds": rounds, "learned": sum(r["num-examples"] for r in rounds), "supernode_restarts": restarts,
               "checkpoint": str(state / "checkpoint.npz"), "log": str(state / "supernode.log")}
    if args.plot:
        from ..plot import plot_rounds

        plot_rounds(args.plot, {state.name: [(r["round"], r["accuracy"]) for r in _records(history)]},
                    f"{Path(args.model).name} on {args.data}: accuracy on the stream, per round")
        summary["plot"] = args.plot
    _report(summary, args.json)
    return 0


def _follow(proc, history: Path, seen: int, progress: Callable[[dict], None] | None) -> int:
    """Show each new line of `history` as it comes, until `proc` ends; how many lines it holds then."""
    shown = seen
    while True:
        done = proc.poll() is not None
        lines = _records(history)
        for line in lines[shown:]:
            if progress:
                progress(line)
        shown = len(lines)
        if done:
            return shown
        time.sleep(0.5)


def _print_round(desc: str) -> Callable[[dict], None]:
    """One stderr line per round (a round is the fleet's unit of progress)."""
    def show(line: dict) -> None:
        parts = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in line.items()
                 if k in ("accuracy", "num-examples", "consumed", "bytes", "bytes-sparse")]
        for key in ("refused", "failed"):
            if line.get(key):
                parts.append(f"{key} " + ", ".join(f"node {r['node']} ({r['reason']})" for r in line[key]))
        print(f"{desc}: round {line['round']}: " + ", ".join(parts), file=sys.stderr, flush=True)
    return show


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _lines(path: Path) -> int:
    return len(_records(path))


def _wait_for_port(port: int, proc, timeout: float = 60.0) -> None:
    """Until something listens on localhost:port; the process ending first is a ConfigError."""
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise ConfigError(f"flower-superlink ended with code {proc.returncode} (port {port} in use?)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ConfigError(f"flower-superlink did not open port {port} within {timeout:.0f} s")


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGINT/SIGTERM call `stop` (the Flower processes end, and with them the loop); returns what
    puts the handlers back."""
    previous = {sig: signal.signal(sig, lambda signum, frame: stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]


def _report(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=1, default=float))
        return
    rounds = summary["rounds"]
    if not rounds:
        print("no round recorded")
    else:
        print(f"rounds {rounds[0]['round']} to {rounds[-1]['round']}; the last: {json.dumps(rounds[-1])}")
    for key in ("global", "checkpoint", "plot", "log"):
        if key in summary:
            print(f"{key}: {summary[key]}")
