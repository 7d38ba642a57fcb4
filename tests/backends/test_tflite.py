"""The TFLite format and backend, checked against the real LiteRT interpreter on real files: the split
reproduces the file, a written head reproduces NumPy, bad files fail with a named cause, and a model
the project did not write (tflite-micro's sine_float.tflite) goes through the same steps."""

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefdfa import BadModelError
from edgefdfa.backends import tflite as backend
from edgefdfa.datasets import load
from edgefdfa.formats import tflite as fmt
from edgefdfa.formats.tflite import Builder, schema
from head_reference import head_forward  # tests/backends is on sys.path (pytest's prepend mode)

pytestmark = pytest.mark.skipif(backend.NAME is None,
                                reason="no TFLite interpreter installed (pip install ai-edge-litert)")

X_DIGITS = load("digits").X_test  # (450, 64) real inputs in [0, 1]
def numpy_head(split, features, head=None):
    """The reference: the split's head (or `head`'s (W, b)) on the features, in float64 NumPy."""
    weights = head if head is not None else [(layer.W, layer.b) for layer in split.head]
    return head_forward([(W, b, layer.activation) for (W, b), layer in zip(weights, split.head)], features,
                        split.softmax)


def run_file(data, X):
    """The interpreter on each sample of X (a batch of one each), outputs flattened per sample."""
    session = backend.Session(data)
    return np.array([session.run(x[None]).ravel() for x in X])


def split_outputs(split, X, head=None):
    """Backbone in the interpreter, then the head in NumPy."""
    features = X if split.backbone is None else run_file(split.backbone, X)
    return numpy_head(split, features, head)


def mlp_layers(acts, seed=0):
    """64 -> 24 -> 20 -> 10; the middle layer has no bias."""
    rng = np.random.default_rng(seed)
    sizes = [64, 24, 20, 10]
    layers = [(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32),
               rng.normal(0, 0.5, n_out).astype(np.float32), act)
              for n_in, n_out, act in zip(sizes, sizes[1:], acts)]
    W, _, act = layers[1]
    layers[1] = (W, None, act)
    return layers


def parsed(data):
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def raw(buffer):
    return b"" if buffer.data is None else bytes(buffer.data)


# ------------------------------------------------------------------------------------ dense models


@pytest.mark.parametrize("acts", [("relu", "tanh", "identity"), ("sigmoid", "relu", "tanh"),
                                  ("tanh", "sigmoid", "relu")])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "logits"])
def test_split_of_an_mlp_reproduces_the_file(acts, fused, softmax):
    layers = mlp_layers(acts)
    data = fmt.dense_model(layers, softmax=softmax, fused=fused)
    split = fmt.split(data, None, "mlp.tflite")
    assert split.backbone is None and split.softmax == softmax
    assert [d.activation for d in split.head] == list(acts)
    for dense, (W, b, _) in zip(split.head, layers):
        assert np.array_equal(dense.W, W) and np.array_equal(dense.b, np.zeros(len(W)) if b is None else b)
    assert split.input.shape == split.head_input.shape == (1, 64) and split.output.shape == (1, 10)
    expected = run_file(data, X_DIGITS)
    np.testing.assert_allclose(numpy_head(split, X_DIGITS), expected, atol=1e-5)
    for head in (1, 2):
        part = fmt.split(data, head, "mlp.tflite")
        assert len(part.head) == head and part.head_input.shape == (1, {1: 20, 2: 24}[head])
        np.testing.assert_allclose(split_outputs(part, X_DIGITS), expected, atol=1e-5)


def test_describe_lists_the_operators():
    data = fmt.dense_model(mlp_layers(("relu", "sigmoid", "identity")), softmax=True, fused=False)
    d = fmt.describe(data, "mlp.tflite")
    assert d.format == "tflite" and d.details["schema_version"] == 3
    assert d.operators == ["FULLY_CONNECTED", "RELU", "FULLY_CONNECTED", "LOGISTIC", "FULLY_CONNECTED", "SOFTMAX"]
    assert [(t.name, t.shape, t.dtype) for t in d.inputs] == [("input", (1, 64), "float32")]


