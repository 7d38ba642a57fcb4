"""libFuzzer on the C receiver, keyed and unkeyed, with its persistence hooks and a restart partway
through each input (tests/fuzz/fuzz_rx.c): no sanitizer finding, no broken invariant (a state
change on a keyed device without a fresh counter, a record the receiver refuses after writing it, a
malformed reply), within EDGEFDFA_FUZZ_SECONDS; then the line coverage of the receiver's units
(edgefdfa_rx.c and the efb_*.c it is built from) that the corpus it grew reaches, measured with
clang's source-based coverage."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from tools.build_firmware import C_DIR, RECEIVER

HERE = Path(__file__).parent
SOURCES = [HERE / "fuzz_rx.c", *RECEIVER]
FLAGS = ["-std=c99", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-ffp-contract=off", f"-I{C_DIR}"]
COVERED = [p for p in RECEIVER if p.name != "edgefdfa_head.c"]  # the receiver's units (the head has its own tests)
MIN_LINE_COVERAGE = 90.0  # percent of their lines; the seeds alone reach about 94


def build(clang, out, *flags):
    subprocess.run([clang, *FLAGS, *flags, *map(str, SOURCES), "-lm", "-o", str(out)], check=True)
    return out


def line_coverage(clang, tmp_path, corpus):
    """Percent of the receiver's lines (COVERED) run by the inputs in `corpus`."""
    exe = build(clang, tmp_path / "fuzz_rx_cov", "-fsanitize=fuzzer", "-fprofile-instr-generate", "-fcoverage-mapping")
    raw, data = tmp_path / "cov.profraw", tmp_path / "cov.profdata"
    subprocess.run([str(exe), str(corpus), "-runs=0"], check=True, capture_output=True,
                   env={**os.environ, "LLVM_PROFILE_FILE": str(raw)})
    subprocess.run(["llvm-profdata", "merge", "-sparse", str(raw), "-o", str(data)], check=True)
    report = subprocess.run(["llvm-cov", "report", str(exe), f"-instr-profile={data}", *map(str, COVERED)],
                            check=True, capture_output=True, text=True).stdout
    row = next(line for line in report.splitlines() if line.startswith("TOTAL"))
    return float(re.findall(r"([\d.]+)%", row)[-2])  # regions, functions, lines, branches: lines


def test_fuzz_the_receiver(tmp_path, clang, report):
    seconds = int(os.environ.get("EDGEFDFA_FUZZ_SECONDS", "30"))
    exe = build(clang, tmp_path / "fuzz_rx", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all")
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus", corpus)  # the checked-in seeds stay as they are
    seeds = len(list(corpus.iterdir()))
    run = subprocess.run([str(exe), str(corpus), f"-max_total_time={seconds}", "-max_len=4096", "-print_final_stats=1",
                          f"-artifact_prefix={tmp_path}/", "-close_fd_mask=1"],
                         capture_output=True, text=True, timeout=seconds + 120,
                         env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"})
    findings = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-"))]
    assert run.returncode == 0 and not findings, f"{findings}\n{run.stderr[-3000:]}"
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", run.stderr).group(1))
    edges = re.findall(r"cov: (\d+)", run.stderr)[-1]
    assert runs > 1000, run.stderr[-2000:]  # it did fuzz, not just load the seeds
    coverage = line_coverage(clang, tmp_path, corpus)
    report(f"fuzz tier: {runs:,} libFuzzer runs in {seconds} s (ASan+UBSan), {seeds} seeds grown to "
                   f"{len(list(corpus.iterdir()))} inputs, {edges} edges, receiver line coverage {coverage:.1f}%")
    assert coverage >= MIN_LINE_COVERAGE
