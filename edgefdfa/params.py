"""The flat float32 parameter layout: every layer's W (n_out, n_in) and b (n_out,) in one array.

One flat array makes a checkpoint one array, an optimiser step one vectorised pass, and a weight
update to stream an offset and a slice. The same layout indexes gradients, optimiser state and
FG-W's perturbation direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Slot:
    """Where one tensor sits in the flat array."""

    name: str  # "W0", "b0", "W1", ...
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layout:
    """W_l then b_l for each layer l, back to back, in layer order."""

    def __init__(self, sizes: list[int] | tuple[int, ...]):
        self.slots: list[Slot] = []
        offset = 0
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            for name, shape in ((f"W{l}", (n_out, n_in)), (f"b{l}", (n_out,))):
                slot = Slot(name, offset, shape)
                self.slots.append(slot)
                offset += slot.size
        self.size = offset

    def views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-layer (W, b) views into `flat`; writing a view writes the flat array."""
        assert flat.shape == (self.size,), (flat.shape, self.size)
        tensors = [flat[s.offset:s.offset + s.size].reshape(s.shape) for s in self.slots]
        return tensors[0::2], tensors[1::2]

    def zeros(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.float32)
