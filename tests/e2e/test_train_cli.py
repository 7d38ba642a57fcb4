"""`edgefdfa train` end to end: a pseudo-terminal plays an IMU sensor sending CSV lines, with bad
lines mixed in; the run adapts, counts what it skipped, and a stopped-and-resumed run (or one killed
outright) ends with exactly the weights of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa import checkpoint
from edgefdfa.datasets import load
from child_output import read_until

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "imu-activity.onnx"
pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs POSIX pseudo-terminals")


def sensor_lines(n_series: int = 8):
    """(lines, good_index): CSV lines of 6 IMU channels + label, with bad ones mixed in; for each line,
    the index of the good sample it carries, or None."""
    ds = load("basicmotions")
    good = [(ds.X_test[i][:, t], int(ds.y_test[i])) for i in range(n_series) for t in range(100)]
    bad = {50: "1,2,3,nan,5,6,0", 120: "1,2,3,4,0", 200: "garbage,\xff,1,2,3,4,0", 333: "0,0,0,0,0,inf,1",
           410: "1,2,3,4,5,6,7,8", 500: "0.1,0.2,0.3,0.4,0.5,0.6,9"}  # 9: not a class of this model
    lines, index = [], []
    for k, (x, y) in enumerate(good):
        if k in bad:
            lines.append(bad[k])
            index.append(None)
        lines.append(",".join(f"{v:.6g}" for v in x) + f",{y}")
        index.append(k)
    return lines, index


class Trainer:
    """`edgefdfa train` reading from a fresh pty whose master side we write, as the sensor."""

    def __init__(self, *args):
        self.master, slave = os.openpty()
        port = os.ttyname(slave)
        os.close(slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefdfa", "train", str(MODEL), "--data", f"serial://{port}?baud=115200",
             "--window", "32", "--hop", "8", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        read_until(self.proc.stderr, "reading")

    def send(self, lines):
        os.write(self.master, b"\n")  # the first line after a connect may be partial: the source drops it
        for i in range(0, len(lines), 40):
            os.write(self.master, ("\n".join(lines[i:i + 40]) + "\n").encode("utf-8", "surrogateescape"))
            time.sleep(0.01)

    def unplug(self) -> dict:
        time.sleep(0.5)
        os.close(self.master)
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        return json.loads(out)


def final_params(path):
    return edgefdfa.load_checkpoint(path).learner.net.params


def test_sensor_stream_adapts_and_counts_bad_lines(tmp_path):
    lines, _ = sensor_lines()
    trainer = Trainer("--out", str(tmp_path), "--delay", "2")
    trainer.send(lines)
    summary = trainer.unplug()
    assert summary["source"]["skipped_by"] == {"nan/inf": 2, "field count": 2, "unparsable": 1}
    assert summary["source"]["lost"]  # the unplugged sensor ended the run cleanly
    assert summary["skipped"] == 5 + 1  # the source's five, and the label of a class the model lacks
    assert summary["skipped_by"]["label outside the classes"] == 1
    assert summary["samples"] == (800 - 32) // 8 + 1 and summary["learned"] == summary["samples"] - 2
    assert summary["accuracy"] > 0.8
    before = edgefdfa.load(MODEL).learner.net.params
    assert not np.array_equal(final_params(tmp_path / "checkpoint.npz"), before)
    adapted = edgefdfa.load(tmp_path / "imu-activity-adapted.onnx")  # the exported model learned too
    assert np.allclose(adapted.learner.net.params, final_params(tmp_path / "checkpoint.npz"))


def test_stopped_and_resumed_run_ends_with_the_same_weights(tmp_path):
    lines, index = sensor_lines()
    whole = Trainer("--checkpoint", str(tmp_path / "whole.npz"), "--delay", "3")
    whole.send(lines)
    whole.unplug()

    ckpt = str(tmp_path / "parts.npz")
    first = Trainer("--checkpoint", ckpt, "--delay", "3")
    first.send(lines[:500])
    time.sleep(1.0)
    first.proc.send_signal(signal.SIGTERM)  # finishes the current sample, writes the final checkpoint
    out, err = first.proc.communicate(timeout=60)
    assert first.proc.returncode == 0, err
    consumed = checkpoint.load(ckpt)[1]["run"]["consumed"]
    assert 0 < consumed
    resume_at = next(i for i, k in enumerate(index) if k is not None and k >= consumed)
    second = Trainer("--checkpoint", ckpt, "--delay", "3", "--resume")
    second.send(lines[resume_at:])  # the sensor goes on from where the checkpoint says the run was
    second.unplug()
    assert final_params(ckpt).tobytes() == final_params(tmp_path / "whole.npz").tobytes()


def test_killed_file_replay_resumes_exactly(tmp_path):
    lines, _ = sensor_lines(4)
    data = tmp_path / "imu.csv"
    data.write_text("acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,label\n" + "\n".join(lines) + "\n",
                    encoding="utf-8", errors="surrogateescape")
    common = [sys.executable, "-m", "edgefdfa", "train", str(MODEL), "--data", str(data), "--window", "32",
              "--hop", "8", "--delay", "1", "--normalize", "--json", "--epochs", "2"]
    whole = subprocess.run([*common, "--checkpoint", str(tmp_path / "whole.npz")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    ckpt = tmp_path / "killed.npz"
    proc = subprocess.Popen([*common, "--checkpoint", str(ckpt), "--checkpoint-every", "0.2", "--rate", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ckpt.exists() or checkpoint.load(ckpt)[1]["run"]["consumed"] < 300:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no final checkpoint, only the last periodic one
    proc.wait()
    resumed = subprocess.run([*common, "--checkpoint", str(ckpt), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert final_params(ckpt).tobytes() == final_params(tmp_path / "whole.npz").tobytes()
