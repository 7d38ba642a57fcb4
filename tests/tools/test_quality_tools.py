"""The learning-quality tools run end to end at tiny sizes (seconds), so they never rot; their
numbers are checked for what must hold at any size."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tool(name, tmp_path, *args):
    subprocess.run([sys.executable, str(ROOT / "tools" / name), "--smoke", "--out", str(tmp_path), *args],
                   check=True, capture_output=True, timeout=300)


def test_gradient_quality_smoke(tmp_path):
    run_tool("gradient_quality.py", tmp_path)
    doc = json.loads((tmp_path / "gradient_quality.json").read_text())
    for sweep in ("width", "depth", "alpha"):
        assert (tmp_path / f"gradient_quality_{sweep}.png").stat().st_size > 1000
        for point in doc["results"][sweep]:
            rules = point["rules"]
            assert abs(rules["bp"]["cosine"] - 1.0) < 1e-6 and rules["bp"]["variance"] == 0.0
            assert all(rules[r]["variance"] > 0 for r in ("fg-w", "fg-a", "fdfa"))
            assert all(-1 <= v["cosine"] <= 1 for v in rules.values())


def test_paper_table_smoke(tmp_path):
    run_tool("paper_table.py", tmp_path, "--seeds", "0,1", "--cases", "digits,imu")
    doc = json.loads((tmp_path / "paper_table.json").read_text())
    cells = {(s["case"], s["mode"]) for s in doc["summary"]}
    assert cells == {(c, m) for c in ("digits", "imu") for m in ("online", "batch")}
    assert all(s["n"] == 2 and 0 <= s["mean"] <= 1 for s in doc["summary"])
    assert len(doc["summary"]) == 2 * 2 * 6 and "bp" in doc["tuning_budget"]["online"]
    assert "| digits | online |" in (tmp_path / "paper_table.md").read_text()


def test_fdfa_variants_smoke(tmp_path):
    run_tool("fdfa_variants.py", tmp_path, "--seeds", "0", "--candidates", "bp,fdfa tangents=4")
    doc = json.loads((tmp_path / "fdfa_variants.json").read_text())
    assert [s["candidate"] for s in doc["summary"]] == ["bp", "fdfa tangents=4"]
    assert doc["split"].startswith("validation")
