"""The C learning step (firmware_bridge/c/edgefdfa_learn.c) builds as firmware code: freestanding C99
under the project's warning flags, calling nothing but libm's expf, logf and tanhf (no malloc, no
stdio). Its arithmetic is tested against the NumPy rules in tests/unit/test_learn_kernel.py."""

import shutil
import subprocess
from pathlib import Path

import pytest

C_DIR = Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"
FLAGS = ["-std=c99", "-ffreestanding", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-pedantic",
         "-ffp-contract=off"]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("nm") is None,
                                reason="no C compiler or nm (apt-get install gcc binutils)")


def test_builds_freestanding_and_calls_only_libm(tmp_path):
    obj = tmp_path / "learn.o"
    subprocess.run(["cc", *FLAGS, f"-I{C_DIR}", "-c", str(C_DIR / "edgefdfa_learn.c"), "-o", str(obj)], check=True)
    undefined = subprocess.run(["nm", "--undefined-only", str(obj)], capture_output=True, text=True,
                               check=True).stdout.split()[1::2]
    assert set(undefined) <= {"expf", "logf", "tanhf"}, undefined
    defined = subprocess.run(["nm", "--defined-only", "--extern-only", str(obj)], capture_output=True, text=True,
                             check=True).stdout.split()[2::3]
    assert defined == ["edgefdfa_learn_step"]  # one entry point; everything else is static
