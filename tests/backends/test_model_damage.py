"""Damaged model files and model checkpoints, through the real interpreters: random byte damage
(flips, truncation, splices) of the shipped models, of an ONNX file's external data and of a model's
checkpoint gives an EdgeFDFAError or a correct load, never another exception, never non-finite head
weights; NaN or Inf in a head layer's weights refuses the file at load, naming the layer."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import edgefdfa
from edgefdfa import BadModelError, EdgeFDFAError
from edgefdfa.model import format_module

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
EXTERNAL = ROOT / "tests" / "zoo" / "torch-digits-mlp-matmul.onnx"  # its weights in .onnx.data beside it
SHIPPED = ["digits.onnx", "digits.tflite", "imu-activity.onnx", "imu-activity.tflite", "imu-activity-int8.tflite"]
EXAMPLES = int(os.environ.get("EDGEFDFA_FUZZ_EXAMPLES", "150"))  # a longer run: EDGEFDFA_FUZZ_EXAMPLES=5000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

damage = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "splice", "erase", "insert", "delete"]), st.floats(0, 1),
                            st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6)


def damaged(data: bytes, edits) -> bytes:
    """`data` with the edits applied: a bit flipped, a byte set, the tail cut, a run of the file copied
    over another place (a splice), 8 to 71 bytes erased to 0xFF as erased flash reads (a float32 of
    them is NaN), a byte inserted or deleted."""
    b = bytearray(data)
    for kind, where, other, value in edits:
        if not b:
            break
        k = min(int(where * len(b)), len(b) - 1)
        if kind == "flip":
            b[k] ^= 1 << (value % 8)
        elif kind == "set":
            b[k] = value
        elif kind == "cut":
            del b[k:]
        elif kind == "splice":
            j = min(int(other * len(b)), len(b) - 1)
            b[k:k + value + 1] = b[j:j + value + 1]
        elif kind == "erase":
            b[k:k + 8 + value % 64] = b"\xff" * len(b[k:k + 8 + value % 64])
        elif kind == "insert":
            b[k:k] = bytes([value])
        else:
            del b[k]
    return bytes(b)


def head_is_finite(model) -> bool:
    return all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in zip(model.learner.net.W, model.learner.net.b))


def runs_or_refuses(model) -> None:
    """A model that loaded answers a sample (or refuses it with an EdgeFDFAError)."""
    x = np.zeros([d or 1 for d in model.sample_shape], np.float32)
    try:
        out, features = model.observe(x)
    except EdgeFDFAError:
        return
    assert out.shape == (model.learner.n_outputs,) and features.shape == (model.n_features,)


@FUZZ
@given(which=st.sampled_from(SHIPPED), edits=damage)
def test_damaged_shipped_models_load_correctly_or_raise_an_edgefdfa_error(tmp_path, which, edits):
    path = tmp_path / which
    data = damaged((MODELS / which).read_bytes(), edits)
    path.write_bytes(data)
    try:  # what `edgefdfa info` prints
        format_module(path.suffix).describe(data, which)
    except BadModelError:
        pass
    try:
        model = edgefdfa.load(path)
    except EdgeFDFAError as exc:
        event(type(exc).__name__)
        return
    event("loaded")
    assert head_is_finite(model)
    runs_or_refuses(model)


@FUZZ
@given(edits=damage, in_data=st.booleans())
def test_damaged_external_data_loads_correctly_or_raises_an_edgefdfa_error(tmp_path, edits, in_data):
    """Damage in the .onnx file or in the .onnx.data file beside it."""
    data_file = EXTERNAL.with_name(EXTERNAL.name + ".data")
    shutil.copy(EXTERNAL, tmp_path / EXTERNAL.name)
    shutil.copy(data_file, tmp_path / data_file.name)
    target = tmp_path / (data_file.name if in_data else EXTERNAL.name)
    target.write_bytes(damaged(target.read_bytes(), edits))
    try:
        model = edgefdfa.load(tmp_path / EXTERNAL.name)
    except EdgeFDFAError as exc:
        event(type(exc).__name__)
        return
    event("loaded")
    assert head_is_finite(model)
    runs_or_refuses(model)


@pytest.fixture(scope="module")
def model_checkpoints(tmp_path_factory):
    """The bytes of a checkpoint of each shipped float model, after some learning."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name in ("digits.tflite", "imu-activity.onnx"):
        model = edgefdfa.load(MODELS / name)
        rng = np.random.default_rng(0)
        for _ in range(20):
            x = rng.random([d or 1 for d in model.sample_shape], dtype=np.float32)
            model.learn_one(x, int(rng.integers(0, model.learner.n_outputs)))
        model.save(folder / f"{name}.npz")
        out[name] = (folder / f"{name}.npz").read_bytes()
    return out


