"""`edgefdfa demo` as a user who installed the built wheel runs it: from another folder, with the
models and data the demo needs inside the package, and without matplotlib (the plot extra)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None\n"  # importing it now fails, as when not installed
                 "import edgefdfa, edgefdfa.cli\n"
                 "print(edgefdfa.__file__, flush=True)\n"
                 "sys.exit(edgefdfa.cli.main(['demo', '--out', sys.argv[1]]))\n")


def test_demo_runs_from_the_wheel_without_matplotlib(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", tmp_path / "dist", ROOT], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("edgefdfa-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgefdfa/models/imu-activity.onnx" in names and "edgefdfa/data/basicmotions.npz" in names
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")  # a wheel is installed by unpacking it
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), PYTHONNOUSERSITE="1")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r})\n"
                          + NO_MATPLOTLIB, tmp_path / "out"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(tmp_path / "site")), run.stdout  # the wheel's copy ran, not the source tree
    assert "fdfa (on device)" in run.stdout and "plot    skipped: plotting needs matplotlib" in run.stdout
    assert (tmp_path / "out" / "imu-activity-adapted.onnx").exists() and not (tmp_path / "out" / "demo.png").exists()