def test_a_dynamic_batch_runs_as_given():
    data = fmt.dense_model(mlp_layers(("relu", "tanh", "identity")), input_shape=(None, 64))
    session = backend.Session(data)
    assert session.input.shape == (None, 64)
    batch = session.run(X_DIGITS[:50])
    assert batch.shape == (50, 10) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, run_file(data, X_DIGITS[:50]), atol=1e-5)


# --------------------------------------------------------------------- a backbone that is not dense


def imu_model():
    """BasicMotions windows (1, 6, 100) -> per-channel mean, std, max, min -> standardised -> dense
    24-16 relu -> dense 16-4 -> softmax; and the NumPy features for checking the backbone."""
    ds = load("basicmotions")
    X = ds.X_test  # (40, 6, 100) real recordings

    def features(X):
        mean, std = X.mean(axis=2), X.std(axis=2)
        return np.stack([mean, std, X.max(axis=2), X.min(axis=2)], axis=-1).reshape(len(X), 24)

    F = features(ds.X_train)
    mu, inv_sd = F.mean(axis=0).astype(np.float32), (1 / F.std(axis=0)).astype(np.float32)
    rng = np.random.default_rng(1)
    W1, b1 = rng.normal(0, 0.3, (16, 24)).astype(np.float32), rng.normal(0, 0.1, 16).astype(np.float32)
    W2, b2 = rng.normal(0, 0.3, (4, 16)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)

    g = Builder()
    x = g.input("window", (1, 6, 100))
    axis = g.const(np.array([2], np.int32), "time")
    mean_k = g.op("MEAN", [x, axis], (1, 6, 1), keep_dims=True)
    centred = g.op("SUB", [x, mean_k], (1, 6, 100))
    var = g.op("MEAN", [g.op("MUL", [centred, centred], (1, 6, 100)), axis], (1, 6, 1), keep_dims=True)
    stats = [mean_k, g.op("SQRT", [var], (1, 6, 1)), g.op("REDUCE_MAX", [x, axis], (1, 6, 1), keep_dims=True),
             g.op("REDUCE_MIN", [x, axis], (1, 6, 1), keep_dims=True)]
    raw = g.op("RESHAPE", [g.op("CONCATENATION", stats, (1, 6, 4), axis=2)], (1, 24))
    h = g.op("MUL", [g.op("SUB", [raw, g.const(mu, "mu")], (1, 24)), g.const(inv_sd, "inv_sd")], (1, 24))
    h = g.fully_connected(h, W1, b1, "relu", "fc1")
    h = g.fully_connected(h, W2, b2, "identity", "fc2")
    data = g.finish([x], [g.op("SOFTMAX", [h], (1, 4), "probabilities")])
    return data, X, (features(X) - mu) * inv_sd


def test_split_of_a_feature_backbone_reproduces_the_file():
    data, X, standardised = imu_model()
    expected = run_file(data, X)
    assert np.allclose(expected.sum(axis=1), 1, atol=1e-5)
    for head in (None, 1, 2):
        split = fmt.split(data, head, "imu.tflite")
        assert split.softmax and len(split.head) == (head or 2)
        assert split.input.shape == (1, 6, 100) and split.output.shape == (1, 4)
        np.testing.assert_allclose(split_outputs(split, X), expected, atol=1e-5)
    features = run_file(fmt.split(data, 2, "imu.tflite").backbone, X)
    np.testing.assert_allclose(features, standardised, atol=1e-4)  # the Builder's ops mean what they say


def test_a_head_longer_than_the_trailing_run_names_the_operator_that_stops_it():
    data, _, _ = imu_model()
    with pytest.raises(BadModelError, match=r"imu\.tflite.*head of 3.*has 2.*operator 10 \(MUL\) is not a dense layer"):
        fmt.split(data, 3, "imu.tflite")


# ----------------------------------------------------------------------------------- write_head


def new_head(split, seed=5):
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 0.4, d.W.shape).astype(np.float32), rng.normal(0, 0.3, d.b.shape).astype(np.float32))
            for d in split.head]


