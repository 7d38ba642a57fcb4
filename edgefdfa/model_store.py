"""Model files stored once, by content. A checkpoint written through a store names its source model by
SHA-256 instead of carrying the file's bytes, so a periodic checkpoint writes only what learning
changes (an SD card wears with every byte). `attach` puts the bytes back when the checkpoint is read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from .atomic import atomic_write
from .errors import CheckpointError

SOURCE = "model.source"  # the array EdgeModel.state() carries the file in


def store(folder: Path, source: bytes, suffix: str) -> Path:
    """`source` at folder/<sha256><suffix>, written (atomically) only if not there already."""
    path = folder / f"{hashlib.sha256(source).hexdigest()}{suffix}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(source)
    return path


def detach(arrays: dict[str, np.ndarray], meta: dict[str, Any], stored: Path, checkpoint: Path) -> None:
    """Replace the source bytes in a checkpoint's state by the stored file's name, relative to the
    checkpoint's folder (a state directory moves as a whole)."""
    arrays.pop(SOURCE)
    meta["model"]["source_file"] = os.path.relpath(stored, checkpoint.parent)
    meta["model"]["source_sha256"] = stored.stem


def attach(arrays: dict[str, np.ndarray], meta: dict[str, Any], checkpoint: str | os.PathLike) -> None:
    """Put a detached source back from its stored file, checked against its digest; a checkpoint that
    carries its source, or has no model, is left as it is."""
    m = meta.get("model")
    if SOURCE in arrays or not isinstance(m, dict) or "source_file" not in m:
        return
    with ckpt.named(checkpoint):
        name, digest = ckpt.field(m, "source_file", str, "model "), ckpt.field(m, "source_sha256", str, "model ")
    path = Path(checkpoint).parent / name
    if not path.is_file():  # not a device or a fifo, which could be read without end
        raise CheckpointError(f"checkpoint {os.fspath(checkpoint)!r} names model file {os.fspath(path)!r}, "
                              "which is not a regular file")
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {os.fspath(checkpoint)!r} names model file {os.fspath(path)!r}, "
                              f"which cannot be read: {exc.strerror}") from None
    if hashlib.sha256(source).hexdigest() != m["source_sha256"]:
        raise CheckpointError(f"model file {os.fspath(path)!r} does not match checkpoint {os.fspath(checkpoint)!r}: "
                              f"its SHA-256 is not {digest:.64}")
    arrays[SOURCE] = np.frombuffer(source, dtype=np.uint8)
