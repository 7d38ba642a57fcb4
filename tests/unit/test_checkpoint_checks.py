"""Checkpoints are checked before they are believed: sizes bounded before anything is allocated or
inflated, arrays finite and exactly of the learner's shapes, the JSON whole; every damage is a
CheckpointError naming what was wrong, and random damage (hypothesis) never gets past as another
exception or as non-finite weights. Leftover temporary files of a killed write go at the next start."""

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import edgefdfa
from edgefdfa import CheckpointError, EdgeFDFAError, checkpoint
from edgefdfa.online import OnlineRun, RunConfig
from edgefdfa.stream import RunningNorm, Sample

EXAMPLES = int(os.environ.get("EDGEFDFA_FUZZ_EXAMPLES", "150"))  # a longer run: EDGEFDFA_FUZZ_EXAMPLES=5000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def new_run(path, rule="fdfa", optimizer="adam"):
    learner = edgefdfa.MLP([5, 8, 3], rule=rule, optimizer=optimizer, seed=1)
    return OnlineRun(learner, RunConfig(delay=2, checkpoint=str(path)), norm=RunningNorm(5))


def run_checkpoint(path, rule="fdfa", optimizer="adam"):
    """A checkpoint of a bare learner's run with every run part in it (delay, norm, drift, range guard)."""
    run = new_run(path, rule, optimizer)
    rng = np.random.default_rng(0)
    run.run(Sample(rng.random(5, dtype=np.float32), int(rng.integers(0, 3)), 0.0) for _ in range(80))
    run.save(str(path))
    return run


def resume(path):
    """What `train --resume` does with a checkpoint: the learner, then the run's state."""
    learner = edgefdfa.load_checkpoint(path)
    run = OnlineRun(learner, RunConfig(delay=2), norm=RunningNorm(5))
    run.resume(str(path))
    return learner


def rewrite(path, arrays, meta):
    """Write arrays and metadata as they are (format and version from `meta`), no checks."""
    with open(path, "wb") as f:
        np.savez(f, **arrays, __meta__=np.array(json.dumps(meta)))


def test_a_run_checkpoint_resumes(tmp_path):
    run = run_checkpoint(tmp_path / "c.npz")
    learner = resume(tmp_path / "c.npz")
    assert learner.net.params.tobytes() == run.learner.net.params.tobytes()


def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    """410 KB that inflate to 400 MB: refused from the sizes the archive declares, nothing inflated."""
    path = tmp_path / "bomb.npz"
    run_checkpoint(path)
    arrays, meta = checkpoint.load(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("padding.npy", "w", force_zip64=True) as member:
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100 << 20,)})
            member.write(buf.getvalue())
            zeros = bytes(1 << 20)
            for _ in range(400):
                member.write(zeros)
    assert path.stat().st_size < 500_000
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=r"bomb\.npz.*inflate to 419,4\d\d,\d\d\d bytes"):
        checkpoint.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 << 20


def test_a_member_that_inflates_past_its_declared_size_is_refused(tmp_path):
    """The central directory claims a small member; reading stops at the claim and the CRC fails."""
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("params.npy")
    central = data.find(b"params.npy", data.find(b"PK\x01\x02")) - 46  # its central directory entry
    assert data[central:central + 4] == b"PK\x01\x02"
    data[central + 24:central + 28] = (info.file_size // 2).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.npz"):
        checkpoint.load(path)


def test_sizes_in_the_json_are_checked_against_the_arrays_before_any_allocation(tmp_path):
    """Layer widths of 3.6 TiB of weights with a small parameter array: refused, nothing allocated."""
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    arrays, meta = checkpoint.load(path)
    meta["config"]["sizes"] = [1_000_000, 1_000_000, 3]
    rewrite(path, arrays, meta)
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=r"'params' of shape \(75,\); its layer sizes \[1000000, 1000000, 3\]"):
        edgefdfa.load_checkpoint(path)
    assert tracemalloc.get_traced_memory()[1] < 5 << 20
    tracemalloc.stop()


def test_a_huge_batch_size_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    arrays, meta = checkpoint.load(path)
    meta["config"]["batch_size"] = 10**9
    rewrite(path, arrays, meta)
    with pytest.raises(CheckpointError, match="'batch_size' = 1000000000, outside 1..4096"):
        edgefdfa.load_checkpoint(path)


