"""Atomic writes: a file appears whole with the permissions a user expects of a new file."""

import os
import stat

import pytest

from edgefdfa.atomic import atomic_write


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    with atomic_write(tmp_path / "head.h") as f:
        f.write(b"x")
    with open(tmp_path / "plain.h", "wb") as f:  # what open() gives a new file here
        f.write(b"x")
    assert _mode(tmp_path / "head.h") == _mode(tmp_path / "plain.h")


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
