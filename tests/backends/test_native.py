"""The compiled head (edgefdfa/native.py, edgefdfa/_head.c): the learner's forward pass in C on its
weights in place, behind each file's backbone, checked against the NumPy forward pass
(EDGEFDFA_NATIVE=0): same outputs and features, after learning too, the same refusals, and a new
learner or a loaded checkpoint is what the head reads."""

import os

import numpy as np
import pytest

import edgefdfa
from edgefdfa import BadSampleError, native
from edgefdfa.backends import tflite as tflite_backend
from test_model import FILES, samples  # tests/backends is on sys.path (pytest's prepend mode)

FILES = [p for p in FILES if p.suffix == ".onnx" or tflite_backend.NAME is not None]


@pytest.fixture(autouse=True)
def built():
    """Skip where the module was not built, unless CI is set: there it must have been (.ci/run
    installs what the build needs)."""
    if not native.built():
        why = "the compiled head was not built (pip install -e . needs a C compiler and python3-dev)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so it must run", pytrace=False)
        pytest.skip(why)


@pytest.fixture(params=FILES, ids=lambda p: p.name)
def path(request):
    return request.param


def pair(path, monkeypatch, **options):
    """(the file with the compiled head, the same file with the NumPy head), same seed and options."""
    monkeypatch.delenv("EDGEFDFA_NATIVE", raising=False)
    fast = edgefdfa.load(path, **options)
    monkeypatch.setenv("EDGEFDFA_NATIVE", "0")
    whole = edgefdfa.load(path, **options)
    monkeypatch.delenv("EDGEFDFA_NATIVE")
    assert fast.learner.compiled, "built, but the learner predicts in NumPy"
    assert not whole.learner.compiled
    return fast, whole


def assert_same(fast, whole, X):
    for x in X:
        (out, features), (out_, features_) = fast.observe(x), whole.observe(x)
        assert np.allclose(out, out_, atol=1e-5) and np.allclose(features, features_, atol=1e-5)
        assert np.allclose(fast.predict_proba_one(x), whole.predict_proba_one(x), atol=1e-5)
        assert fast.predict_one(x) == whole.predict_one(x)


def test_same_outputs_as_the_whole_file_before_and_after_learning(path, monkeypatch):
    fast, whole = pair(path, monkeypatch, lr=0.05)
    X, y = samples(path, 200)
    assert_same(fast, whole, X[100:])  # held-out inputs the learners never see
    for x, t in zip(X[:100], y[:100]):
        assert np.isclose(fast.learn_one(x, t), whole.learn_one(x, t), atol=1e-4)
    assert fast.learner.n_updates == 100
    assert_same(fast, whole, X[100:])


