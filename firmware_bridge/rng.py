"""The device's normal draws in Python, bit for bit those of firmware_bridge/c/edgefdfa_rng.c: the
Python device and the C device perturb (and so learn) identically from one seed.

xoshiro128** on 32-bit words, seeded by splitmix32; a draw is the sum of four 16-bit uniforms, centred
and scaled to unit variance by one float32 multiply (edgefdfa_rng.h says why).
"""

from __future__ import annotations

import numpy as np

_MASK = 0xFFFFFFFF
_CENTRE = 131070  # 2 * 65535: the mean of four 16-bit uniforms
_SCALE = np.float32(float.fromhex("0x1.bb67aep-16"))  # 1 / sqrt((65536**2 - 1) / 3), as the C rounds it


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


class Rng:
    """The generator's state (four 32-bit words) and its draws."""

    def __init__(self, seed: int):
        if not 0 <= seed <= _MASK:
            raise ValueError(f"seed must be a 32-bit unsigned integer, got {seed}")
        z, words = seed, []
        for _ in range(4):  # splitmix32
            z = (z + 0x9E3779B9) & _MASK
            x = ((z ^ (z >> 16)) * 0x85EBCA6B) & _MASK
            x = ((x ^ (x >> 13)) * 0xC2B2AE35) & _MASK
            words.append(x ^ (x >> 16))
        self.state = words

    def next(self) -> int:
        """The next 32 uniform bits (xoshiro128**)."""
        s = self.state
        result = (_rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 9) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def normals(self, n: int) -> np.ndarray:
        """The next n draws of zero mean and unit variance, as (n,) float32."""
        sums = np.empty(n, np.int32)
        for i in range(n):
            a, b = self.next(), self.next()
            sums[i] = (a & 0xFFFF) + (a >> 16) + (b & 0xFFFF) + (b >> 16) - _CENTRE
        return sums.astype(np.float32) * _SCALE  # exact int -> float, then one correctly rounded multiply
