"""The main job through the command line, as a user runs it."""

import json
import subprocess
import sys

import edgefdfa


def run(*args):
    return subprocess.run([sys.executable, "-m", "edgefdfa", *args], capture_output=True, text=True, timeout=600)


def test_demo_json_and_checkpoints(tmp_path):
    proc = run("demo", "--json", "--epochs", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = {r["rule"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {"bp", "dfa", "fdfa", "fg-a", "fg-w"}
    assert rows["fdfa"]["test_accuracy"] > 0.85
    learner = edgefdfa.Learner.load(tmp_path / "digits-fdfa.npz")
    assert learner.config.rule == "fdfa" and learner.n_seen == 1347


def test_demo_table_for_people():
    proc = run("demo", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert "test acc" in proc.stdout and "fdfa" in proc.stdout


def test_bad_argument_is_named():
    proc = run("demo", "--epochs", "three")
    assert proc.returncode == 2 and "--epochs" in proc.stderr
