"""EdgeModel.observe: the backbone in the file's interpreter and the head in the learner. Checked against a float64 NumPy reference of the engine's head, the original file, the backbone alone
and the exported file, before and after learning that writes the weights in place."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgefdfa
from edgefdfa import BadModelError, BadSampleError, native
from edgefdfa.backends import onnx as onnx_backend
from edgefdfa.backends import tflite as tflite_backend
from edgefdfa.export import export
from edgefdfa.formats import onnx as onnx_format
from edgefdfa.formats import tflite as tflite_format
from head_reference import head_forward  # tests/backends is on sys.path (pytest's prepend mode)
from test_model import FILES, file_outputs, samples

def engine_head(model, features):
    """The reference: the learner's current head on the features, in float64, with the file's Softmax."""
    net = model.learner.net
    layers = [(W, b, layer.activation) for W, b, layer in zip(net.W, net.b, model.split.head)]
    return head_forward(layers, np.asarray(features).reshape(-1, model.n_features), model.split.softmax)


def backbone_outputs(model, X):
    """The head's input as the split backbone alone computes it (the input itself without one)."""
    if model.split.backbone is None:
        return X.reshape(len(X), -1).astype(np.float32)
    return file_outputs(model.split.backbone, model.suffix, X)


@pytest.fixture(params=FILES, ids=lambda p: p.name)
def path(request):
    return request.param


def test_observe_reproduces_the_file_and_its_backbone(path):
    model = edgefdfa.load(path)
    X, _ = samples(path, 40)
    out, features = zip(*(model.observe(x) for x in X))
    assert np.allclose(out, file_outputs(path.read_bytes(), path.suffix, X), atol=1e-5)
    assert np.allclose(features, backbone_outputs(model, X), atol=1e-5)
    assert np.allclose(out, engine_head(model, np.array(features)), atol=1e-5)
    assert all(o.dtype == f.dtype == np.float32 and f.shape == (model.n_features,) for o, f in zip(out, features))


def test_observe_follows_learning_in_place(path, tmp_path):
    """The online loop: observe, then learn through the learner; the next observe sees the new weights."""
    model = edgefdfa.load(path, lr=0.05)
    learner = model.learner
    X, y = samples(path, 60)
    before = learner.net.params.copy()
    for x, t in zip(X, y):
        out, features = model.observe(x)
        assert np.allclose(out, engine_head(model, features)[0], atol=1e-5)
        learner.learn_one(features, t)
    assert not np.allclose(before, learner.net.params, atol=1e-4)  # it learned
    F = np.array([model.features(x) for x in X[:16]])
    learner.learn_many(F, y[:16])  # a mini-batch step is seen too
    out = np.array([model.output_one(x) for x in X])
    assert np.allclose(out, engine_head(model, backbone_outputs(model, X)), atol=1e-5)
    export(model, tmp_path / f"adapted{path.suffix}", path.suffix[1:])
    assert np.allclose(file_outputs((tmp_path / f"adapted{path.suffix}").read_bytes(), path.suffix, X), out, atol=1e-5)
    for x, t in zip(X[:10], y[:10]):  # and through model.learn_one
        model.learn_one(x, t)
        assert np.allclose(model.predict_proba_one(x), engine_head(model, model.features(x))[0], atol=1e-5)
        assert model.predict_one(x) == int(np.argmax(model.output_one(x)))


def test_bad_samples_are_refused_and_nothing_is_learned(path):
    model = edgefdfa.load(path)
    X, y = samples(path, 1)
    x = X[0]
    nan, inf = x.copy(), x.astype(np.float64)
    nan.flat[3] = np.nan
    inf.flat[-1] = 1e39  # finite in float64, Inf in float32
    bad = [("shape", np.zeros(7, np.float32)), ("shape", x[None]), ("NaN", nan), ("Inf", inf),
           ("dtype", np.full(x.shape, "a")), ("dtype", [["a"]])]
    before = model.learner.net.params.copy()
    for message, sample in bad:
        for call in (model.observe, model.predict_proba_one, model.features, lambda s: model.learn_one(s, y[0])):
            with pytest.raises(BadSampleError, match=message):
                call(sample)
    with pytest.raises(BadSampleError, match="class"):
        model.learn_one(x, 99)
    assert model.learner.n_updates == 0 and np.array_equal(before, model.learner.net.params)
    assert np.allclose(model.output_one(x.tolist()), model.output_one(x), atol=0)  # a list of numbers is fine