def test_weights_written_in_place_are_read_at_once(path, monkeypatch):
    fast, _ = pair(path, monkeypatch)
    x = samples(path, 1)[0][0]
    before = fast.output_one(x)
    fast.learner.net.b[-1][0] += 1.0  # no step taken: the C head reads the learner's arrays in place
    after = fast.output_one(x)
    assert not np.allclose(before, after)
    fast.learner.net.b[-1][0] -= 1.0
    assert np.allclose(fast.output_one(x), before, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_with_the_same_message(path, monkeypatch, bad):
    fast, whole = pair(path, monkeypatch)
    x = samples(path, 1)[0][0].copy()
    x.flat[x.size // 2 + 1] = bad
    messages = []
    for model in (fast, whole):
        for call in (model.observe, model.predict_one, model.predict_proba_one, model.output_one):
            with pytest.raises(BadSampleError, match="NaN or Inf at") as e:
                call(x)
            messages.append(str(e.value))
    assert len(set(messages)) == 1
    x.flat[x.size // 2 + 1] = 0.0
    assert np.allclose(fast.output_one(x), whole.output_one(x), atol=1e-5)  # a refusal leaves nothing behind


def test_samples_in_any_memory_layout_give_the_same_outputs(path, monkeypatch):
    """A float32 sample that is not one C-ordered block (a strided slice, a Fortran-ordered copy, a
    read-only array) is copied into the backbone's input all the same."""
    fast, whole = pair(path, monkeypatch)
    X = samples(path, 3)[0].astype(np.float32)
    wide = np.repeat(X, 2, axis=-1)[..., ::2]  # every other column: the samples, strided
    assert not wide[0].flags.c_contiguous and np.array_equal(wide[0], X[0])
    fortran = np.asfortranarray(X[1])
    frozen = X[2].copy()
    frozen.flags.writeable = False
    for x in (wide[0], fortran, frozen):
        assert np.allclose(fast.output_one(x), whole.output_one(np.ascontiguousarray(x)), atol=1e-5)


def test_the_same_values_in_another_shape_or_type(path, monkeypatch):
    """A sample of the right size but another shape is refused on both paths (the same message), and
    one of another dtype taken as the same values."""
    fast, whole = pair(path, monkeypatch)
    x = samples(path, 1)[0][0].astype(np.float32)
    reshaped = x.reshape(x.shape[::-1]) if x.ndim > 1 else x.reshape(1, -1)
    messages = set()
    for model in (fast, whole):
        with pytest.raises(BadSampleError, match="input has shape") as e:
            model.predict_proba_one(reshaped)
        messages.add(str(e.value))
    assert len(messages) == 1
    assert np.allclose(fast.predict_proba_one(x.astype(np.float64)), whole.predict_proba_one(x), atol=1e-5)
    assert np.allclose(fast.observe(x.tolist())[1], whole.observe(x)[1], atol=1e-5)


def test_a_new_learner_and_a_loaded_checkpoint_are_what_the_head_reads(path, monkeypatch, tmp_path):
    fast, whole = pair(path, monkeypatch, lr=0.05)
    X, y = samples(path, 60)
    for x, t in zip(X[:40], y[:40]):
        whole.learn_one(x, t)
    whole.save(tmp_path / "adapted.npz")
    fast.learner = whole.learner  # replaced: its own head computes from now on
    assert_same(fast, whole, X[40:])
    loaded = edgefdfa.load_checkpoint(tmp_path / "adapted.npz")
    assert loaded.learner.compiled
    assert_same(loaded, whole, X[40:])
    fast.learner = edgefdfa.load(path).learner  # back to the file's own head
    fast.learner.load_state(*whole.learner.state())  # written into its arrays in place
    assert_same(fast, whole, X[40:])


def test_the_fallback_when_switched_off(path, monkeypatch):
    monkeypatch.setenv("EDGEFDFA_NATIVE", "0")
    assert not native.available()
    assert not edgefdfa.load(path).learner.compiled


def test_the_learners_features_in_another_layout_or_type():
    """The compiled forward pass takes a C-ordered float32 row as it is; any other is checked, cast
    or refused by name in Python, as on the NumPy path."""
    learner = edgefdfa.MLP([6, 5, 3], seed=0)
    assert learner.compiled
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    expected = learner.predict_proba_one(x)
    for same in (x.astype(np.float64), x.tolist(), np.repeat(x, 2)[::2], x[None]):
        assert np.allclose(learner.predict_proba_one(same), expected, atol=1e-6)
    for bad, message in ((np.full(6, np.nan, np.float32), "not a finite"), (np.ones(5, np.float32), "shape")):
        with pytest.raises(BadSampleError, match=message):
            learner.predict_proba_one(bad)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_dequantize_looks_up_every_code_as_the_fallback_does(dtype):
    """An 8-bit backbone output's codes to real values: the C call and NumPy's take agree on all 256
    codes (negative int8 codes included) and refuse buffers of the wrong kind."""
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    table = np.linspace(-3, 5, 256, dtype=np.float32)
    compiled, fallback = np.zeros(256, np.float32), np.full(256, np.nan, np.float32)
    native.dequantize(compiled, codes, table)
    native._dequantize(fallback, codes, table)
    np.testing.assert_array_equal(compiled, table[codes.view(np.uint8)])
    np.testing.assert_array_equal(compiled, fallback)
    with pytest.raises(ValueError, match="dequantize"):
        native.dequantize(np.zeros(255, np.float32), codes, table)
    with pytest.raises(ValueError, match="dequantize"):
        native.dequantize(compiled, codes.astype(np.int16), table)