def test_written_head_reproduces_numpy_and_leaves_the_rest_alone():
    data, X, _ = imu_model()
    split = fmt.split(data, None, "imu.tflite")
    head = new_head(split)
    written = fmt.write_head(data, head, "imu.tflite")
    assert written[4:8] == b"TFL3"
    np.testing.assert_allclose(run_file(written, X), split_outputs(split, X, head), atol=1e-5)
    again = fmt.split(written, None, "imu.tflite")
    for dense, (W, b) in zip(again.head, head):
        assert np.array_equal(dense.W, W) and np.array_equal(dense.b, b)

    before, after = parsed(data), parsed(written)
    operators = fmt.describe(data, "imu.tflite").operators
    assert fmt.describe(written, "imu.tflite").operators == operators
    g = before.subgraphs[0]
    head_buffers = {g.tensors[t].buffer for op, kind in zip(g.operators, operators) if kind == "FULLY_CONNECTED"
                    for t in op.inputs[1:]}  # weights and bias of the two layers
    assert len(head_buffers) == 4 and len(before.buffers) == len(after.buffers)
    for k, (old, new) in enumerate(zip(before.buffers, after.buffers)):
        if k not in head_buffers:
            assert raw(old) == raw(new), k


def test_a_layer_without_bias_gains_one_only_when_it_learned_one():
    data = fmt.dense_model(mlp_layers(("relu", "tanh", "identity")), softmax=True)
    split = fmt.split(data, None, "mlp.tflite")
    head = new_head(split)
    written = fmt.write_head(data, head, "mlp.tflite")
    assert len(parsed(written).subgraphs[0].tensors) == len(parsed(data).subgraphs[0].tensors) + 1
    np.testing.assert_allclose(run_file(written, X_DIGITS), numpy_head(split, X_DIGITS, head), atol=1e-5)

    head[1] = (head[1][0], np.zeros_like(head[1][1]))
    written = fmt.write_head(data, head, "mlp.tflite")
    assert len(parsed(written).subgraphs[0].tensors) == len(parsed(data).subgraphs[0].tensors)
    np.testing.assert_allclose(run_file(written, X_DIGITS), numpy_head(split, X_DIGITS, head), atol=1e-5)


def test_write_head_refuses_shared_weights_and_wrong_shapes():
    W = np.eye(8, dtype=np.float32)
    g = Builder()
    x = g.input("x", (1, 8))
    h = g.fully_connected(x, W, None, "relu")
    y = g.fully_connected(h, W, None, "identity")
    g.graph.tensors[g.graph.operators[1].inputs[1]].buffer = g.graph.tensors[g.graph.operators[0].inputs[1]].buffer
    data = g.finish([x], [y])
    split = fmt.split(data, None, "tied.tflite")
    np.testing.assert_allclose(numpy_head(split, X_DIGITS[:5, :8]), run_file(data, X_DIGITS[:5, :8]), atol=1e-6)
    with pytest.raises(BadModelError, match=r"tied\.tflite: the weights of operator 1 \(FULLY_CONNECTED\).*shared"):
        fmt.write_head(data, [(W, np.zeros(8, np.float32))], "tied.tflite")
    with pytest.raises(BadModelError, match=r"operator 1 \(FULLY_CONNECTED\) has weights \(8, 8\).*got \(8, 7\)"):
        fmt.write_head(data, [(W[:, :7], np.zeros(8))], "tied.tflite")


# ---------------------------------------------------------------------------------------- errors


