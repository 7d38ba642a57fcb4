"""Damaged ONNX files: whatever random byte damage does to a real file (a float MLP, a conv net, QDQ,
QOperator and dynamic-quantized heads), describe, split and write_head either succeed or raise BadModelError,
never another exception, and a head that splits has finite weights."""

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefdfa import BadModelError
from edgefdfa.formats import onnx as fmt
from test_onnx import GOOD, conv_model  # tests/backends is on sys.path (pytest's prepend mode)


def quantized_file(tmp_path_factory, how):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static
    from edgefdfa.datasets import load

    class Digits(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{"input": x[None]} for x in load("digits").X_train[:50]])

        def get_next(self):
            return next(self.samples, None)

    folder = tmp_path_factory.mktemp(how)
    (folder / "f.onnx").write_bytes(GOOD)
    if how == "dynamic":
        quantize_dynamic(folder / "f.onnx", folder / "q.onnx")
    else:
        quantize_static(folder / "f.onnx", folder / "q.onnx", Digits(),
                        quant_format=QuantFormat.QDQ if how == "qdq" else QuantFormat.QOperator)
    return (folder / "q.onnx").read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return [GOOD, conv_model(), *(quantized_file(tmp_path_factory, how) for how in ("qdq", "qop", "dynamic"))]


damage = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]), st.floats(0, 1),
                            st.integers(0, 255)), min_size=1, max_size=6)


def damaged(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, where, value in edits:
        if not b:
            break
        k = min(int(where * len(b)), len(b) - 1)
        if kind == "flip":
            b[k] ^= 1 << (value % 8)
        elif kind == "set":
            b[k] = value
        elif kind == "cut":
            del b[k:]
        elif kind == "insert":
            b[k:k] = bytes([value])
        else:
            del b[k]
    return bytes(b)


@settings(max_examples=int(os.environ.get("EDGEFDFA_FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 4), edits=damage)
def test_damaged_files_fail_only_with_bad_model_error(files, which, edits):
    data = damaged(files[which], edits)
    try:
        fmt.describe(data, "damaged.onnx")
    except BadModelError:
        pass
    try:
        split = fmt.split(data, None, "damaged.onnx")
    except BadModelError:
        return
    assert all(np.isfinite(l.W).all() and np.isfinite(l.b).all() for l in split.head)
    try:
        out = fmt.write_head(data, [(l.W, l.b) for l in split.head], "damaged.onnx")
    except BadModelError:
        return
    onnx.checker.check_model(onnx.load_model_from_string(out))
