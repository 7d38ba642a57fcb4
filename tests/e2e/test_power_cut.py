"""A power cut at any moment never leaves the state directory unloadable: `edgefdfa train --state-dir`
killed with SIGKILL at random points, again and again on the same directory, each start resuming the
last (tests/e2e/power_cut_trials.py), ends with exactly an uninterrupted run's state.

CI runs EDGEFDFA_POWERCUT_TRIALS (default 30, ~30 s) kills; the issue's count is
`EDGEFDFA_POWERCUT_TRIALS=300 pytest tests/e2e/test_power_cut.py` (~5 min). SIGKILL loses what the
process holds, not what the kernel has not yet written: the atomic write's fsyncs cover that part."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRIALS = Path(__file__).with_name("power_cut_trials.py")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the trials fork the service's process")


def test_sigkill_at_random_moments_never_leaves_the_state_unloadable(tmp_path):
    n = int(os.environ.get("EDGEFDFA_POWERCUT_TRIALS", "30"))
    proc = subprocess.run([sys.executable, str(TRIALS), str(n), "0", str(tmp_path)], capture_output=True, text=True,
                          timeout=120 + 3 * n)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failures"] == [], result
    assert result["killed"] == n, result  # every start ran until the kill: none found its state unloadable
    assert result["resumed_from_a_checkpoint"] >= n // 2, result  # most starts resumed a run, not a fresh one
    assert result["samples"] > n, result  # the run moved on across the kills
