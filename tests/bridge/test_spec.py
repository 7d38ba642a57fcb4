"""PROTOCOL.md and the code say the same thing: every message type and error code in the spec's
tables is the code's (Python and the C receiver's header), with the same number, and the frame
header matches the byte table."""

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


def c_enum(name, header):
    """{NAME: number} of the C receiver's `typedef enum { EFB_NAME = n, ... } name;` in c/`header`."""
    text = (Path(protocol.__file__).parent / "c" / header).read_text()
    body = re.search(r"typedef enum \{([^}]*)\} " + name + ";", text).group(1)
    return {k: int(v, 0) for k, v in re.findall(r"EFB_([A-Z0-9_]+) = (0x[0-9A-Fa-f]+|\d+)", body)}


def test_c_receiver_enums_match():
    assert c_enum("efb_code", "efb_code.h") == {c.name: c.value for c in protocol.Code}
    assert c_enum("efb_encoding", "efb_update.h") == {e.name: e.value for e in protocol.Encoding}
    assert c_enum("efb_type", "efb_wire.h") == {t.name: t.value for t in protocol.MsgType}


def test_encodings_match():
    rows = table_rows(r"^\| (\d+)\s+\| ([A-Z0-9_]+)\s+\|", 4)
    assert rows == {e.name: e.value for e in protocol.Encoding}


def test_frame_header_matches():
    assert frame.HEADER.size == 8 and frame.OVERHEAD == 12 and protocol.MAGIC == b"\x45\x42"
    assert "`0x45 0x42`" in SPEC and f"| 2       | 1    | version  | `{protocol.VERSION}`" in SPEC
    assert f"{frame.MIN_FRAME} ≤ `max_frame` ≤ {frame.MAX_FRAME_LIMIT}" in SPEC


def test_an_error_code_this_host_does_not_know_is_still_reported():
    e = protocol.ProtocolError(200, "from a newer device")
    assert e.code == 200 and str(e) == "error code 200: from a newer device"
    assert protocol.ProtocolError(24).code is protocol.Code.STORAGE


def test_version_2_layouts_match():
    """The spec's sizes of the messages version 2 changed are the code's, and both ends name the
    same protocol version."""
    assert f"({protocol.Begin.FIELDS} or {protocol.Begin.FIELDS + protocol.DIGEST_BYTES} B)" in SPEC
    assert "(8 or 40 B)" in SPEC and len(protocol.Rollback(1, 2, bytes(32)).pack()) == 40
    hello = protocol.Hello(1024, 1, 0, 8, 0, 0, 0, (protocol.Layer(1, 1, 0),))
    assert f"HELLO ({len(hello.pack()) + frame.OVERHEAD - 5} + 5 × n_layers bytes)" in SPEC
    assert f"`12 + {protocol.Update.FIELDS} + 32 if signed + total ≤ max_frame`" in SPEC
    header = (Path(protocol.__file__).parent / "c" / "edgefdfa_rx.h").read_text()
    assert re.search(r"#define EFB_VERSION (\d+)", header).group(1) == str(protocol.VERSION)
    assert f"# The firmware bridge protocol, version {protocol.VERSION}\n" in SPEC