def _mlp(seed=0, bias=True):
    """8 -> 6 (relu) -> 5 (tanh) -> 3, float32."""
    rng = np.random.default_rng(seed)
    sizes, acts = [8, 6, 5, 3], ["relu", "tanh", "identity"]
    return [(rng.normal(0, 0.5, (n_out, n_in)).astype(np.float32),
             rng.normal(0, 0.5, n_out).astype(np.float32) if bias else None, act)
            for n_in, n_out, act in zip(sizes, sizes[1:], acts)]


LAYOUTS = {  # name -> (suffix, file bytes): every way a file may hold a dense head
    "onnx-gemm-alpha-beta-transB0": (".onnx", lambda: onnx_format.dense_model(
        _mlp(), softmax=False, gemm_attrs={"alpha": 2.0, "beta": 0.5, "transB": 0})),
    "onnx-matmul-add": (".onnx", lambda: onnx_format.dense_model(_mlp(), softmax=False, use_gemm=False)),
    "onnx-no-bias": (".onnx", lambda: onnx_format.dense_model(_mlp(bias=False), softmax=True)),
    "tflite-separate-activations": (".tflite", lambda: tflite_format.dense_model(_mlp(), fused=False)),
    "tflite-no-bias": (".tflite", lambda: tflite_format.dense_model(_mlp(bias=False), softmax=True)),
}


@pytest.mark.parametrize("layout, loss", [(k, loss) for k in LAYOUTS for loss in ("ce", "mse")
                                          if loss == "ce" or "no-bias" not in k])  # those end in Softmax: ce only
def test_every_head_layout(layout, loss, tmp_path):
    suffix, make = LAYOUTS[layout]
    data = make()
    path = tmp_path / f"mlp{suffix}"
    path.write_bytes(data)
    model = edgefdfa.load(path, head=2, loss=loss, lr=0.1)
    X = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    assert np.allclose([model.output_one(x) for x in X], file_outputs(data, suffix, X), atol=1e-5)
    for x in X:
        model.learn_one(x, 1 if loss == "ce" else np.ones(3))
    out = np.array([model.output_one(x) for x in X])
    assert np.allclose(out, engine_head(model, backbone_outputs(model, X)), atol=1e-5)
    export(model, tmp_path / f"adapted{suffix}", suffix[1:])
    assert np.allclose(file_outputs((tmp_path / f"adapted{suffix}").read_bytes(), suffix, X), out, atol=1e-5)
    proba = np.array([model.predict_proba_one(x) for x in X])
    if loss == "mse" or model.split.softmax:
        assert np.allclose(proba, out, atol=1e-6)
    else:  # a classifier file without Softmax: the probabilities are the softmax of its output
        expected = np.exp(out - out.max(axis=1, keepdims=True))
        assert np.allclose(proba, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)


def _mean_over_time(suffix: str) -> bytes:
    """(1, T, 3), T dynamic -> mean over T -> dense 3-4 (relu) -> dense 4-2 -> softmax."""
    rng = np.random.default_rng(2)
    (W0, b0), (W1, b1) = [(rng.normal(size=(n_out, n_in)).astype(np.float32), rng.normal(size=n_out).astype(np.float32))
                          for n_in, n_out in ((3, 4), (4, 2))]
    if suffix == ".tflite":
        g = tflite_format.Builder()
        x = g.input("window", (1, None, 3))
        h = g.op("MEAN", [x, g.const(np.array([1], np.int32))], (1, 3), keep_dims=False)
        h = g.fully_connected(g.fully_connected(h, W0, b0, "relu", "fc0"), W1, b1, "identity", "fc1")
        return g.finish([x], [g.op("SOFTMAX", [h], (1, 2))])
    model = onnx.load_model_from_string(
        onnx_format.dense_model([(W0, b0, "relu"), (W1, b1, "identity")], softmax=True, input_name="mean"))
    model.graph.node.insert(0, helper.make_node("ReduceMean", ["window"], ["mean"], axes=[1], keepdims=0))
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, "T", 3]))
    return model.SerializeToString()


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_dynamic_input_dimension(suffix, tmp_path):
    """Windows of any length: the interpreter reallocates, and the weights stay fed."""
    (tmp_path / f"dyn{suffix}").write_bytes(_mean_over_time(suffix))
    model = edgefdfa.load(tmp_path / f"dyn{suffix}", lr=0.2)
    assert model.sample_shape == (None, 3)
    rng = np.random.default_rng(0)
    for step, T in enumerate([5, 7, 5, 9, 9, 5]):
        x = rng.normal(size=(T, 3)).astype(np.float32)
        out, features = model.observe(x)
        assert np.allclose(features, x.mean(axis=0), atol=1e-6)
        assert np.allclose(out, engine_head(model, features)[0], atol=1e-5), T
        model.learner.learn_one(features, step % 2)
    with pytest.raises(BadSampleError, match="shape"):
        model.observe(np.zeros((5, 4), np.float32))


