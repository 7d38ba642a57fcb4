"""What a model-file format hands the runtime: the file cut into a frozen backbone (a model file of
the same format) and a trainable head of dense layers, plus what `edgefdfa info` prints.

Every format module (onnx.py, tflite.py) provides:

    SUFFIX: str                                                  ".onnx" / ".tflite"
    read(path: Path) -> tuple[bytes, dict]
        the file's bytes, self-contained (ONNX: external data read from the model's folder, refusing
        paths that leave it, and embedded), and how the file stored them (`storage`, JSON-able: e.g.
        {"external_data": "model.onnx.data"}; {} for a plain file)
    write(path: Path, data: bytes, storage: dict) -> list[Path]
        write `data` atomically the way `storage` says (ONNX: weights to an external data file beside
        it when the source had one); returns the files written
    describe(data: bytes, name: str) -> Description             inputs, outputs, operators, the head;
                                                                never refuses a file it can parse
    split(data: bytes, head: int | None, name: str) -> Split    head=None: the trailing run of dense layers
    write_head(data: bytes, head: list[tuple[W, b]], name: str, ranges: np.ndarray | None = None) -> bytes
        the original file with the head's weights replaced (W (n_out, n_in), b (n_out,) float32),
        everything else the same model, each layer written back in its own form (Dense.form: int8
        weights requantized per channel, float16 as float16...); `ranges` (L, 4) float32 rows
        [min a, max a, min h, max h] of each layer's pre- and post-activation values seen on the
        stream recalibrate the scale and zero point of quantized activations (None: keep the file's).
        The result loads in the format's interpreter.

`name` is the file's name, used only in error messages. Every failure is a BadModelError naming
the file, and for an operator its name/index and type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..head import Dense

FORMS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, dequantized to float32 to run",
    "dynamic": "dynamic-range quantized (int8 weights, float activations)",
    "int8": "quantized (int8 weights, int32 bias, int8 activations)",
}


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]  # None (or -1 in the file) for a dynamic dimension
    dtype: str  # numpy dtype name: "float32", "int8", ...
    quantization: tuple[float, int] | None = None  # (scale, zero point) of a per-tensor quantized integer tensor


@dataclass
class Description:
    """What `edgefdfa info` prints about a file, before any split."""

    format: str  # "onnx" | "tflite"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: list[str]  # op types in execution order, e.g. ["Conv", "Relu", "Flatten", "Gemm", ...]
    details: dict = field(default_factory=dict)  # ir/opset version, schema version, producer...
    head: list[str] = field(default_factory=list)  # the layers split(head=None) takes: "operator 5 (FULLY_CONNECTED): 32 -> 4, relu, int8"
    stop: str = ""  # why the head stops where it does, and the fix when there is one ("--head 2", "re-export with ...")


@dataclass
class Split:
    """The file cut in two. The backbone maps the model input to the head input."""

    backbone: bytes | None  # a model file of the same format; None when the head starts at the model input
    head: list[Dense]  # in forward order
    softmax: bool  # the file applies a softmax to the head's output (the engine's "ce" loss holds it)
    input: TensorInfo  # the model's input
    head_input: TensorInfo  # the backbone's output, flattened by the runtime to (n_in,) float32 (dequantized)
    output: TensorInfo  # the model's output
