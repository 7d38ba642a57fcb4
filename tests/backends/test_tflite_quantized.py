"""Writing a learned head back into quantized .tflite files (Keras' converter made them, tests/zoo):
the stored values are the learned ones to within half a quantization step, biases sit at
in_scale * w_scale, activations take the scales the stream's ranges call for, and the float16 and
dynamic-range forms keep their types."""

from pathlib import Path

import numpy as np
import pytest

from edgefdfa.formats import tflite as fmt

ZOO = Path(__file__).resolve().parents[2] / "tests" / "zoo"


def learned(split, seed=0):
    """The file's head moved as learning would move it: every weight and bias changed."""
    rng = np.random.default_rng(seed)
    return [(d.W + 0.05 * rng.standard_normal(d.W.shape).astype(np.float32),
             d.b + 0.05 * rng.standard_normal(d.b.shape).astype(np.float32)) for d in split.head]


def fully_connected(data: bytes) -> list[tuple[list, list, object]]:
    """Per FULLY_CONNECTED in file order: its input, weights, bias and output tensors (TensorT)."""
    model = fmt.schema.ModelT.InitFromObj(fmt.schema.Model.GetRootAs(data, 0))
    g, codes = model.subgraphs[0], model.operatorCodes
    fc = fmt.schema.BuiltinOperator.FULLY_CONNECTED
    return [[g.tensors[t] if t >= 0 else None for t in [*op.inputs, *op.outputs]] for op in g.operators
            if max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode) == fc]


def scales(tensor) -> np.ndarray:
    return np.asarray(tensor.quantization.scale, np.float64)


@pytest.mark.parametrize("name", ["keras-digits-mlp-int8.tflite", "keras-imu-conv1d-int8-io.tflite",
                                  "keras-digits-gap-head-int8.tflite"])
def test_int8_layers_store_the_learned_head_and_the_calibrated_ranges(name):
    data = (ZOO / name).read_bytes()
    split = fmt.split(data, None, name)
    head = learned(split)
    L = len(head)
    relu = [d.activation == "relu" for d in split.head]
    ranges = np.array([[-3.0 - l, 5.0 + l, 0.0 if r else -3.0 - l, 5.0 + l] for l, r in enumerate(relu)], np.float32)
    out = fmt.write_head(data, head, name, ranges)
    again = fmt.split(out, None, name)
    layers, original = fully_connected(out)[-L:], fully_connected(data)[-L:]
    for l, ((W, b), d, (x, w, bias, y), (x0, *_)) in enumerate(zip(head, again.head, layers, original)):
        assert d.form == "int8"
        w_scale = scales(w)
        assert np.allclose(w_scale, (np.abs(W).max(axis=1) if len(w_scale) > 1 else np.abs(W).max()) / 127, rtol=1e-6)
        assert (np.abs(d.W - W) <= w_scale.reshape(-1, 1) / 2 * (1 + 1e-5)).all()  # round to nearest
        assert np.allclose(scales(bias), np.float32(scales(x)[0]) * w_scale.astype(np.float32), rtol=1e-6)
        assert (np.abs(d.b - b) <= scales(bias) / 2 * (1 + 1e-5)).all()
        if l == 0:  # the head's input is the frozen backbone's output: its scale stays
            assert np.array_equal(scales(x), scales(x0)) and x.quantization.zeroPoint[0] == x0.quantization.zeroPoint[0]
        lo, hi = (0.0, 5.0 + l) if d.activation == "relu" else (-3.0 - l, 5.0 + l)  # relu fused: h's range
        assert np.isclose(scales(y)[0], (hi - lo) / 255, rtol=1e-6)
        assert y.quantization.zeroPoint[0] == round(-128 - lo / ((hi - lo) / 255))


def test_without_ranges_the_files_activation_scales_stay():
    name = "keras-digits-mlp-int8.tflite"
    data = (ZOO / name).read_bytes()
    out = fmt.write_head(data, learned(fmt.split(data, None, name)), name)
    for (*_, y), (*_, y0) in zip(fully_connected(out), fully_connected(data)):
        assert np.array_equal(scales(y), scales(y0)) and list(y.quantization.zeroPoint) == list(y0.quantization.zeroPoint)


@pytest.mark.parametrize("name, dtype", [("keras-digits-mlp-float16.tflite", np.float16),
                                         ("keras-digits-wide-mlp-dynamic.tflite", np.int8)])
def test_float16_and_dynamic_range_layers_keep_their_types(name, dtype):
    data = (ZOO / name).read_bytes()
    split = fmt.split(data, None, name)
    head = learned(split)
    out = fmt.write_head(data, head, name)
    again = fmt.split(out, None, name)
    stored = {fmt.schema.TensorType.FLOAT16: np.float16, fmt.schema.TensorType.INT8: np.int8}
    model = fmt.schema.ModelT.InitFromObj(fmt.schema.Model.GetRootAs(out, 0))
    matrices = [stored.get(t.type) for t in model.subgraphs[0].tensors  # the constant weight matrices
                if list(t.shape) in [list(W.shape) for W, _ in head] and model.buffers[t.buffer].data is not None
                and len(model.buffers[t.buffer].data)]
    assert matrices and all(m == dtype for m in matrices)
    for (W, b), d in zip(head, again.head):
        step = 1e-3 if dtype == np.float16 else np.abs(W).max() / 127
        assert np.abs(d.W - W).max() <= step and np.abs(d.b - b).max() < 1e-3
    assert len(out) < 1.1 * len(data) + 1024