@FUZZ
@given(which=st.sampled_from(["digits.tflite", "imu-activity.onnx"]), edits=damage)
def test_damaged_model_checkpoints_load_correctly_or_raise_an_edgefdfa_error(tmp_path, model_checkpoints, which, edits):
    path = tmp_path / "c.npz"
    path.write_bytes(damaged(model_checkpoints[which], edits))
    try:
        model = edgefdfa.load_checkpoint(path)
    except EdgeFDFAError as exc:
        event(type(exc).__name__)
        return
    event("loaded")
    assert head_is_finite(model) and np.isfinite(model.learner.rule.state()["B"]).all()
    runs_or_refuses(model)


def poked(data: bytes, W: np.ndarray, value: float) -> bytes:
    """`data` with the first of W's float32 values, found as stored (W or its transpose), set to `value`."""
    for stored in (W, W.T):
        raw = np.ascontiguousarray(stored, "<f4").tobytes()
        k = data.find(raw[:64])
        if k >= 0 and data.find(raw[:64], k + 1) < 0:
            return data[:k] + np.float32(value).tobytes() + data[k + 4:]
    raise AssertionError("the weights are not stored as float32 in the file")


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("name", ["digits.onnx", "digits.tflite", "imu-activity.onnx", "imu-activity.tflite"])
def test_non_finite_head_weights_are_refused_at_load_naming_the_layer(tmp_path, name, value):
    good = (MODELS / name).read_bytes()
    layers = edgefdfa.load(MODELS / name).split.head
    for layer in layers:
        (tmp_path / name).write_bytes(poked(good, layer.W, value))
        with pytest.raises(BadModelError, match="NaN or Inf") as exc:
            edgefdfa.load(tmp_path / name)
        assert layer.where in str(exc.value) and name in str(exc.value)
    assert len(layers) >= 1


ABORTS = {  # damage to int8 tensor 13 that LiteRT 2.x meets with an assertion ending the process (SIGABRT)
    "no scale": lambda g: setattr(g.tensors[13].quantization, "scale", None),
    "no quantization": lambda g: setattr(g.tensors[13], "quantization", None),
    "zero scale": lambda g: setattr(g.tensors[13].quantization, "scale", [0.0]),
}


@pytest.mark.parametrize("damage", sorted(ABORTS))
def test_damage_that_aborts_the_interpreter_is_refused_before_it(tmp_path, damage):
    """Found by the fuzz test above: an int8 tensor of the int8 IMU model that lost its scale made
    LiteRT abort the whole process. The loader's checks refuse
    such a file, naming the tensor, before any interpreter sees it. In a child process, so that a
    regression is a failed test rather than a dead test run."""
    from edgefdfa.formats import tflite

    model = tflite._parse((MODELS / "imu-activity-int8.tflite").read_bytes(), "m")
    ABORTS[damage](model.subgraphs[0])
    path = tmp_path / "imu-activity-int8.tflite"
    path.write_bytes(tflite._serialize(model))
    code = ("import sys, edgefdfa\ntry:\n    edgefdfa.load(sys.argv[1])\nexcept edgefdfa.BadModelError as e:\n"
            "    print(e); sys.exit(3)")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, (done.returncode, done.stderr[-500:])
    assert "imu-activity-int8.tflite is not a valid TFLite model: tensor " in done.stdout



def test_a_tensor_name_that_is_not_utf8_is_a_bad_model_error(tmp_path):
    """Found by the fuzz test: eight bytes of 0xFF inside a tensor's name made LiteRT's
    get_input_details raise UnicodeDecodeError."""
    data = bytearray((MODELS / "imu-activity-int8.tflite").read_bytes())
    k = data.find(b"serving_default_window")
    data[k:k + 8] = b"\xff" * 8
    (tmp_path / "m.tflite").write_bytes(bytes(data))
    with pytest.raises(BadModelError, match=r"m.tflite is not a valid TFLite model: tensor 0 \(.*\) has a name that is not UTF-8"):
        edgefdfa.load(tmp_path / "m.tflite")
