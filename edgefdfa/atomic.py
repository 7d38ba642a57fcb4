"""Atomic file replacement: a reader sees the old file or the whole new one, never half of one.

A write killed before its rename leaves its temporary file (`.NAME.XXXXXXXX.tmp` beside NAME);
`remove_leftovers(NAME)` deletes those, for the owner of NAME to call when it starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file in `path`'s folder; on success fsync it and rename it over `path`.

    The new file gets the mode the file it replaces had, or that open() would give a new one
    (0666 less the umask); mkstemp's own 0600 would lock other users out of an exported model.
    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    """The permission bits for a file written at `path`: the existing file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _umask() -> int:
    """The process's umask (read by setting it and putting it back, once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes of `path` left beside it; the ones deleted."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")  # as atomic_write's mkstemp names them
    try:
        names = os.listdir(path.parent)
    except OSError:  # no folder yet: nothing was left there
        return []
    removed = []
    for name in names:
        if pattern.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.parent / name)
                removed.append(path.parent / name)
    return removed