def test_tflite_weights_read_by_another_operator_are_trained_but_not_written_alone(tmp_path):
    g = tflite_format.Builder()
    x = g.input("x", (1, 4))
    W, b = g.const(np.eye(4, dtype=np.float32), "W"), g.const(np.zeros(4, np.float32), "b")
    y = g.op("FULLY_CONNECTED", [g.op("FULLY_CONNECTED", [x, W, b], (1, 4)), W, -1], (1, 4))
    (tmp_path / "shared.tflite").write_bytes(g.finish([x], [y]))
    model = edgefdfa.load(tmp_path / "shared.tflite", head=1)
    with pytest.raises(BadModelError, match="shared with"):
        export(model, tmp_path / "out.tflite", "tflite")
    assert not (tmp_path / "out.tflite").exists()


def _fresh_run(model, x):
    """The file with the learner's head written into it, and its backbone, each in a new session."""
    fmt = onnx_format if model.suffix == ".onnx" else tflite_format
    backend = onnx_backend if model.suffix == ".onnx" else tflite_backend
    net = model.learner.net
    out = backend.Session(fmt.write_head(model.source, [(W, b) for W, b in zip(net.W, net.b)], model.name)).run(x[None])
    features = x.ravel() if model.split.backbone is None else backend.Session(model.split.backbone).run(x[None])
    return out.reshape(-1), features.reshape(-1)


@pytest.mark.parametrize("path, mode", [(p, m) for p in FILES for m in ("numpy", "native")]
                         + [(p, "set-get") for p in FILES if p.suffix == ".tflite"],
                         ids=lambda v: v.name if hasattr(v, "name") else v)
def test_each_prediction_uses_the_weights_learned_before_it(path, mode, monkeypatch):
    """The fast paths (TFLite views on the backbone's buffers, onnxruntime's bound buffers, the
    compiled head) against the file with the learner's head written into it after every step, in a
    fresh session; outputs are new arrays that later calls leave alone. set-get puts the TFLite
    backbone on its set_tensor/get_tensor path, as when the buffers move; numpy runs the head in
    NumPy (EDGEFDFA_NATIVE=0), native compiled."""
    if mode == "native" and not native.available():
        pytest.skip("the compiled head is not built or EDGEFDFA_NATIVE=0")
    if mode != "native":
        monkeypatch.setenv("EDGEFDFA_NATIVE", "0")
    if mode == "set-get":
        monkeypatch.setattr(tflite_backend.Backbone, "_views_hold", lambda self: False)
    model = edgefdfa.load(path, lr=0.05)
    if path.suffix == ".tflite" and tflite_backend.NAME != "tensorflow" and model.split.backbone is not None:
        assert (model.backbone._x is not None) == (mode != "set-get")
    X, y = samples(path, 12)
    kept = []
    for x, t in zip(X, y):
        out, features = model.observe(x)
        fresh_out, fresh_features = _fresh_run(model, x)
        assert np.allclose(out, fresh_out, atol=1e-6)
        assert np.allclose(features, fresh_features, atol=1e-6)
        assert np.allclose(model.predict_proba_one(x), out if model.split.softmax else np.exp(out) / np.exp(out).sum(),
                           atol=1e-6)
        kept.append((out, out.copy(), features, features.copy()))
        model.learner.learn_one(features, t)
    assert all(np.array_equal(a, a_) and np.array_equal(f, f_) for a, a_, f, f_ in kept)
    assert not np.allclose(kept[0][0], model.output_one(X[0]), atol=1e-6)  # it learned, and the output moved
