"""The integer arithmetic of ONNX's linear quantization (QuantizeLinear / DequantizeLinear and the
QLinear*, QGemm and MatMulInteger ops that share their convention): real = (q - zero_point) * scale,
per tensor or per channel along one axis; and the scales and zero points a trained head is written
back with.

Weights are requantized symmetrically (zero point at the middle of the integer range, int8: 0), per
channel when the file's scale is per channel; an int32 bias at scale in_scale x w_scale with zero
point 0; activations affinely over their observed range, which always includes 0 (so that 0 is exact,
as ONNX Runtime's quantizer makes it).
"""

from __future__ import annotations

import numpy as np


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int | None) -> np.ndarray:
    """(q - zero_point) * scale in float32, the scale per tensor or per channel along `axis`."""
    scale = np.asarray(scale, np.float32)
    zero = np.zeros_like(scale, np.int64) if zero_point is None else np.asarray(zero_point, np.int64)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return (q.astype(np.int64) - zero).astype(np.float32) * scale


def symmetric(value: np.ndarray, dtype: np.dtype, scale_shape: tuple[int, ...], axis: int | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`value` quantized symmetrically into `dtype`: (q, scale shaped like the file's, zero point likewise).

    Per channel along `axis` when the file's scale holds more than one value; a channel of zeros gets
    scale 1 (any scale represents it exactly, and 1 keeps an int32 bias scale away from underflow).
    """
    info = np.iinfo(dtype)
    half = (int(info.max) - int(info.min)) // 2  # int8: 127, uint8: 127 around 128
    middle = int(info.max) - half
    if int(np.prod(scale_shape, dtype=np.int64)) > 1:
        other = tuple(k for k in range(value.ndim) if k != axis)
        peak = np.abs(value).max(axis=other)
    else:
        peak = np.abs(value).max(keepdims=False).reshape(())
    scale = np.where(peak > 0, peak / np.float32(half), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(value / _along(scale, value.ndim, axis)), -half, half).astype(np.int64) + middle
    zero = np.full(scale.shape, middle, np.int64)
    return q.astype(dtype), scale.reshape(scale_shape), zero.astype(dtype).reshape(scale_shape)


def bias32(b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """An int32 bias at `scale` (in_scale x w_scale, per tensor or per output), rounded and saturated."""
    info = np.iinfo(np.int32)
    return np.clip(np.rint(b.astype(np.float64) / scale.astype(np.float64)), info.min, info.max).astype(np.int32)


def affine(lo: float, hi: float, dtype: np.dtype) -> tuple[np.float32, int]:
    """Scale and zero point that map [min(lo, 0), max(hi, 0)] onto the whole range of `dtype`."""
    info = np.iinfo(dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return np.float32(1.0), 0 if info.min < 0 else int(info.max + 1) // 2
    scale = np.float32((hi - lo) / (int(info.max) - int(info.min)))
    zero = int(np.clip(np.rint(info.min - lo / float(scale)), info.min, info.max))
    return scale, zero


def _along(scale: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if scale.ndim == 0:
        return scale
    shape = [1] * ndim
    shape[axis] = scale.size
    return scale.reshape(shape)
