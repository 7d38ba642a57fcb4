#!/usr/bin/env bash
# The arm64 (Raspberry Pi) tier: an emulated Debian bookworm arm64 userland (debootstrap, run through
# qemu-user-static and binfmt_misc), edgefdfa installed there from PyPI's aarch64 wheels the way the
# README tells a Pi user, its C extension built by the arm64 gcc, then the demo and the test tiers.
#
#   tools/arm64.sh short   # CI's subset: the demo (compared with x86-64) and the NumPy/compiled-head tests
#   tools/arm64.sh full    # by hand: the demo, tests/unit and tests/backends (about 40 min emulated)
#   tools/arm64.sh shell   # a shell inside the root, the project installed
#
# The root is cached in $EDGEFDFA_ARM64_CACHE (default ~/.cache/edgefdfa-arm64): built once (~4 min),
# its virtual environment kept; each run copies the working tree in and reinstalls the project.
# QEMU_CPU (default cortex-a72, a Pi 4; cortex-a76 for a Pi 5): qemu's default CPU has features no Pi has.
# Needs root (debootstrap, chroot, mounts) and Debian's qemu-user-static, binfmt-support, debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mode=${1:-short}
cache=${EDGEFDFA_ARM64_CACHE:-$HOME/.cache/edgefdfa-arm64}
root=$cache/root
recipe="bookworm arm64 minbase python3 python3-venv python3-dev gcc libc6-dev ca-certificates 1"
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
nice=(nice -n 10)  # emulation is slow and the machine is shared

log() { echo "arm64: $*" >&2; }
now() { date +%s; }

host_packages() {  # what the host needs, from Debian's archive
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

enable_binfmt() {  # aarch64 binaries run transparently, inside the chroot too (qemu's F flag)
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { log "binfmt_misc's qemu-aarch64 entry lacks the F flag: chroot runs would fail"; exit 1; }
}

build_root() {  # once; a half-built root is never taken for a cached one
  if [ -f "$root/.edgefdfa-recipe" ] && [ "$(cat "$root/.edgefdfa-recipe")" = "$recipe" ]; then
    log "cached root $root"
    return
  fi
  local t0; t0=$(now)
  rm -rf "$root.tmp" "$root"
  mkdir -p "$cache"
  log "building $root (debootstrap bookworm arm64)"
  "${nice[@]}" debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates bookworm "$root.tmp" >"$cache/debootstrap.log"
  echo "$recipe" >"$root.tmp/.edgefdfa-recipe"
  mv "$root.tmp" "$root"
  log "root built in $(( $(now) - t0 )) s"
}

cpuinfo() {  # what a Pi 4 kernel reports, one entry per host CPU (onnxruntime reads it on import)
  local n; n=$(nproc)
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done
}

mounted=()
mount_root() {
  mkdir -p "$root/proc" "$root/dev" "$root/sys"
  mount -t proc proc "$root/proc"; mounted=("$root/proc" "${mounted[@]}")
  cpuinfo >"$cache/cpuinfo"
  mount --bind "$cache/cpuinfo" "$root/proc/cpuinfo"; mounted=("$root/proc/cpuinfo" "${mounted[@]}")
  mount --rbind /dev "$root/dev"; mounted=("$root/dev" "${mounted[@]}")  # ptys for the demo's null modem
  mount --make-rslave "$root/dev"
  mount -t sysfs sysfs "$root/sys"; mounted=("$root/sys" "${mounted[@]}")
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca.crt"
}

unmount_root() {
  for m in "${mounted[@]}"; do umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  mounted=()
}

in_root() {  # a command in the root under a clean environment: the host's pip settings stay out
  "${nice[@]}" env -i PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU="$QEMU_CPU" PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg EDGEFDFA_ARM64=1 \
    "$(command -v chroot)" "$root" /bin/bash -c "cd /src && $1"
}

install_project() {  # the README's Pi steps: a venv, then pip from PyPI's aarch64 wheels
  local t0; t0=$(now)
  rm -rf "$root/src"
  mkdir -p "$root/src"
  git ls-files -z --cached --others --exclude-standard | grep -zv '^\.venv' \
    | tar -cf - --null --no-recursion -T - | tar -xf - -C "$root/src"
  [ -x "$root/opt/venv/bin/python" ] || in_root "python3 -m venv /opt/venv"
  in_root "pip install -q -e '.[test,fast,plot]'"
  in_root "python -c 'import platform, edgefdfa.native as n; print(platform.machine(), \"compiled head:\", n.available())'"
  log "install took $(( $(now) - t0 )) s"
}

compare_x86() {  # the demo and tools/arm_parity.py on both machines, compared number by number
  local t0; t0=$(now)
  in_root "edgefdfa demo --out /tmp/demo --json --no-plot >/tmp/demo-arm64.json"
  log "arm64 demo took $(( $(now) - t0 )) s"
  in_root "python tools/arm_parity.py write /tmp/parity-arm64.npz"
  cp "$root/tmp/demo-arm64.json" "$root/tmp/parity-arm64.npz" "$cache/"
  local host_python=${EDGEFDFA_HOST_PYTHON:-$repo/.venv/bin/python} work
  if [ ! -x "$host_python" ]; then
    log "no host Python at $host_python (EDGEFDFA_HOST_PYTHON): nothing compared with x86-64"
    return 1
  fi
  work=$(mktemp -d)
  (cd "$work" && "$host_python" -m edgefdfa demo --out demo --json --no-plot >"$cache/demo-x86_64.json" 2>/dev/null)
  "$host_python" tools/arm_parity.py write "$cache/parity-x86_64.npz" 2>/dev/null
  rm -rf "$work"
  local rc=0
  "$host_python" tools/arm_parity.py compare "$cache/demo-x86_64.json" "$cache/demo-arm64.json" --tol 1e-5 || rc=1
  "$host_python" tools/arm_parity.py compare "$cache/parity-x86_64.npz" "$cache/parity-arm64.npz" --tol 1e-5 || rc=1
  return $rc
}

# The short subset: everything NumPy computes and the compiled head against it (tests/unit takes ~9 min
# emulated; these take a fraction and still cover the learning rules, the C head built by arm64 gcc,
# ONNX Runtime and LiteRT on aarch64 wheels).
short_tests="tests/unit/test_fdfa_reference.py tests/unit/test_gradients.py tests/unit/test_checkpoint.py \
tests/backends/test_native.py tests/backends/test_inference.py"
full_tests="tests/unit tests/backends"

run_pytest() {  # pytest's exit code 5 (no tests) is not a failure
  local t0; t0=$(now)
  set +e
  in_root "python -m pytest -q -p no:cacheprovider $1"
  local rc=$?
  set -e
  log "pytest $1 took $(( $(now) - t0 )) s"
  [ "$rc" -eq 5 ] && return 0
  return "$rc"
}

main() {
  [ "$(id -u)" -eq 0 ] || { log "needs root (debootstrap, chroot, mounts)"; exit 1; }
  local t0; t0=$(now)
  host_packages
  enable_binfmt
  build_root
  trap unmount_root EXIT
  mount_root
  install_project
  case $mode in
    short) compare_x86; run_pytest "$short_tests" ;;
    full) compare_x86; run_pytest "$full_tests" ;;
    shell) in_root "exec bash" ;;
    *) log "unknown mode $mode (short | full | shell)"; exit 2 ;;
  esac
  log "$mode tier done in $(( $(now) - t0 )) s"
}

main
