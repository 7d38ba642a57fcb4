"""The emulated board tier: the bridge firmware built with arm-none-eabi-gcc (tools/build_firmware.py)
and run in QEMU's mps2-an385 (a Cortex-M3), its UART0 on a real pty, its flash a host file reached
over semihosting. The host side is the real firmware_bridge.host. Every wait is bounded; QEMU is
killed at teardown.

Without the toolchain or QEMU these tests skip, unless the environment variable CI is set (CI
installs them): then they fail.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_firmware

TOOLS = {"arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}
BOOT_TIMEOUT = 10.0  # seconds for QEMU to open its pty and the firmware to log its boot
BOOTED = re.compile(r"^board: (.*)$", re.MULTILINE)  # the firmware's first log line says what it started from
SIZES = []  # (Firmware) built this session, for the terminal summary


def require_tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        why = f"needs {', '.join(missing)} (Debian: apt-get install {' '.join(TOOLS[t] for t in missing)})"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so the emulated board tier must run", pytrace=False)
        pytest.skip(why)


class Board:
    """One QEMU run of the firmware in `workdir`: UART0 on the pty at `port`, the flash in
    workdir/flash.bin, QEMU's output (the board's semihosting log) in workdir/qemu.log.

    The test holds the pty open for the whole run: QEMU drops what it sends while no one has the pty
    open and takes up to a second to notice a new opener, and the host opens and closes the port on
    every call."""

    def __init__(self, elf: Path, workdir: Path):
        self.workdir = workdir
        self.log = workdir / "qemu.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["qemu-system-arm", "-M", "mps2-an385", "-nographic", "-monitor", "none", "-serial", "pty",
                 "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.held = None
        try:
            self.port = self._wait_for(re.compile(r"char device redirected to (/dev/pts/\d+)"))[1]
            self.held = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.held)
            self.boot = self._wait_for(BOOTED)[1]  # what the firmware started from
        except BaseException:
            self.kill()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _wait_for(self, pattern: re.Pattern) -> re.Match:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if m := pattern.search(self.output()):
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.proc.returncode} while booting:\n{self.output()}")
            time.sleep(0.02)
        raise TimeoutError(f"no {pattern.pattern!r} from QEMU within {BOOT_TIMEOUT} s:\n{self.output()}")

    def kill(self):
        """SIGKILL: a power cut, as far as the board is concerned."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.held is not None:
            os.close(self.held)
            self.held = None


KEY = b"board-key-0123456789"  # the keyed firmware's pre-shared key


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """The firmware ELF, built once per session."""
    require_tools()
    fw = build_firmware.build(tmp_path_factory.mktemp("firmware"))
    SIZES.append(fw)
    return fw


@pytest.fixture(scope="session")
def keyed_firmware(tmp_path_factory):
    """The firmware ELF of a KEYED board (key KEY), built once per session."""
    require_tools()
    return build_firmware.build(tmp_path_factory.mktemp("keyed-firmware"), key=KEY)


def _starter(elf, workdir):
    """start() -> Board on `elf` with its flash in `workdir`, and a teardown that kills them all."""
    started = []

    def start():
        started.append(Board(elf, workdir))
        return started[-1]

    def teardown():
        exited = [b for b in started if b.proc.poll() is not None and b.proc.returncode != -signal.SIGKILL]
        for board in started:
            board.kill()
        if exited:  # the firmware ended QEMU itself (a fault, a failed boot): say so beside any host timeout
            pytest.fail(f"QEMU exited with {exited[0].proc.returncode}:\n{exited[0].output()}", pytrace=False)

    return start, teardown


@pytest.fixture
def boards(firmware, tmp_path):
    """start() -> Board: QEMU on the session's firmware with its flash in this test's tmp_path
    (the same flash on every start); all killed at teardown."""
    start, teardown = _starter(firmware.elf, tmp_path)
    yield start
    teardown()


@pytest.fixture
def keyed_boards(keyed_firmware, tmp_path):
    """The same for the keyed firmware."""
    start, teardown = _starter(keyed_firmware.elf, tmp_path)
    yield start
    teardown()


def pytest_terminal_summary(terminalreporter):
    for fw in SIZES:
        terminalreporter.write_line(f"emulated board firmware (arm-none-eabi-gcc -Os, Cortex-M3): "
                                    f"{fw.flash:,} B flash (text {fw.text:,}, data {fw.data:,}), "
                                    f"{fw.ram:,} B RAM (data + bss, stack included)")
