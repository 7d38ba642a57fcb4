"""Power cuts: `edgefdfa train --state-dir` killed with SIGKILL at random moments, again and again on
the same state directory, each start resuming what the last one left (a device that loses power).

    python tests/e2e/power_cut_trials.py TRIALS SEED OUT_DIR

Each trial forks a child (the modules are imported once, so a start costs no import time) that runs the
service's command line with a checkpoint after every sample, and kills it: every other trial after a
random delay up to the time a start takes to reach its 20th checkpoint here (measured first), the
others up to 0.3 s after the start's first new checkpoint (so that starts progress whatever the load). A child
that ends any other way than by the kill (e.g. it found its state unloadable) is a failure. At the end
the state directory's checkpoint must equal, array for array, an uninterrupted run over as many samples:
nothing a kill interrupted leaves a trace. Prints one JSON line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgefdfa import checkpoint, cli, model_store  # noqa: E402
from edgefdfa.datasets import load  # noqa: E402

MODEL = ROOT / "edgefdfa" / "models" / "digits.onnx"


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    path.write_text("\n".join(",".join(f"{v:.6g}" for v in x) + f",{int(t)}" for x, t in zip(X, y)) + "\n")


def train(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(["train", str(MODEL), *args, "--json"])


def child(state: Path, data: Path) -> None:
    """The service's command line, in a forked child that the parent kills; never returns."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        rc = cli.main(["train", str(MODEL), "--data", str(data), "--state-dir", str(state),
                       "--checkpoint-every", "0", "--epochs", "1000"])
    except BaseException:
        rc = 3
    os._exit(rc)


def calibrate(state: Path, data: Path) -> float:
    """Seconds from a start to its 20th checkpoint on this machine now (start-up dominates): kills are
    spread over that span, so they land in start-up, in resuming, in learning and in writing."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(state, data)
    ckpt = state / "checkpoint.npz"
    while not ckpt.exists() or checkpoint.load(ckpt)[1]["run"]["consumed"] < 20:
        assert time.monotonic() - t0 < 120, "the calibration run wrote no 20th checkpoint in 120 s"
        time.sleep(0.02)
    span = time.monotonic() - t0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return span


def inode(path: Path) -> int | None:
    """Each atomic write renames a new file over the old one: a new inode means a new checkpoint."""
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def wait_for_new_checkpoint(path: Path, before: int | None, pid: int) -> None:
    end = time.monotonic() + 120
    while inode(path) == before and time.monotonic() < end and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.005)


def comparable(path: Path) -> dict:
    """What decides the run's future: every array (the model's bytes put back) and the learner's counters."""
    arrays, meta = checkpoint.load(path)
    model_store.attach(arrays, meta, path)
    run = {k: v for k, v in meta["run"].items() if k != "events"}
    return {"arrays": {k: v.tobytes() for k, v in sorted(arrays.items())},
            "learner": {k: meta[k] for k in ("rng", "n_seen", "n_updates")}, "run": run}


def main() -> int:
    trials, seed, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    ds = load("digits")
    X, y = ds.X_test, ds.y_test
    data = out / "digits.csv"
    write_csv(data, X, y)
    state = out / "state"
    rng = np.random.default_rng(seed)
    span = calibrate(out / "calibration", data)
    failures, killed, temporaries, consumed = [], 0, 0, []
    for trial in range(trials):
        temporaries += sum(1 for _ in state.glob(".*.tmp")) + sum(1 for _ in (state / "models").glob(".*.tmp"))
        before = inode(state / "checkpoint.npz")
        pid = os.fork()
        if pid == 0:
            child(state, data)
        if trial % 2:  # after this start's first checkpoint, whatever the load: in learning and writing
            wait_for_new_checkpoint(state / "checkpoint.npz", before, pid)
            time.sleep(float(rng.uniform(0.0, 0.3)))
        else:  # anywhere from the fork on: in start-up, in resuming, in learning and writing
            time.sleep(float(rng.uniform(0.0, span)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            killed += 1
        else:  # it ended by itself before the kill: only an error can do that here
            failures.append({"trial": trial, "exit": os.waitstatus_to_exitcode(status)})
        if (state / "checkpoint.npz").exists():
            _, meta = checkpoint.load(state / "checkpoint.npz")
            consumed.append(meta["run"]["consumed"])
    if not consumed:
        print(json.dumps({"trials": trials, "failures": ["no checkpoint was ever written"]}))
        return 0
    if any(b < a for a, b in zip(consumed, consumed[1:])):
        failures.append({"went_back": consumed})
    n = consumed[-1]  # the uninterrupted reference over the same n samples (the file repeated)
    reps = -(-n // len(X))
    ref_data = out / "reference.csv"
    write_csv(ref_data, np.concatenate([X] * reps)[:n], np.concatenate([y] * reps)[:n])
    assert train("--data", str(ref_data), "--checkpoint", str(out / "reference.npz")) == 0
    if comparable(state / "checkpoint.npz") != comparable(out / "reference.npz"):
        failures.append({"differs_from_uninterrupted_run_at_sample": n})
    print(json.dumps({"trials": trials, "span_s": round(span, 2), "killed": killed, "failures": failures, "samples": n,
                      "resumed_from_a_checkpoint": sum(1 for c in consumed[:-1] if c > 0),
                      "half_written_files_found": temporaries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
