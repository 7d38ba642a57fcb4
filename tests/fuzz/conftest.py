"""The fuzz tier: the C receiver under libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer
(tests/fuzz/fuzz_rx.c), seeded from the checked-in corpus (tests/fuzz/corpus, written by
`python -m tests.fuzz.make_corpus`). It needs Debian's clang, its fuzzer runtime and llvm; without
them it skips, unless the environment variable CI is set (CI installs them): then it fails.

EDGEFDFA_FUZZ_SECONDS sets the run's length (default 30; .ci/run uses 60).
"""

import os
import shutil
import subprocess

import pytest

RESULTS = []  # one line per fuzz run, for the terminal summary
PACKAGES = "clang libclang-rt-dev llvm"


def require_clang(tmp_path) -> str:
    """The clang that links -fsanitize=fuzzer,address,undefined; skip (fail under CI) without one."""
    clang = shutil.which("clang")
    why = None
    if clang is None or shutil.which("llvm-cov") is None or shutil.which("llvm-profdata") is None:
        why = "needs clang, llvm-cov and llvm-profdata"
    else:
        probe = tmp_path / "probe.c"
        probe.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                         "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
        done = subprocess.run([clang, "-fsanitize=fuzzer,address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                              capture_output=True, text=True)
        if done.returncode != 0:
            why = f"clang cannot link libFuzzer with the sanitizers: {done.stderr.strip()[-200:]}"
    if why:
        why += f" (Debian: apt-get install {PACKAGES})"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so the fuzz tier must run", pytrace=False)
        pytest.skip(why)
    return clang


@pytest.fixture
def clang(tmp_path):
    """The path of a clang that builds libFuzzer targets with ASan and UBSan."""
    return require_clang(tmp_path)


@pytest.fixture
def report():
    """report(line): a line for the terminal summary (run counts, coverage)."""
    return RESULTS.append


def pytest_terminal_summary(terminalreporter):
    for line in RESULTS:
        terminalreporter.write_line(line)