def npy(header: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


@pytest.mark.parametrize("header, payload, message", [
    ({"descr": "<f4", "fortran_order": False, "shape": (10**12,)}, bytes(16), r"claims \(1000000000000,\)"),
    ({"descr": "<f4", "fortran_order": False, "shape": (4,)}, bytes(12), "holds 12 bytes"),
    ({"descr": "<c8", "fortran_order": False, "shape": (1,)}, bytes(8), "dtype complex64, not numbers"),
    ({"descr": [("a", "<f4")], "fortran_order": False, "shape": (1,)}, bytes(4), "not numbers"),
    ({"descr": "<f4", "fortran_order": False, "shape": (-1, -4)}, bytes(16), r"shape \(-1, -4\)"),
])
def test_an_array_header_is_checked_against_its_bytes(tmp_path, header, payload, message):
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("extra.npy", npy(header, payload))
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=f"array 'extra' .*{message}|'extra'.*{message}"):
        checkpoint.load(path)
    assert tracemalloc.get_traced_memory()[1] < 5 << 20
    tracemalloc.stop()


@pytest.mark.parametrize("key", ["params", "rule.B", "optimizer.m", "run.norm.mean", "run.delay.x", "run.range.lo"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_are_refused(tmp_path, key, value):
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    arrays, meta = checkpoint.load(path)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[3] = value
    rewrite(path, arrays, meta)
    with pytest.raises(CheckpointError, match=f"array '{key}' holding NaN or Inf"):
        resume(path)


@pytest.mark.parametrize("text, message", [
    ('{"format": "edgefdfa.checkpoint", "version": 2, "n_seen": NaN}', "NaN is not a number"),
    ('{"format": "edgefdfa.checkpoint", "version": 2, "n_seen": Infinity}', "Infinity is not a number"),
    ('{"format": "edgefdfa.checkpoint", "version": 2', "unreadable metadata"),
    ('[1, 2]', "metadata of type list, not an object"),
    ("[" * 100_000, "unreadable metadata"),
    ('{"format": "edgefdfa.checkpoint", "version": 1}', "version 1; this edgefdfa reads"),
])
def test_malformed_json_is_a_checkpoint_error(tmp_path, text, message):
    path = tmp_path / "c.npz"
    run_checkpoint(path)
    arrays, _ = checkpoint.load(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays, __meta__=np.array(text))
    with pytest.raises(CheckpointError, match=message):
        resume(path)


def key_paths(node, path=()):
    """Every (path, value) in a JSON tree, lists' items included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield path + (k,), v
        yield from key_paths(v, path + (k,))


def edited(meta, path, how):
    meta = json.loads(json.dumps(meta))
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if how == "delete":
        if isinstance(parent, list):
            parent.append(None)  # a list gets longer instead
        else:
            del parent[path[-1]]
    else:
        value = parent[path[-1]]
        parent[path[-1]] = 123 if isinstance(value, str) else [] if isinstance(value, dict) else "x"
    return meta


def paths_of(path):
    run_checkpoint(path)
    return list(key_paths(checkpoint.load(path)[1]))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "c.npz"
    run_checkpoint(path)
    return checkpoint.load(path)


@pytest.mark.parametrize("how", ["delete", "retype"])
def test_every_missing_or_mistyped_key_is_a_checkpoint_error_naming_it(tmp_path, saved, how):
    """Each key of the metadata, deleted or given a value of another type (a list item instead
    appended to): a CheckpointError that names the key, for every one of them."""
    arrays, meta = saved
    paths = [p for p, _ in key_paths(meta) if p[-1] not in ("format", "version")]
    assert len(paths) > 40
    unnamed = []
    for path in paths:
        target = tmp_path / "c.npz"
        rewrite(target, arrays, edited(meta, path, how))
        with pytest.raises(CheckpointError) as exc:
            resume(target)
        keys = [k for k in path if isinstance(k, str)]
        if "c.npz" not in str(exc.value) or not any(k in str(exc.value) for k in keys):
            unnamed.append((path, str(exc.value)))
    assert not unnamed


@pytest.mark.parametrize("key", ["params", "rule.B", "optimizer.m", "optimizer.v", "optimizer.t", "run.norm.mean",
                                 "run.norm.m2", "run.delay.x", "run.range.lo", "run.range.hi"])
@pytest.mark.parametrize("how", ["missing", "dtype", "shape", "scalar"])
def test_a_missing_or_misshapen_array_is_a_checkpoint_error_naming_it(tmp_path, saved, key, how):
    """No broadcasting, no silent cast: a (1,) array does not fill a (75,) one."""
    arrays, meta = dict(saved[0]), saved[1]
    if how == "missing":
        del arrays[key]
    elif how == "dtype":
        arrays[key] = arrays[key].astype(np.float16 if arrays[key].dtype != np.float16 else np.float32)
    elif how == "shape":
        arrays[key] = np.concatenate([arrays[key].reshape(-1), arrays[key].reshape(-1)[:1]])
    else:
        arrays[key] = arrays[key].reshape(-1)[:1]
    path = tmp_path / "c.npz"
    rewrite(path, arrays, meta)
    short = key.split(".")[-1]
    with pytest.raises(CheckpointError, match=rf"c\.npz.*'({key}|{short})'"):
        resume(path)


@pytest.mark.parametrize("path, value, message", [
    (("n_seen",), -1, "'n_seen' = -1, outside 0..inf"),
    (("run", "consumed"), -5, "'consumed' = -5"),
    (("run", "lr"), 0.0, "'lr' = 0.0"),
    (("run", "delay", "next"), 3, "'next' = 3, outside 0..2"),
    (("run", "delay", "y"), [1, 2], "delay 'y'"),
    (("run", "delay", "y"), [1, "a", None], "delay 'y'"),
    (("run", "drift", "n"), True, "'n' = True, not an int"),
    (("run", "events"), [{"kind": "drift"}], "run event"),
    (("config", "rule"), "nope", "unknown rule 'nope'"),
    (("config", "lr"), -1.0, "lr must be > 0"),
    (("rng", "bit_generator"), "MT19937", "unusable 'rng' state"),
    (("rng", "state", "state"), -1, "unusable 'rng' state"),
])
def test_values_out_of_range_are_checkpoint_errors(tmp_path, saved, path, value, message):
    arrays, meta = saved
    meta = json.loads(json.dumps(meta))
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    target = tmp_path / "c.npz"
    rewrite(target, arrays, meta)
    with pytest.raises(CheckpointError, match=message):
        resume(target)


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


def finite_state(learner) -> bool:
    return all(np.isfinite(a).all() for a in [learner.net.params, *learner.rule.state().values(),
                                               *learner.optimizer.state().values()])


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "c.npz"
    run_checkpoint(path)
    return path.read_bytes()


@FUZZ
@given(edits=damage)
def test_random_byte_damage_is_a_checkpoint_error_or_a_correct_load(tmp_path, good_bytes, edits):
    path = tmp_path / "c.npz"
    data = damaged(good_bytes, edits)
    path.write_bytes(data)
    try:
        learner = resume(path)
    except EdgeFDFAError as exc:
        event(type(exc).__name__)
        return
    event("loaded")
    assert finite_state(learner)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@FUZZ
@given(which=st.integers(0, 10**6), how=st.sampled_from(["delete", "replace"]), value=json_values)
def test_random_metadata_damage_is_a_checkpoint_error_or_a_correct_load(tmp_path, saved, which, how, value):
    """Any one key deleted or set to any JSON value: an EdgeFDFAError, or a run that resumes with finite
    state and goes on learning."""
    arrays, meta = saved
    paths = [p for p, _ in key_paths(meta)]
    path = paths[which % len(paths)]
    meta = json.loads(json.dumps(meta))
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    target = tmp_path / "c.npz"
    rewrite(target, arrays, meta)
    try:
        learner = edgefdfa.load_checkpoint(target)
        run = OnlineRun(learner, RunConfig(delay=2), norm=RunningNorm(5))
        run.resume(str(target))
    except EdgeFDFAError as exc:
        event(type(exc).__name__)
        return
    event("loaded")
    rng = np.random.default_rng(1)
    run.run(Sample(rng.random(5, dtype=np.float32), int(rng.integers(0, 3)), 0.0) for _ in range(10))
    assert finite_state(learner)


def test_a_killed_write_leaves_a_temporary_file_that_the_next_run_removes(tmp_path):
    """A process killed inside atomic_write leaves `.c.npz.XXXXXXXX.tmp`; the next run's start removes
    it and no other file."""
    path = tmp_path / "c.npz"
    code = ("import os, sys; from edgefdfa.atomic import atomic_write\n"
            "with atomic_write(sys.argv[1]) as f:\n    f.write(b'half'); f.flush(); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code, str(path)]).returncode == 9
    (tmp_path / ".other.npz.abcdefgh.tmp").write_bytes(b"not ours")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".c.npz.")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp") and not path.exists()
    new_run(path)  # a run starts
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.abcdefgh.tmp", "keep.tmp"]
