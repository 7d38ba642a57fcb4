"""CSV lines from files and stdin are bounded like serial lines: a 100 MB line in the middle of a real
`edgefdfa train` run is skipped and counted as "too long", the run goes on with the lines after it,
and the process's peak memory stays what it is without that line."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgefdfa.datasets import load

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits.onnx"
LONG = 100 << 20  # bytes in the long line
pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for a child's peak memory")


def good_lines(n: int) -> list[bytes]:
    ds = load("digits")
    return [(",".join(f"{v:.4g}" for v in x) + f",{int(y)}\n").encode() for x, y in zip(ds.X_test[:n], ds.y_test[:n])]


def write_stream(f, lines: list[bytes], long_line: bool) -> None:
    """Half the lines, a LONG-byte line of numbers (if asked), the other half; in pieces of 1 MB."""
    f.writelines(lines[:len(lines) // 2])
    if long_line:
        piece = b"1," * (1 << 19)
        for _ in range(LONG // len(piece)):
            f.write(piece)
        f.write(b"1\n")
    f.writelines(lines[len(lines) // 2:])


def train(data: str, stdin=None) -> tuple[dict, int]:
    """(the --json summary, peak RSS in KiB) of `edgefdfa train MODEL --data data`, fed `stdin` (a
    callable writing to the child's stdin) if given."""
    proc = subprocess.Popen([sys.executable, "-m", "edgefdfa", "train", str(MODEL), "--data", data, "--json"],
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))
    reader.start()
    if stdin:
        stdin(proc.stdin)
        proc.stdin.close()
    out = proc.stdout.read()
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, errors[0].decode()[-2000:]
    return json.loads(out), usage.ru_maxrss


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_a_100_mb_line_is_skipped_and_counted_in_bounded_memory(tmp_path, via):
    lines = good_lines(100)
    runs = {}
    for long_line in (False, True):
        if via == "file":
            path = tmp_path / f"digits-{long_line}.csv"
            with open(path, "wb") as f:
                write_stream(f, lines, long_line)
            runs[long_line] = train(str(path))
        else:
            runs[long_line] = train("-", stdin=lambda f: write_stream(f, lines, long_line))
    (clean, clean_rss), (summary, rss) = runs[False], runs[True]
    assert summary["source"]["skipped_by"] == {"too long": 1}
    assert summary["samples"] == clean["samples"] == 100  # every line after the long one was read too
    assert summary["learned"] == clean["learned"] == 100
    assert summary["accuracy"] == clean["accuracy"]
    assert rss - clean_rss < 20 << 10, f"peak RSS {rss} KiB with the long line, {clean_rss} KiB without"
