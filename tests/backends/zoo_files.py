"""Where the zoo's files are (tests/zoo, made by tools/make_zoo.py), for the tests that use them."""

import importlib.util
import json
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"
MANIFEST = json.loads((ZOO / "manifest.json").read_text())


def file_of(entry: dict) -> Path:
    """The zoo's copy, or for an `installed` entry the file inside that installed package."""
    if "installed" not in entry:
        return ZOO / entry["file"]
    spec = importlib.util.find_spec(entry["installed"]["module"])
    if spec is None:
        pytest.skip(f"{entry['installed']['module']} is not installed: it ships {entry['file']}")
    return Path(spec.origin).parent / entry["installed"]["path"]
