"""The shipped systemd unit (deploy/edgefdfa.service): it passes `systemd-analyze verify`, and its
ExecStart line, expanded as systemd expands it from deploy/edgefdfa.env, learns from a serial sensor
(a pty), stops cleanly on SIGTERM, and resumes from its state directory when started again unchanged,
ending with exactly the weights of an uninterrupted run. Log lines carry journald's priority prefix."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgefdfa
from edgefdfa import checkpoint
from edgefdfa.datasets import load
from child_output import read_until

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edgefdfa.service"
ENV = ROOT / "deploy" / "edgefdfa.env"
MODEL = ROOT / "edgefdfa" / "models" / "imu-activity.onnx"
EXECUTABLE = "/opt/edgefdfa/.venv/bin/edgefdfa"  # where the README installs it on a Pi
pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs POSIX pseudo-terminals")


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def environment() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def exec_start(env: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: ${VAR} is one word, $VAR splits on whitespace."""
    words = []
    for word in unit_values("ExecStart")[0].split():
        if m := re.fullmatch(r"\$\{(\w+)\}", word):
            words.append(env[m[1]])
        elif m := re.fullmatch(r"\$(\w+)", word):
            words.extend(env[m[1]].split())
        else:
            words.append(word)
    return words


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs Debian's systemd (systemd-analyze)")
def test_the_unit_file_passes_systemd_analyze_verify(tmp_path):
    # systemd checks that the program and the environment file exist: point both into this checkout
    unit = tmp_path / "edgefdfa.service"
    unit.write_text(UNIT.read_text().replace(EXECUTABLE, str(Path(sys.executable).with_name("edgefdfa")))
                    .replace("/etc/default/edgefdfa", str(ENV)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_the_unit_runs_unattended():
    """Restart on failure, the serial group, a state directory the command line uses, SIGTERM to stop."""
    assert unit_values("Restart") == ["on-failure"]
    assert unit_values("SupplementaryGroups") == ["dialout"]
    assert unit_values("StateDirectory") == ["edgefdfa"]
    assert unit_values("KillSignal") == ["SIGTERM"]
    assert "--state-dir ${STATE_DIRECTORY}" in unit_values("ExecStart")[0]
    assert unit_values("ExecStart")[0].startswith(EXECUTABLE + " train ")


def imu_lines() -> list[str]:
    ds = load("basicmotions")
    return [",".join(f"{v:.6g}" for v in ds.X_test[i][:, t]) + f",{int(ds.y_test[i])}"
            for i in range(6) for t in range(100)]


class Service:
    """The unit's command line, as systemd would start it, reading a fresh pty we write as the sensor."""

    def __init__(self, state: Path):
        self.master, slave = os.openpty()
        port = os.ttyname(slave)
        os.close(slave)
        env = {**environment(), "EDGEFDFA_MODEL": str(MODEL), "EDGEFDFA_DATA": f"serial://{port}?baud=115200",
               "STATE_DIRECTORY": str(state)}
        argv = exec_start(env)
        assert argv[0] == EXECUTABLE
        self.proc = subprocess.Popen([sys.executable, "-m", "edgefdfa", *argv[1:]], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "JOURNAL_STREAM": "8:1234"})  # as systemd sets it
        self.log = read_until(self.proc.stderr, "reading")


    def send(self, lines: list[str]) -> None:
        os.write(self.master, b"\n")  # the first line after a connect may be partial: the source drops it
        for i in range(0, len(lines), 40):
            os.write(self.master, ("\n".join(lines[i:i + 40]) + "\n").encode())
            time.sleep(0.01)
        time.sleep(0.5)

    def stop(self) -> str:
        """SIGTERM, as `systemctl stop` sends it; the run must end by itself with rc 0."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        os.close(self.master)
        assert self.proc.returncode == 0, err
        return err


def test_the_service_command_line_stops_on_sigterm_and_resumes_from_its_state_dir(tmp_path):
    lines = imu_lines()
    whole = Service(tmp_path / "whole")
    whole.send(lines)
    whole.stop()

    first = Service(tmp_path / "state")
    assert "<6>edgefdfa: starting imu-activity.onnx afresh" in first.log
    first.send(lines[:250])
    err = first.stop()
    assert "<6>edgefdfa: stopped by a signal after sample 250; checkpoint written" in err
    consumed = checkpoint.load(tmp_path / "state" / "checkpoint.npz")[1]["run"]["consumed"]
    assert consumed == 250

    second = Service(tmp_path / "state")  # the same command line: no --resume
    assert "<6>edgefdfa: resuming" in second.log and "at sample 250" in second.log
    second.send(lines[consumed:])
    second.stop()

    final = edgefdfa.load_checkpoint(tmp_path / "state" / "checkpoint.npz").learner.net.params
    assert final.tobytes() == edgefdfa.load_checkpoint(tmp_path / "whole" / "checkpoint.npz").learner.net.params.tobytes()
    log = (tmp_path / "state" / "train.log").read_text()
    assert log.count("resuming") == 1 and log.count("stopped by a signal") == 2
    assert [p.suffix for p in (tmp_path / "state" / "models").iterdir()] == [".onnx"]  # the model, once
