#!/usr/bin/env bash
# The README's benchmark tables on a real Raspberry Pi (or any machine): one command from the checkout,
#   bash tools/bench_pi.sh
# It installs the project as the README's Pi steps do (plus PyTorch, the engine bench's reference),
# runs the engine, inference and stream-loop benches, and keeps their tables and JSON in
# bench/results/<machine>-<date>/. Under emulation (tools/arm64.sh shell) the times are qemu's, not a Pi's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results/$(uname -m)-$(hostname)-$(date +%Y%m%d)
mkdir -p "$out"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[fast,bench]'
{ uname -a; grep -m1 -i 'model' /proc/device-tree/model /proc/cpuinfo 2>/dev/null || true; } >"$out/machine.txt"
for bench in bench_engine bench_infer bench_stream; do
  echo "+ $bench" >&2
  PYTHONPATH=. .venv/bin/python "tools/$bench.py" | tee "$out/$bench.md"
  cp "bench/results/$bench.json" "$out/"
done
git checkout -q -- bench/results/*.json 2>/dev/null || true  # the shipped x86-64 results stay as they were
echo "tables and JSON in $out" >&2
