"""edgefdfa.load on the shipped models, end to end: the split reproduces the file, the head learns,
and every export runs in its interpreter and reproduces the engine."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa import BadModelError, BadSampleError
from edgefdfa.backends import onnx as onnx_backend
from edgefdfa.backends import tflite as tflite_backend
from edgefdfa.export import export
from edgefdfa.formats import bundle

MODELS = Path(__file__).resolve().parents[2] / "models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
SESSIONS = {".onnx": onnx_backend.Session, ".tflite": tflite_backend.Session}
# the float files, reproduced to 1e-5; the quantized one: tests/e2e/test_int8_model.py (and the zoo's)
FILES = [MODELS / f for entry in MANIFEST["models"] if "quantization" not in entry for f in entry["files"]]


def samples(path: Path, n: int = 60):
    """Real test inputs and labels for a shipped model, as its manifest describes them."""
    sys.path.insert(0, str(MODELS.parent / "tools"))
    try:
        from make_models import held_out
    finally:
        sys.path.pop(0)
    X, y = held_out(path.stem)
    return X[:n], y[:n]


def file_outputs(data: bytes, suffix: str, X: np.ndarray) -> np.ndarray:
    session = SESSIONS[suffix](data)
    return np.array([session.run(x[None]).ravel() for x in X])


@pytest.fixture(params=FILES, ids=lambda p: p.name)
def path(request):
    return request.param


def test_split_reproduces_the_file(path):
    model = edgefdfa.load(path)
    X, _ = samples(path)
    assert np.allclose([model.output_one(x) for x in X], file_outputs(path.read_bytes(), path.suffix, X), atol=1e-5)


def test_learned_head_exports_to_its_own_format(path, tmp_path):
    model = edgefdfa.load(path, rule="fdfa", lr=0.05)
    X, y = samples(path)
    before = [model.output_one(x) for x in X]
    for x, t in zip(X, y):
        model.learn_one(x, t)
    after = np.array([model.output_one(x) for x in X])
    assert not np.allclose(before, after, atol=1e-4)  # it learned
    out = tmp_path / f"adapted{path.suffix}"
    export(model, out, path.suffix[1:])
    assert np.allclose(file_outputs(out.read_bytes(), path.suffix, X), after, atol=1e-5)
    assert np.allclose([edgefdfa.load(out).output_one(x) for x in X], after, atol=1e-5)


def test_head_alone_exports_to_the_other_format(path, tmp_path):
    fmt = "tflite" if path.suffix == ".onnx" else "onnx"
    model = edgefdfa.load(path)
    X, _ = samples(path, 20)
    out = tmp_path / f"head.{fmt}"
    export(model, out, fmt)
    F = np.array([model.features(x) for x in X])
    assert np.allclose(file_outputs(out.read_bytes(), f".{fmt}", F), [model.output_one(x) for x in X], atol=1e-5)


def test_bundle_holds_the_head(path, tmp_path):
    model = edgefdfa.load(path)
    export(model, tmp_path / "head.bin", "bundle")
    tensors = bundle.unpack((tmp_path / "head.bin").read_bytes())
    for l, layer in enumerate(model.head()):
        assert np.array_equal(tensors[f"W{l}"], layer.W) and np.array_equal(tensors[f"b{l}"], layer.b)


def test_checkpoint_carries_the_model(path, tmp_path):
    model = edgefdfa.load(path)
    X, y = samples(path, 10)
    for x, t in zip(X, y):
        model.learn_one(x, t)
    model.save(tmp_path / "m.npz")
    back = edgefdfa.load_checkpoint(tmp_path / "m.npz")
    assert isinstance(back, edgefdfa.EdgeModel)
    for x, t in zip(X, y):  # continues bit-identically
        assert back.learn_one(x, t) == model.learn_one(x, t)
    assert back.learner.net.params.tobytes() == model.learner.net.params.tobytes()


def test_cli_info_and_export(path, tmp_path):
    info = subprocess.run([sys.executable, "-m", "edgefdfa", "info", str(path)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    model = edgefdfa.load(path)
    assert "head 0" in info.stdout and f"{sum(W.size + b.size for W, b in zip(model.learner.net.W, model.learner.net.b)):,}" in info.stdout
    model.save(tmp_path / "m.npz")
    for fmt, name in [("onnx", "m.onnx"), ("tflite", "m.tflite"), ("c", "head.h"), ("c-int8", "head8.h"), ("bundle", "m.bin")]:
        proc = subprocess.run([sys.executable, "-m", "edgefdfa", "export", str(tmp_path / "m.npz"), "--format", fmt,
                               "--out", str(tmp_path / name)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / name).stat().st_size > 0


def test_bad_files_are_named(tmp_path):
    good = FILES[0]
    (tmp_path / "cut.onnx").write_bytes(good.read_bytes()[:100])
    (tmp_path / "text.tflite").write_bytes(b"hello, I am not a model" * 10)
    (tmp_path / "model.pb").write_bytes(b"x")
    for name, message in [("cut.onnx", "cut.onnx"), ("text.tflite", "text.tflite"), ("model.pb", "unknown model format"),
                          ("missing.onnx", "cannot read")]:
        with pytest.raises(BadModelError, match=message):
            edgefdfa.load(tmp_path / name)


def test_wrong_input_shape_at_run_time(path):
    model = edgefdfa.load(path)
    with pytest.raises(BadSampleError, match="shape"):
        model.predict_one(np.zeros(7, np.float32))
    with pytest.raises(BadSampleError, match="NaN"):
        X, _ = samples(path, 1)
        x = X[0].copy()
        x.flat[3] = np.nan
        model.learn_one(x, 0)


def test_failed_export_leaves_the_previous_file(path, tmp_path, monkeypatch):
    model = edgefdfa.load(path)
    with pytest.raises(edgefdfa.ConfigError, match="keras"):
        export(model, tmp_path / "x.out", "keras")
    target = tmp_path / f"model{path.suffix}"
    target.write_bytes(b"previous")
    model.learner.net.W[0][0, 0] = np.nan  # a diverged head is refused, not shipped
    with pytest.raises(BadModelError, match="NaN"):
        export(model, target, path.suffix[1:])
    model.learner.net.W[0][0, 0] = 0.0

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError):
        export(model, target, path.suffix[1:])
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
