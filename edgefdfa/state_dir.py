"""The state directory of unattended training (`edgefdfa train --state-dir DIR`; the systemd unit's
StateDirectory): the latest checkpoint, the source model stored once by content, and a short log.
The same command line starts a run and resumes it, so a service needs no flag that changes at boot.

    DIR/checkpoint.npz          head, feedback, optimiser, stream position (no model bytes)
    DIR/models/<sha256>.onnx    the model file, written once
    DIR/train.log               starts, resumes, stops (and one older copy, train.log.1)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, model_store

CHECKPOINT = "checkpoint.npz"
MODELS = "models"
LOG = "train.log"
LOG_BYTES = 256 * 1024  # the log is rotated past this: a few lines per start, never the per-sample stream
PRIORITY = {"error": 3, "warning": 4, "info": 6}  # syslog levels, read by journald from a "<N>" prefix


class StateDir:
    """One run's files in one folder; opening it removes what a power cut left half-written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.path / CHECKPOINT
        self.removed = self._remove_temporaries()
        self._journal = "JOURNAL_STREAM" in os.environ  # systemd connected stderr to the journal
        self._stored: tuple[Any, Path] | None = None  # (the source buffer, its stored file): hashed once

    def _remove_temporaries(self) -> list[str]:
        """atomic_write's temporary files of writes a kill or power cut interrupted (never renamed)."""
        removed = []
        for tmp in [*self.path.glob(".*.tmp"), *(self.path / MODELS).glob(".*.tmp")]:
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
        return removed

    @property
    def resumable(self) -> bool:
        return self.checkpoint.exists()

    def write(self, path: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """OnlineRun's checkpoint writer: the model's bytes go to the store once, the rest to `path`."""
        source = arrays.get(model_store.SOURCE)
        if source is not None:
            base = source.base if source.base is not None else source
            if self._stored is None or self._stored[0] is not base:
                self._stored = (base, model_store.store(self.path / MODELS, source.tobytes(), meta["model"]["format"]))
            model_store.detach(arrays, meta, self._stored[1], Path(path))
        checkpoint.save(path, arrays, meta)

    def log(self, message: str, level: str = "info") -> None:
        """One line to stderr (with a priority journald reads when systemd runs us) and to DIR/train.log."""
        line = f"edgefdfa: {message}"
        print(f"<{PRIORITY[level]}>{line}" if self._journal else line, file=sys.stderr, flush=True)
        log = self.path / LOG
        if log.exists() and log.stat().st_size > LOG_BYTES:
            os.replace(log, log.with_name(LOG + ".1"))
        with open(log, "a", encoding="utf-8") as f:  # not fsynced: a log line is not worth a flash write
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {level} {message}\n")
