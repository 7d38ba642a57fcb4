"""SIGTERM at random moments into `edgefdfa train --rate` runs, in one process (a run costs no start-up).

    python tests/e2e/sigterm_trials.py TRIALS SEED OUT_DIR
    python tests/e2e/sigterm_trials.py --inside-wait OUT_DIR

For every drift reaction: one uninterrupted run gives the reference checkpoint; then TRIALS times a
paced replay is sent SIGTERM by a timer thread after a random delay, must return 0 with a checkpoint,
and a `--resume` of that checkpoint must end with exactly the reference's arrays and learner state.
Prints one JSON line: the trials run, how many the signal interrupted, and every failure. A deadlock
shows as this process never ending (the test that runs it has a timeout).

`--inside-wait` hits the moment that deadlocked `train` 1 time in 73 every time: the signal is sent from
a trace function as the main thread enters threading's Condition.wait, i.e. while it holds the lock of
the Event it waits on (the paced replay's), so the handler runs inside that lock.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgefdfa import checkpoint, cli  # noqa: E402
from edgefdfa.datasets import load  # noqa: E402

MODEL = ROOT / "models" / "digits.onnx"
REACTIONS = ("report", "boost-lr", "reset-feedback")
RATE = 4000.0  # samples/s: a run of the stream below is paced over ~0.1 s


def drift_stream(path: Path) -> int:
    """The digits test set with its labels shifted by one class halfway: the detector fires."""
    ds = load("digits")
    X, y = ds.X_test[:400], ds.y_test[:400].copy()
    y[200:] = (y[200:] + 1) % 10
    path.write_text("\n".join(",".join(f"{v:.6g}" for v in x) + f",{int(t)}" for x, t in zip(X, y)) + "\n")
    return len(X)


def train(*args: str) -> tuple[int, dict | None]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(["train", str(MODEL), *args, "--json"])
    return rc, (json.loads(out.getvalue()) if rc == 0 else None)


def state(path: Path) -> dict:
    """Everything that decides what the run does next: the arrays and the learner's and run's metadata."""
    arrays, meta = checkpoint.load(path)
    learner = {k: meta[k] for k in ("rng", "n_seen", "n_updates")}
    run = {k: v for k, v in meta["run"].items() if k != "events"}
    return {"arrays": {k: v.tobytes() for k, v in sorted(arrays.items())}, "learner": learner, "run": run}


def signal_inside_wait(out: Path) -> int:
    """One paced run sent SIGTERM from inside Condition.wait; prints its rc and whether it stopped."""
    data = out / "drift.csv"
    drift_stream(data)

    def tracer(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_qualname == "Condition.wait" and code.co_filename == threading.__file__:
            sys.settrace(None)
            os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, inside the lock
        return None

    sys.settrace(tracer)
    rc, summary = train("--data", str(data), "--checkpoint", str(out / "inside.npz"), "--rate", "2000")
    sys.settrace(None)
    print(json.dumps({"rc": rc, "interrupted": summary and summary["interrupted"],
                      "checkpoint": (out / "inside.npz").exists()}))
    return 0


def main() -> int:
    if sys.argv[1] == "--inside-wait":
        return signal_inside_wait(Path(sys.argv[2]))
    trials, seed, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    data = out / "drift.csv"
    n = drift_stream(data)
    late = []
    signal.signal(signal.SIGTERM, lambda *_: late.append(1))  # a signal after the run ended lands here
    rng = np.random.default_rng(seed)
    failures, interrupted, drifts = [], 0, {}
    for reaction in REACTIONS:
        ref = out / f"ref-{reaction}.npz"
        rc, summary = train("--data", str(data), "--checkpoint", str(ref), "--drift", reaction)
        assert rc == 0 and summary["consumed"] == n, (rc, summary)
        drifts[reaction] = sum(e["kind"] == "drift" for e in summary["events"])
        expected = state(ref)
        t0 = time.monotonic()
        train("--data", str(data), "--checkpoint", str(out / "timing.npz"), "--rate", str(RATE), "--drift", reaction)
        span = time.monotonic() - t0
        for trial in range(trials):
            ckpt = out / f"t-{reaction}-{trial}.npz"
            timer = threading.Timer(float(rng.uniform(0.0, span)), os.kill, (os.getpid(), signal.SIGTERM))
            timer.start()
            rc, summary = train("--data", str(data), "--checkpoint", str(ckpt), "--rate", str(RATE), "--drift", reaction)
            timer.join()
            if rc != 0 or not ckpt.exists():
                failures.append({"reaction": reaction, "trial": trial, "rc": rc, "checkpoint": ckpt.exists()})
                continue
            interrupted += summary["interrupted"]
            rc, _ = train("--data", str(data), "--checkpoint", str(ckpt), "--resume", "--drift", reaction)
            if rc != 0 or state(ckpt) != expected:
                failures.append({"reaction": reaction, "trial": trial, "resume_rc": rc, "stopped_at": summary["consumed"]})
            ckpt.unlink(missing_ok=True)
    print(json.dumps({"trials": trials * len(REACTIONS), "interrupted": interrupted, "drifts": drifts,
                      "failures": failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
