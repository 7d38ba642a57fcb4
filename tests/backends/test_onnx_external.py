"""ONNX external data (PyTorch >= 2.9's default export keeps the weights in model.onnx.data): read embeds
it from the model's folder only, write puts it back beside the new file, and onnxruntime loads both."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefdfa import BadModelError
from edgefdfa.backends.onnx import Session
from edgefdfa.datasets import load
from edgefdfa.formats import onnx as fmt
from test_onnx import conv_model  # tests/backends is on sys.path (pytest's prepend mode)

IMAGES = load("digits").X_test[:40].reshape(-1, 1, 8, 8)


def save_external(folder, model_bytes=None, name="model.onnx", location="model.onnx.data"):
    """The model saved by onnx's own writer with every tensor in one external data file."""
    model = onnx.load_model_from_string(model_bytes or conv_model())
    path = folder / name
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)
    return path


def run_path(path):
    """The file run by onnxruntime from its path, reading its external data itself."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: IMAGES})[0]


def external_tensors(data):
    return [t.name for t in onnx.load_model_from_string(data).graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL]


def test_read_embeds_external_data_and_says_how_it_was_stored(tmp_path):
    path = save_external(tmp_path)
    data, storage = fmt.read(path)
    assert storage == {"external_data": "model.onnx.data"}
    assert external_tensors(path.read_bytes()) and not external_tensors(data)
    assert np.array_equal(Session(data).run(IMAGES), run_path(path))
    split = fmt.split(data, None, "model.onnx")
    assert [l.W.shape for l in split.head] == [(16, 256), (10, 16)]


def test_read_of_a_plain_file_is_its_bytes(tmp_path):
    path = tmp_path / "plain.onnx"
    path.write_bytes(conv_model())
    assert fmt.read(path) == (conv_model(), {})


@pytest.mark.parametrize("storage, files", [({"external_data": "model.onnx.data"}, 2), ({}, 1)],
                         ids=["external", "embedded"])
def test_write_stores_the_model_as_the_source_had_it(tmp_path, storage, files):
    (tmp_path / "src").mkdir()
    data, _ = fmt.read(save_external(tmp_path / "src"))
    split = fmt.split(data, None, "model.onnx")
    head = [(l.W * 0.5, l.b + 1) for l in split.head]
    out = tmp_path / "trained.onnx"
    written = fmt.write(out, fmt.write_head(data, head, "model.onnx"), storage)
    assert written[0] == out and len(written) == files and sorted(os.listdir(tmp_path)) == sorted(
        ["src", "trained.onnx", *(["trained.onnx.data"] if files == 2 else [])])  # no temporary files left
    if files == 2:
        assert written[1] == tmp_path / "trained.onnx.data"  # named after the output file
        assert external_tensors(out.read_bytes()) and out.stat().st_size < written[1].stat().st_size
    else:
        assert not external_tensors(out.read_bytes())
    again, again_storage = fmt.read(out)
    assert again_storage == ({"external_data": "trained.onnx.data"} if files == 2 else {})
    assert np.array_equal(run_path(out), Session(again).run(IMAGES))  # onnxruntime reads the data file itself
    for layer, (W, b) in zip(fmt.split(again, None, "trained.onnx").head, head):
        assert np.array_equal(layer.W, np.float32(W)) and np.array_equal(layer.b, np.float32(b))


def test_write_refuses_bytes_that_still_point_at_external_data(tmp_path):
    path = save_external(tmp_path)
    with pytest.raises(BadModelError, match=r"tensor 'conv\.w' still refers to external data"):
        fmt.write(tmp_path / "out.onnx", path.read_bytes(), {})
    assert not (tmp_path / "out.onnx").exists()


def relocated(path, location):
    """The model at `path` with every tensor's external data location set to `location`."""
    model = onnx.load_model(path, load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["../outside.data", "/tmp/outside.data", "sub/../../outside.data"])
def test_a_location_outside_the_models_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_external(folder)
    (tmp_path / "outside.data").write_bytes((folder / "model.onnx.data").read_bytes())  # it would read
    relocated(path, location)
    with pytest.raises(BadModelError, match=rf"model\.onnx: tensor 'conv\.w' keeps its data in '{location}', "
                                            r"outside the model's folder.*re-export with external_data=False"):
        fmt.read(path)


def test_a_symlink_out_of_the_models_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_external(folder, location="weights.data")
    os.replace(folder / "weights.data", tmp_path / "elsewhere.data")
    os.symlink(tmp_path / "elsewhere.data", folder / "weights.data")
    with pytest.raises(BadModelError, match=r"tensor 'conv\.w' keeps its data in 'weights\.data', a link that "
                                            r"leads outside the model's folder"):
        fmt.read(path)


def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    path = save_external(tmp_path, location="weights.data")
    os.replace(tmp_path / "weights.data", tmp_path / "real.data")
    os.symlink("real.data", tmp_path / "weights.data")
    data, _ = fmt.read(path)
    assert np.array_equal(Session(data).run(IMAGES), Session(conv_model()).run(IMAGES))


def test_a_missing_data_file_is_named(tmp_path):
    path = save_external(tmp_path)
    os.remove(tmp_path / "model.onnx.data")
    with pytest.raises(BadModelError, match=r"model\.onnx: tensor 'conv\.w' keeps its data in 'model\.onnx\.data', "
                                            r"which cannot be read \(No such file"):
        fmt.read(path)


@pytest.mark.parametrize("cut", [1, 100])
def test_a_data_file_shorter_than_it_claims_is_named(tmp_path, cut):
    path = save_external(tmp_path)
    blob = (tmp_path / "model.onnx.data").read_bytes()
    (tmp_path / "model.onnx.data").write_bytes(blob[:-cut])
    entries = [(t.name, {e.key: int(e.value) for e in t.external_data if e.key != "location"})
               for t in onnx.load_model(path, load_external_data=False).graph.initializer]
    first = next(name for name, e in entries if e["offset"] + e["length"] > len(blob) - cut)  # read in file order
    with pytest.raises(BadModelError, match=rf"tensor '{first}' keeps its data in 'model\.onnx\.data' at "
                                            rf"offset \d+, \d+ bytes, but that file holds {len(blob) - cut} bytes"):
        fmt.read(path)


def test_a_length_that_disagrees_with_the_shape_is_named(tmp_path):
    path = save_external(tmp_path)
    model = onnx.load_model(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "fc1.b")
    for entry in tensor.external_data:
        if entry.key == "length":
            entry.value = str(int(entry.value) - 4)
    path.write_bytes(model.SerializeToString())
    with pytest.raises(BadModelError, match=r"tensor 'fc1\.b' keeps its data in 'model\.onnx\.data': 36 bytes where "
                                            r"its shape \[10\] needs 40"):
        fmt.read(path)


def test_bytes_with_external_references_are_described_and_refused_by_name(tmp_path):
    raw = save_external(tmp_path).read_bytes()  # not through read: the data file is not embedded
    info = fmt.describe(raw, "model.onnx")
    assert info.head == [] and "re-export with external_data=False" in info.stop
    with pytest.raises(BadModelError, match=r"model\.onnx: .*'fc1\.w'.* external file: open the model by its path"):
        fmt.split(raw, None, "model.onnx")
