"""The host's mirror of what devices hold: the image of every update it installed, by
(model_id, update_id). A sparse push takes its delta against the mirror, so whatever a push left
out (the residual) is in the next one. In memory for a process, or one .npy file per image in a
directory so that separate `edgefdfa push` runs share it.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path

import numpy as np

Key = tuple[int, int]  # (model_id, update_id)


class Mirror(MutableMapping[Key, np.ndarray]):
    """Images by (model_id, update_id), kept in `directory` if given, else in memory."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[Key, np.ndarray] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: Key) -> Path:
        assert self.directory is not None
        return self.directory / f"{key[0]:08x}-{key[1]:08x}.npy"

    def __getitem__(self, key: Key) -> np.ndarray:
        if self.directory is None:
            return self._memory[key]
        try:
            return np.load(self._path(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    def __setitem__(self, key: Key, image: np.ndarray) -> None:
        if self.directory is None:
            self._memory[key] = np.asarray(image, np.float32).copy()
        else:
            tmp = self._path(key).with_suffix(".tmp.npy")
            np.save(tmp, np.asarray(image, np.float32))
            tmp.replace(self._path(key))

    def __delitem__(self, key: Key) -> None:
        if self.directory is None:
            del self._memory[key]
        else:
            self._path(key).unlink()

    def __iter__(self) -> Iterator[Key]:
        if self.directory is None:
            return iter(list(self._memory))
        return iter([tuple(int(h, 16) for h in p.name[:-4].split("-")) for p in sorted(self.directory.glob("*-*.npy"))
                     if not p.name.endswith(".tmp.npy")])

    def __len__(self) -> int:
        return sum(1 for _ in self)
