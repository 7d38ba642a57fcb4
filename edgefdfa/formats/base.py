"""What a model-file format hands the runtime: the file cut into a frozen backbone (a model file of
the same format) and a trainable head of dense layers, plus what `edgefdfa info` prints.

Every format module (onnx.py, tflite.py) provides:

    SUFFIX: str                                                  ".onnx" / ".tflite"
    describe(data: bytes, name: str) -> Description             inputs, outputs, operators
    split(data: bytes, head: int | None, name: str) -> Split    head=None: the trailing run of dense layers
    write_head(data: bytes, head: list[tuple[W, b]], name: str) -> bytes
        the original file with the head's weights replaced (W (n_out, n_in), b (n_out,) float32),
        everything else byte-for-byte the same model; the result loads in the format's interpreter.
    inference_model(data: bytes, head: int, name: str) -> bytes
        the whole file with its trailing `head` dense layers' weights turned into inputs and the
        head's input added as an output: inputs [model input, W0, b0, W1, b1...] in the engine's
        convention (each layer computes f(x W^T + b)), outputs [model output, head input (unless it
        is the model input)]. One call then gives the output with the engine's live head and the
        features it learns from.

`name` is the file's name, used only in error messages. Every failure is a BadModelError naming
the file, and for an operator its name/index and type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dense:
    """One dense layer of a file's head, in the engine's convention: y = f(W x + b)."""

    W: np.ndarray  # (n_out, n_in) float32
    b: np.ndarray  # (n_out,) float32
    activation: str  # identity | relu | tanh | sigmoid
    where: str  # where it sits in the file, for messages: "node 'fc1' (Gemm)", "operator 7 (FULLY_CONNECTED)"


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]  # None (or -1 in the file) for a dynamic dimension
    dtype: str  # numpy dtype name: "float32", "int8", ...


@dataclass
class Description:
    """What `edgefdfa info` prints about a file, before any split."""

    format: str  # "onnx" | "tflite"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: list[str]  # op types in execution order, e.g. ["Conv", "Relu", "Flatten", "Gemm", ...]
    details: dict = field(default_factory=dict)  # ir/opset version, schema version, producer...


@dataclass
class Split:
    """The file cut in two. The backbone maps the model input to the head input."""

    backbone: bytes | None  # a model file of the same format; None when the head starts at the model input
    head: list[Dense]  # in forward order
    softmax: bool  # the file applies a softmax to the head's output (the engine's "ce" loss holds it)
    input: TensorInfo  # the model's input
    head_input: TensorInfo  # the backbone's output, flattened by the runtime to (n_in,)
    output: TensorInfo  # the model's output
