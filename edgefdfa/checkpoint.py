"""Checkpoint files: named float arrays plus JSON metadata in one .npz, written atomically, read
without pickle. The metadata names the format and its version; a reader refuses any other."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import CheckpointError

FORMAT = "edgefdfa.checkpoint"
VERSION = 1
_META = "__meta__"


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` and `meta` (JSON-able) to `path` atomically (temp file, fsync, rename)."""
    header = {"format": FORMAT, "version": VERSION, **meta}
    with atomic_write(path) as f:
        np.savez(f, **arrays, **{_META: np.array(json.dumps(header))})


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint back; any damage or mismatch is a CheckpointError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is damaged or not a checkpoint: {exc}") from None
    if _META not in arrays:
        raise CheckpointError(f"{os.fspath(path)!r} is an .npz file but not an edgefdfa checkpoint")
    meta = json.loads(str(arrays.pop(_META)))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{os.fspath(path)!r} is format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"this edgefdfa reads {FORMAT!r} version {VERSION}")
    return arrays, meta
