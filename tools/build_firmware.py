"""Build the bridge firmware for the emulated Cortex-M3 board (QEMU mps2-an385): the C receiver,
the head's forward pass and the board support in firmware_bridge/c/board/mps2_an385, with a
shipped model's dense head as the factory weights. Prints the code and RAM size.

    python tools/build_firmware.py [--model models/imu-activity.onnx] [--key FILE] [--out build/firmware]

With --key the firmware holds that pre-shared key and is a KEYED device (PROTOCOL.md §5): it takes
only signed state changes with a fresh security counter.

Needs arm-none-eabi-gcc and newlib (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgefdfa
from edgefdfa.formats.c_header import c_header
from edgefdfa.head import layers_of

C_DIR = ROOT / "firmware_bridge" / "c"
BOARD = C_DIR / "board" / "mps2_an385"
MODEL = ROOT / "models" / "imu-activity.onnx"
# The C receiver, one unit per concept (edgefdfa_rx.h lists them), the head's forward pass, and the
# device's learning (efb_learning, with the kernel edgefdfa_learn and the generator edgefdfa_rng):
# every build of the receiver (this one, tests/firmware, tests/fuzz) compiles these.
RECEIVER = [C_DIR / f"{name}.c" for name in ("edgefdfa_rx", "efb_update", "efb_state", "efb_cobs", "efb_hmac",
                                              "efb_sha256", "efb_crc32", "efb_f16", "efb_learning", "edgefdfa_head",
                                              "edgefdfa_learn", "edgefdfa_rng")]
SOURCES = [*RECEIVER, *(BOARD / name for name in ("startup.c", "uart.c", "semihost.c", "flash.c", "main.c"))]
# -flto: the receiver is one unit per concept for the reader; link-time optimisation inlines across
# them again (the small helpers, the hashes' calls), so the split costs no flash.
CFLAGS = ["-mcpu=cortex-m3", "-mthumb", "-std=c99", "-Os", "-ffreestanding", "-Wall", "-Wextra", "-Werror",
          "-Wconversion", "-ffunction-sections", "-fdata-sections", "-flto"]
# Our own startup code; newlib-nano for memcpy/memset and libm (edgefdfa_head.c's expf, tanhf);
# gcc adds libgcc, the soft-float helpers, by itself.
LDFLAGS = ["-nostartfiles", "--specs=nano.specs", f"-T{BOARD / 'link.ld'}", "-Wl,--gc-sections", "-lm"]


@dataclass
class Firmware:
    elf: Path
    text: int  # bytes of code and constants (flash)
    data: int  # bytes of initialised data (flash and RAM)
    bss: int  # bytes of zeroed RAM, the stack included

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def __str__(self) -> str:
        return f"{self.elf}: {self.flash:,} bytes of flash (code {self.text:,}), {self.ram:,} bytes of RAM"


def factory_header(model: Path) -> str:
    """The C header of the model's dense head: the board's factory weights and slot size, and the sums
    of its layers' widths that size the board's learning buffers (FACTORY_HEAD_SUM_OUT, _SUM_HIDDEN)."""
    head = edgefdfa.load(model).head()
    widths = [layer.n_out for layer in layers_of(head)]
    text = c_header(head, prefix="factory_head", source=model.name)
    end = text.rindex("#endif")  # the include guard's
    return (text[:end] + f"#define FACTORY_HEAD_SUM_OUT {sum(widths)}u  /* the layers' n_out, summed */\n"
            f"#define FACTORY_HEAD_SUM_HIDDEN {sum(widths[:-1])}u  /* the hidden layers' n_out, summed */\n\n" +
            text[end:])


def key_header(key: bytes | None) -> str:
    """board_key.h: the pre-shared key as a byte array (BOARD_KEY_LEN 0: a device without a key)."""
    if key is not None and not 1 <= len(key) <= 256:
        raise ValueError(f"a {len(key)}-byte key; the board takes 1 to 256 bytes")
    body = ", ".join(f"0x{b:02x}" for b in key or b"\0")
    return (f"/* written by tools/build_firmware.py */\n#define BOARD_KEY_LEN {len(key or b'')}u\n"
            f"static const unsigned char board_key[] = {{{body}}};\n")


def build(out: Path, model: Path = MODEL, cc: str = "arm-none-eabi-gcc", key: bytes | None = None) -> Firmware:
    """Compile and link out/fw.elf (KEYED with `key`); raises RuntimeError with the compiler's output
    on failure."""
    if shutil.which(cc) is None:
        raise RuntimeError(f"{cc} not found (Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "factory_head.h").write_text(factory_header(model))
    (out / "board_key.h").write_text(key_header(key))
    elf = out / "fw.elf"
    cmd = [cc, *CFLAGS, f"-I{C_DIR}", f"-I{BOARD}", f"-I{out}",
           *map(str, SOURCES), *LDFLAGS, "-o", str(elf)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"firmware build failed:\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    size = subprocess.run([cc.replace("gcc", "size"), str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = map(int, size.stdout.splitlines()[1].split()[:3])
    return Firmware(elf, text, data, bss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="the model whose head is the factory weights")
    parser.add_argument("--key", type=Path, help="file holding the pre-shared HMAC key: a keyed device")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "firmware")
    args = parser.parse_args()
    try:
        print(build(args.out, args.model, key=args.key.read_bytes() if args.key else None))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
