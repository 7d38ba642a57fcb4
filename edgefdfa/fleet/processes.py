"""Flower's own processes on this machine: a SuperLink, SuperNodes and `flwr run`, each in its own
process group so that stopping one stops the helpers it started (SuperExec, app processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

APP = Path(__file__).resolve().parent / "app"  # the Flower App directory `flwr run` bundles
BIN = Path(sys.executable).parent  # flower-superlink and friends sit beside this Python


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(home: Path) -> dict[str, str]:
    """Flower's settings live in `home` (FLWR_HOME); no update check; our bin first on PATH (the
    SuperLink starts `flower-superexec` by name)."""
    return {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def toml(values: dict[str, Any]) -> str:
    """Flat key = value lines (strings as basic strings, which JSON's quoting writes)."""
    def value(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v if isinstance(v, (int, float)) else str(v))
    return "".join(f"{k} = {value(v)}\n" for k, v in values.items())


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml(values))
    return path


def connection(home: Path, address: str, insecure: bool = True, root_certificates: str | None = None) -> None:
    """The Flower Configuration (FLWR_HOME/config.toml) naming the SuperLink `flwr run` submits to."""
    home.mkdir(parents=True, exist_ok=True)
    tls = "insecure = true\n" if insecure else f"root-certificates = {json.dumps(root_certificates or '')}\n"
    (home / "config.toml").write_text(f'[superlink]\ndefault = "fleet"\n\n[superlink.fleet]\n'
                                      f"address = {json.dumps(address)}\n{tls}")


def start(args: list[str], home: Path, log: IO | None) -> subprocess.Popen:
    """One of Flower's commands, by name from BIN, in a new process group."""
    return subprocess.Popen([str(BIN / args[0]), *args[1:]], env=environment(home), stdout=log,
                            stderr=subprocess.STDOUT if log is not None else None, start_new_session=True)


def superlink(port: int, home: Path, log: IO | None, tls: list[str] | None = None) -> subprocess.Popen:
    """A SuperLink serving its Fleet, Control and runtime APIs on `port` (insecure unless `tls`
    gives --ssl-certfile/--ssl-keyfile/--ssl-ca-certfile arguments)."""
    return start(["flower-superlink", *(tls or ["--insecure"]), "--port", str(port),
                  "--disable-runtime-dependency-installation"], home, log)


def supernode(address: str, port: int, node_config: Path, home: Path, log: IO | None,
              tls: list[str] | None = None) -> subprocess.Popen:
    """A SuperNode joined to the SuperLink at `address`, its ClientApp API on `port`."""
    return start(["flower-supernode", *(tls or ["--insecure"]), "--superlink", address, "--port", str(port),
                  "--node-config", str(node_config)], home, log)


def submit(run_config: Path, home: Path, log: IO | None, app: Path = APP) -> subprocess.Popen:
    """`flwr run` of the fleet's app (or another Flower App directory) on the configured SuperLink,
    streaming the ServerApp's log."""
    return start(["flwr", "run", str(app), "fleet", "--stream", "--run-config", str(run_config)], home, log)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process's group, then SIGKILL it if it has not ended within `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
