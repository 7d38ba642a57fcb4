"""Checkpoints at the command line: `train MODEL --resume` refuses a checkpoint of another model (the
file name and SHA-256 of the model's bytes, ONNX external data included, are in the checkpoint), and
`export` of a damaged checkpoint is one clear error line, rc 2, no traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgefdfa
from edgefdfa import CheckpointError, checkpoint
from edgefdfa.datasets import load
from edgefdfa.model import check_resumes

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
ZOO = ROOT / "tests" / "zoo"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefdfa", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def digits_csv(path: Path, n: int = 60) -> Path:
    ds = load("digits")
    path.write_text("".join(",".join(f"{v:.4g}" for v in x) + f",{int(y)}\n"
                            for x, y in zip(ds.X_test[:n], ds.y_test[:n])))
    return path


def imu_csv(path: Path, n_series: int = 2) -> Path:
    ds = load("basicmotions")
    path.write_text("".join(",".join(f"{v:.6g}" for v in ds.X_test[i][:, t]) + f",{int(ds.y_test[i])}\n"
                            for i in range(n_series) for t in range(100)))
    return path


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    ckpt = folder / "digits.npz"
    done = cli("train", MODELS / "digits.onnx", "--data", digits_csv(folder / "d.csv"), "--checkpoint", ckpt, "--json")
    assert done.returncode == 0, done.stderr
    return ckpt


def test_resuming_a_model_from_another_models_checkpoint_is_refused_naming_both(tmp_path, digits_checkpoint):
    """The issue's case: imu-activity.tflite resumed from a digits checkpoint trained digits and wrote
    it as imu-activity-adapted.tflite. Now: refused, nothing written."""
    out = tmp_path / "out"
    done = cli("train", MODELS / "imu-activity.tflite", "--data", imu_csv(tmp_path / "imu.csv"), "--window", "32",
               "--hop", "8", "--resume", "--checkpoint", digits_checkpoint, "--out", out, "--json")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "is of digits.onnx (sha256 " in done.stderr and "not of imu-activity.tflite (sha256 " in done.stderr
    assert list(out.iterdir()) == []
    assert checkpoint.load(digits_checkpoint)[1]["model"]["name"] == "digits.onnx"  # left as it was


def test_the_same_model_resumes_and_a_renamed_or_another_file_does_not(tmp_path, digits_checkpoint):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(MODELS / "digits.onnx", folder / "digits.onnx")
    data = digits_csv(tmp_path / "d.csv")
    ckpt = tmp_path / "c.npz"
    shutil.copy(digits_checkpoint, ckpt)
    done = cli("train", folder / "digits.onnx", "--data", data, "--resume", "--checkpoint", ckpt, "--json")
    assert done.returncode == 0, done.stderr  # a copy elsewhere is the same file
    shutil.copy(MODELS / "digits.onnx", folder / "digits-2.onnx")
    done = cli("train", folder / "digits-2.onnx", "--data", data, "--resume", "--checkpoint", ckpt, "--json")
    assert done.returncode == 2 and "is of digits.onnx (sha256" in done.stderr and "not of digits-2.onnx" in done.stderr
    shutil.copy(ZOO / "torch-digits-mlp-matmul.onnx", folder / "digits.onnx")  # another file, the same name
    shutil.copy(ZOO / "torch-digits-mlp-matmul.onnx.data", folder / "torch-digits-mlp-matmul.onnx.data")
    done = cli("train", folder / "digits.onnx", "--data", data, "--resume", "--checkpoint", ckpt, "--json")
    assert done.returncode == 2 and "is of digits.onnx (sha256" in done.stderr and "not of digits.onnx" in done.stderr


def test_the_fingerprint_covers_onnx_external_data(tmp_path):
    """A change in the .data file beside an ONNX model is a change of model."""
    for name in ("torch-digits-mlp-matmul.onnx", "torch-digits-mlp-matmul.onnx.data"):
        shutil.copy(ZOO / name, tmp_path / name)
    path = tmp_path / "torch-digits-mlp-matmul.onnx"
    model = edgefdfa.load(path)
    model.save(tmp_path / "c.npz")
    resumed = edgefdfa.load_checkpoint(tmp_path / "c.npz")
    check_resumes(resumed, path, tmp_path / "c.npz")  # the same files: accepted
    data = bytearray((tmp_path / "torch-digits-mlp-matmul.onnx.data").read_bytes())
    data[-1] ^= 1  # a bit of the last weight in the external data
    (tmp_path / "torch-digits-mlp-matmul.onnx.data").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is of torch-digits-mlp-matmul.onnx \(sha256 \w{12}\.\.\.\), not of "
                                              r"torch-digits-mlp-matmul.onnx \(sha256 \w{12}"):
        check_resumes(resumed, path, tmp_path / "c.npz")


def test_a_bare_learner_checkpoint_cannot_resume_a_model(tmp_path):
    edgefdfa.MLP([64, 8, 10], seed=0).save(tmp_path / "c.npz")
    done = cli("train", MODELS / "digits.onnx", "--data", digits_csv(tmp_path / "d.csv"), "--resume",
               "--checkpoint", tmp_path / "c.npz")
    assert done.returncode == 2 and "holds a bare learner, not a model file; it cannot resume digits.onnx" in done.stderr


def rewritten(src: Path, dst: Path, edit) -> Path:
    arrays, meta = checkpoint.load(src)
    arrays, meta = dict(arrays), json.loads(json.dumps(meta))
    text = edit(arrays, meta)
    with open(dst, "wb") as f:
        np.savez(f, **arrays, __meta__=np.array(text if isinstance(text, str) else json.dumps(meta)))
    return dst


def nan_params(arrays, meta):
    arrays["params"] = arrays["params"].copy()
    arrays["params"][0] = np.nan


DAMAGE = {
    "truncated": lambda p, d: d.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]) and d,
    "flipped": lambda p, d: d.write_bytes(bytes(b ^ (i == 3000) for i, b in enumerate(p.read_bytes()))) and d,
    "empty": lambda p, d: d.write_bytes(b"") is not None and d,
    "nan-params": lambda p, d: rewritten(p, d, nan_params),
    "bad-json": lambda p, d: rewritten(p, d, lambda a, m: '{"format": "edgefdfa.checkpoint", "version": 2, "con'),
    "no-model-name": lambda p, d: rewritten(p, d, lambda a, m: m["model"].pop("name")),
    "head-mismatch": lambda p, d: rewritten(p, d, lambda a, m: m["model"].update(head=1)),
    "other-source": lambda p, d: rewritten(p, d, lambda a, m: a.update({"model.source": np.frombuffer(
        (MODELS / "digits.tflite").read_bytes(), np.uint8)})),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_export_of_a_damaged_checkpoint_is_one_clear_error_line(tmp_path, digits_checkpoint, damage):
    bad = DAMAGE[damage](digits_checkpoint, tmp_path / "bad.npz")
    assert bad == tmp_path / "bad.npz"
    done = cli("export", bad, "--format", "onnx", "--out", tmp_path / "x.onnx")
    assert done.returncode == 2, done.stdout
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("edgefdfa: error: ") and "bad.npz" in done.stderr, done.stderr
    assert not (tmp_path / "x.onnx").exists()


def leaves(node, path=()):
    """Every key path of a JSON tree (dicts only)."""
    for k, v in node.items() if isinstance(node, dict) else ():
        yield path + (k,)
        yield from leaves(v, path + (k,))


@pytest.mark.parametrize("how", ["delete", "retype"])
def test_every_model_and_window_key_of_a_cli_checkpoint_is_checked(tmp_path, how):
    """A checkpoint `train` wrote for the IMU model with a window, a delay and normalisation: each key
    of its model, window and delay sections, deleted or given another type, is a CheckpointError
    naming it when the run resumes as `train --resume` does."""
    from edgefdfa.online import OnlineRun, RunConfig
    from edgefdfa.stream import RunningNorm, Window

    ckpt = tmp_path / "imu.npz"
    done = cli("train", MODELS / "imu-activity.tflite", "--data", imu_csv(tmp_path / "imu.csv"), "--window", "32",
               "--hop", "8", "--delay", "2", "--normalize", "--checkpoint", ckpt, "--json")
    assert done.returncode == 0, done.stderr
    arrays, meta = checkpoint.load(ckpt)
    paths = [p for p in leaves(meta) if p[0] == "model" or p[:2] in (("run", "window"), ("run", "delay"))]
    assert len(paths) >= 12
    unnamed = []
    for path in paths:
        edit = json.loads(json.dumps(meta))
        parent = edit
        for k in path[:-1]:
            parent = parent[k]
        if how == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = 123 if isinstance(parent[path[-1]], str) else "x"
        bad = tmp_path / "bad.npz"
        with open(bad, "wb") as f:
            np.savez(f, **arrays, __meta__=np.array(json.dumps(edit)))
        with pytest.raises(CheckpointError) as exc:
            model = edgefdfa.load_checkpoint(bad)
            check_resumes(model, MODELS / "imu-activity.tflite", bad)
            OnlineRun(model, RunConfig(delay=2), Window(32, 8, 6), norm=RunningNorm(6)).resume(str(bad))
        if "bad.npz" not in str(exc.value) or not any(k in str(exc.value) for k in path):
            unnamed.append((path, str(exc.value)))
    assert not unnamed


def test_a_state_dir_of_another_model_is_refused_and_left_as_it_was(tmp_path):
    state = tmp_path / "state"
    done = cli("train", MODELS / "digits.onnx", "--data", digits_csv(tmp_path / "d.csv"), "--state-dir", state, "--json")
    assert done.returncode == 0, done.stderr
    before = (state / "checkpoint.npz").read_bytes()
    done = cli("train", MODELS / "imu-activity.tflite", "--data", imu_csv(tmp_path / "imu.csv"), "--window", "32",
               "--state-dir", state, "--json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is of digits.onnx (sha256 " in done.stderr and "not of imu-activity.tflite" in done.stderr
    assert (state / "checkpoint.npz").read_bytes() == before


def detached_checkpoint(tmp_path: Path) -> tuple[Path, dict, dict]:
    """A state directory's checkpoint (it names its stored model file), read back as arrays and meta."""
    state = tmp_path / "state"
    done = cli("train", MODELS / "digits.onnx", "--data", digits_csv(tmp_path / "d.csv"), "--state-dir", state, "--json")
    assert done.returncode == 0, done.stderr
    arrays, meta = checkpoint.load(state / "checkpoint.npz")
    assert "model.source" not in arrays and meta["model"]["source_file"].startswith("models/")
    return state / "checkpoint.npz", arrays, meta


@pytest.mark.parametrize("damage", ["missing", "tampered", "not-a-file", "not-a-name"])
def test_a_state_dir_checkpoint_whose_stored_model_is_wrong_is_a_checkpoint_error(tmp_path, damage):
    ckpt, arrays, meta = detached_checkpoint(tmp_path)
    stored = ckpt.parent / meta["model"]["source_file"]
    if damage == "missing":
        stored.unlink()
    elif damage == "tampered":
        stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    else:
        meta["model"]["source_file"] = "/dev/zero" if damage == "not-a-file" else 7  # a read without end, a number
        checkpoint.save(ckpt, arrays, meta)
    with pytest.raises(CheckpointError, match="model file|source_file"):
        edgefdfa.load_checkpoint(ckpt)
