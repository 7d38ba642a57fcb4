"""PROTOCOL.md and the code say the same thing: every message type and error code in the spec's
tables is the code's, with the same number, and the frame header matches the byte table."""

import re
from pathlib import Path

from firmware_bridge import frame, protocol

SPEC = (Path(protocol.__file__).parent / "PROTOCOL.md").read_text()


def table_rows(pattern, section):
    """{name: number} of the table rows matching `pattern` in the spec's section `section`."""
    text = SPEC.split(f"\n## {section}.")[1].split("\n## ")[0]
    return {name: int(num, 0) for num, name in re.findall(pattern, text, re.M)}


def test_message_types_match():
    assert table_rows(r"^\| (0x[0-9a-f]{2}) \| ([A-Z_]+)\s+\|", 2) == {t.name: t.value for t in protocol.MsgType}


def test_error_codes_match():
    assert table_rows(r"^\| (\d+)\s+\| ([A-Z_]+)\s+\|", 7) == {c.name: c.value for c in protocol.Code}


def test_encodings_match():
    rows = table_rows(r"^\| (\d+)\s+\| ([A-Z0-9_]+)\s+\|", 4)
    assert rows == {e.name: e.value for e in protocol.Encoding}


def test_frame_header_matches():
    assert frame.HEADER.size == 8 and frame.OVERHEAD == 12 and protocol.MAGIC == b"\x45\x42"
    assert "`0x45 0x42`" in SPEC and f"| 2       | 1    | version  | `{protocol.VERSION}`" in SPEC
    assert f"{frame.MIN_FRAME} ≤ `max_frame` ≤ {frame.MAX_FRAME_LIMIT}" in SPEC