def test_bytes_that_are_not_a_tflite_model_are_refused():
    data = fmt.dense_model(mlp_layers(("relu", "tanh", "identity")))
    noise = np.random.default_rng(0).bytes(4000)
    for bad in (data[: len(data) // 2], data[:6], noise, noise[:4] + b"TFL3" + noise[8:], b""):
        for read in (fmt.describe, lambda d, n: fmt.split(d, None, n), lambda d, n: fmt.write_head(d, [], n)):
            with pytest.raises(BadModelError, match=r"bad\.tflite is not a valid TFLite model"):
                read(bad, "bad.tflite")
    for bad in (data[: len(data) // 2], noise):
        # checked before any interpreter sees them: tflite-runtime 2.14 would crash the process
        with pytest.raises(BadModelError, match=r"bad\.tflite is not a valid TFLite model"):
            backend.Session(bad, name="bad.tflite")


def fused_then(fused, layers_after):
    """A FULLY_CONNECTED fusing `fused` (RELU6, TANH: LiteRT refuses the latter) as the first layer, then
    dense layers."""
    rng = np.random.default_rng(0)
    g = Builder()
    x = g.input("x", (1, 8))
    h = g.op("FULLY_CONNECTED", [x, g.const(rng.normal(size=(8, 8))), -1], (1, 8),
             fused_activation_function=getattr(schema.ActivationFunctionType, fused))
    for act in layers_after:
        h = g.fully_connected(h, rng.normal(size=(8, 8)), rng.normal(size=8), act)
    return g.finish([x], [h])


@pytest.mark.parametrize("fused", ["RELU6", "TANH"])
def test_an_unsupported_operator_in_the_head_position_is_named(fused):
    stop = rf"operator 0 \(FULLY_CONNECTED\) fuses activation {fused}"
    with pytest.raises(BadModelError, match=rf"m\.tflite: nothing trainable.*{stop}"):
        fmt.split(fused_then(fused, []), None, "m.tflite")
    data = fused_then(fused, ["relu"])
    assert len(fmt.split(data, None, "m.tflite").head) == 1
    with pytest.raises(BadModelError, match=rf"head of 2.*has 1: {stop}"):
        fmt.split(data, 2, "m.tflite")


def test_a_softmax_with_another_beta_is_refused():
    g = Builder()
    x = g.input("x", (1, 8))
    h = g.fully_connected(x, np.eye(8), None, "identity")
    data = g.finish([x], [g.op("SOFTMAX", [h], (1, 8), beta=0.5)])
    with pytest.raises(BadModelError, match=r"operator 1 \(SOFTMAX\) has beta 0\.5"):
        fmt.split(data, None, "m.tflite")


def test_an_int8_head_is_read_dequantized():
    g = Builder()
    x = g.input("x", (1, 8), "int8", quantization=(0.05, 0))
    w = g.const(np.arange(32, dtype=np.int8).reshape(4, 8), "w", quantization=(0.02, 0))
    b = g.const(np.array([100, -100, 0, 7], np.int32), "b", quantization=(0.001, 0))
    y = g.op("FULLY_CONNECTED", [x, w, b], (1, 4), dtype="int8", quantization=(0.1, 0))
    (layer,) = fmt.split(g.finish([x], [y]), None, "q.tflite").head
    assert layer.form == "int8"
    np.testing.assert_allclose(layer.W, np.arange(32).reshape(4, 8) * np.float32(0.02), rtol=1e-6)
    np.testing.assert_allclose(layer.b, [0.1, -0.1, 0.0, 0.007], rtol=1e-5)


def test_a_head_with_int16_activations_is_refused_by_name():
    g = Builder()
    x = g.input("x", (1, 8), "int16", quantization=(0.05, 0))
    w = g.const(np.ones((4, 8), np.int8), "w", quantization=(0.02, 0))
    y = g.op("FULLY_CONNECTED", [x, w, -1], (1, 4), dtype="int16", quantization=(0.1, 0))
    with pytest.raises(BadModelError, match=r"q\.tflite: nothing trainable.*operator 0 \(FULLY_CONNECTED\) "
                                            r"computes in int16: int16 activations \(16x8 quantization\) are not"):
        fmt.split(g.finish([x], [y]), None, "q.tflite")


def test_session_quantizes_inputs_and_dequantizes_outputs():
    g = Builder()
    x = g.input("x", (1, 16), "int8", quantization=(0.05, 3))
    f = g.op("DEQUANTIZE", [x], (1, 16))
    data = g.finish([x], [g.op("QUANTIZE", [f], (1, 16), dtype="int8", quantization=(0.1, -2))])
    session = backend.Session(data)
    assert session.input.dtype == session.output.dtype == "int8"
    v = np.linspace(-5, 5, 16, dtype=np.float32)[None]
    y = session.run(v)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, v, atol=0.05 / 2 + 0.1 / 2 + 1e-6)


def test_session_refuses_a_wrong_shape_with_both_shapes():
    session = backend.Session(fmt.dense_model(mlp_layers(("relu", "tanh", "identity"))), name="mlp.tflite")
    with pytest.raises(BadModelError, match=r"mlp\.tflite: input 'input' has shape \(1, 64\); given \(1, 65\)"):
        session.run(np.zeros((1, 65), np.float32))
    with pytest.raises(BadModelError, match=r"has shape \(1, 64\); given \(64,\)"):
        session.run(np.zeros(64, np.float32))


# -------------------------------------------------------------------- choosing the interpreter


@pytest.fixture
def reimport(monkeypatch):
    """Re-import the backend under a patched environment, and restore it afterwards."""
    yield lambda: importlib.reload(backend)
    monkeypatch.undo()
    importlib.reload(backend)


def test_litert_is_preferred_and_can_be_forced(monkeypatch, reimport):
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("LiteRT is not installed here")
    monkeypatch.delenv("EDGEFDFA_TFLITE", raising=False)
    assert reimport().NAME == "litert"
    monkeypatch.setenv("EDGEFDFA_TFLITE", "litert")
    assert reimport().NAME == "litert"


def test_a_forced_interpreter_that_is_missing_says_what_to_install(monkeypatch, reimport):
    monkeypatch.setenv("EDGEFDFA_TFLITE", "tensorflow")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if TensorFlow were not installed
    module = reimport()
    assert module.NAME is None
    with pytest.raises(BadModelError, match=r"cannot run m\.tflite: .*tensorflow.*pip install ai-edge-litert"):
        module.Session(b"", name="m.tflite")
    monkeypatch.setenv("EDGEFDFA_TFLITE", "onnxruntime")
    with pytest.raises(BadModelError, match=r"EDGEFDFA_TFLITE='onnxruntime' is not one of litert, tflite_runtime, "):
        reimport().Session(b"")


def test_without_litert_the_next_interpreter_is_tried(monkeypatch, reimport):
    monkeypatch.delenv("EDGEFDFA_TFLITE", raising=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # as if LiteRT were not installed
    fallback = next((name for name in ("tflite_runtime", "tensorflow") if importlib.util.find_spec(name)), None)
    module = reimport()
    assert module.NAME == fallback
    if fallback is None:
        with pytest.raises(BadModelError, match=r"litert: .*tflite_runtime: .*tensorflow: .*pip install ai-edge-lite"):
            module.Session(b"")


# ------------------------------------------------------------------- a model we did not write


def sine_model() -> bytes:
    """sine_float.tflite from the tflite-micro wheel: Keras dense 1-16 relu, 16-16 relu, 16-1,
    converted by TensorFlow's converter (dynamic batch)."""
    spec = importlib.util.find_spec("tflite_micro")
    if spec is None:
        pytest.skip("tflite-micro is not installed (pip install tflite-micro): it ships sine_float.tflite")
    path = Path(spec.origin).parent / "python" / "tflite_micro" / "sine_float.tflite"
    if not path.exists():
        pytest.skip(f"this tflite-micro does not ship {path.name}")
    return path.read_bytes()


X_SINE = np.linspace(0, 2 * np.pi, 200, dtype=np.float32)[:, None]  # (200, 1), the model's training range


def test_third_party_model_splits_and_reproduces():
    data = sine_model()
    expected = backend.Session(data).run(X_SINE)  # one dynamic batch
    assert np.abs(expected.ravel() - np.sin(X_SINE.ravel())).max() < 0.2  # it is the sine model
    split = fmt.split(data, None, "sine_float.tflite")
    assert [d.W.shape for d in split.head] == [(16, 1), (16, 16), (1, 16)]
    assert [d.activation for d in split.head] == ["relu", "relu", "identity"] and not split.softmax
    assert split.backbone is None and split.input.shape == (None, 1)
    for head in (None, 1, 2):
        part = fmt.split(data, head, "sine_float.tflite")
        np.testing.assert_allclose(split_outputs(part, X_SINE), expected, atol=1e-5)
    with pytest.raises(BadModelError, match=r"head of 4.*has 3: it starts at the model input"):
        fmt.split(data, 4, "sine_float.tflite")


def test_third_party_model_takes_a_written_head():
    data = sine_model()
    split = fmt.split(data, None, "sine_float.tflite")
    head = new_head(split)
    written = fmt.write_head(data, head, "sine_float.tflite")
    np.testing.assert_allclose(backend.Session(written).run(X_SINE), split_outputs(split, X_SINE, head), atol=1e-5)
    assert fmt.describe(written, "w").details["description"] == "MLIR Converted."
    assert [m.name for m in parsed(written).metadata] == [m.name for m in parsed(data).metadata]
