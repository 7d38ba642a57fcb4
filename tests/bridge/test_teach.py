"""`teach` and `edgefdfa teach`: the host streams a sensor source through the model's backbone to a
device that learns the head by itself (PROTOCOL.md §8) over a real pseudo-terminal pair, the
upside-down watch of the demo; lost replies, keys and bad samples as a user meets them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgefdfa.demo import MODELS, imu_stream
from edgefdfa.head import image_of, layers_of
from edgefdfa.model import load
from edgefdfa.stream import Window
from firmware_bridge import image as img
from firmware_bridge.cable import Cable
from firmware_bridge.emulator import Device, Emulator
from firmware_bridge.learning import LearnConfig
from firmware_bridge.protocol import Code, ProtocolError
from firmware_bridge.teach import teach
from tests.e2e.child_output import read_until

MODEL = MODELS / "imu-activity.onnx"
KEY = b"teach-key-16byte"


@pytest.fixture(scope="module")
def watch():
    """(the model, the head's inputs and labels of the upside-down part of the demo's stream)."""
    model = load(MODEL)
    samples, shift = imu_stream()
    window, features, labels = Window(32, 8, 6), [], []
    for s in samples[shift:]:
        got = window.push(s.x, s.y)
        if got is not None:
            features.append(model.features(got[0]))
            labels.append(int(got[1]))
    return model, np.array(features), labels


def serve(model, key=None, **learn):
    cable = Cable()
    head = model.head()
    device = Device(layers_of(head), image_of(head), key=key, max_frame=512, learn=LearnConfig(**learn))
    return cable, device, Emulator(cable.device, device).start()


def test_the_device_adapts_to_the_upside_down_watch(watch):
    model, X, y = watch
    cable, device, emulator = serve(model)
    try:
        report = teach(cable.host, zip(X, y), layers=layers_of(model.head()))
    finally:
        emulator.stop()
        cable.close()
    head, layers = image_of(model.head()), layers_of(model.head())
    assert report.sent == len(y) == report.learned + report.diverged and report.unconfirmed == 0
    assert report.frames == -(-len(y) // 4)  # 4 samples of 100 bytes fill a 512-byte frame
    half = len(y) // 2
    adapted = np.mean(np.array(report.predictions[half:]) == np.array(y[half:]))
    frozen = np.mean([int(np.argmax(img.forward(head, layers, x))) == t for x, t in zip(X[half:], y[half:])])
    assert adapted > frozen + 0.2, (adapted, frozen)
    assert report.saves == 1 and report.saved_steps == report.steps == report.learned
    assert device.ids[device.active] == report.active_id and np.array_equal(device.weights, device.learning.working)


def test_a_lost_reply_is_not_learned_twice(watch, relays):
    model, X, y = watch
    relay = relays(seed=3, drop=0.15)
    head = model.head()
    device = Device(layers_of(head), image_of(head), max_frame=512, learn=LearnConfig())
    emulator = Emulator(relay.device.path, device).start()
    try:
        report = teach(relay.host.path, zip(X[:200], y[:200]), timeout=0.2, retries=30)
    finally:
        emulator.stop()
    assert report.sent == 200 and device.learning.steps == report.steps
    assert device.learning.steps == 200 - report.diverged  # every sample learned exactly once
    assert report.unconfirmed > 0 and report.predictions.count(-1) == report.unconfirmed


def test_a_keyed_device_learns_only_what_is_signed(watch):
    model, X, y = watch
    cable, device, emulator = serve(model, key=KEY)
    try:
        with pytest.raises(ProtocolError) as refused:
            teach(cable.host, zip(X[:8], y[:8]))
        assert refused.value.code == Code.UNSIGNED and device.learning.steps == 0
        with pytest.raises(ProtocolError) as forged:
            teach(cable.host, zip(X[:8], y[:8]), key=b"not-the-key-1234")
        assert forged.value.code == Code.BAD_SIGNATURE and device.learning.steps == 0
        report = teach(cable.host, zip(X[:8], y[:8]), key=KEY)
        assert report.learned == 8 and report.saves == 1 and device.counter > 0
    finally:
        emulator.stop()
        cable.close()


def test_a_sample_that_does_not_fit_the_head_is_named_before_it_is_sent(watch):
    model, X, y = watch
    cable, device, emulator = serve(model)
    try:
        for bad, code in (((X[0], 4), Code.BAD_LABEL), ((X[0][:5], 0), Code.BAD_INPUT),
                          ((np.full(24, np.nan), 0), Code.BAD_INPUT)):
            with pytest.raises(ProtocolError) as e:
                teach(cable.host, [bad])
            assert e.value.code == code
        assert device.learning.steps == 0
        with pytest.raises(ProtocolError) as e:
            teach(cable.host, [(X[0], 0)], layers=layers_of(model.head())[:1])
        assert e.value.code == Code.MODEL_MISMATCH
    finally:
        emulator.stop()
        cable.close()


def test_edgefdfa_teach_streams_a_csv_to_an_emulated_device(tmp_path):
    samples, shift = imu_stream()
    data = tmp_path / "watch.csv"
    data.write_text("".join(",".join(f"{v:.6g}" for v in s.x) + f",{s.y}\n" for s in samples[shift:shift + 800]))
    device = subprocess.Popen([sys.executable, "-m", "edgefdfa", "device", "--pty", "--model", str(MODEL), "--learn"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = read_until(device.stdout, "\n", timeout=30).strip()
        done = subprocess.run([sys.executable, "-m", "edgefdfa", "teach", str(MODEL), "--data", str(data),
                               "--window", "32", "--hop", "8", "--port", port, "--json"],
                              capture_output=True, text=True, timeout=120)
    finally:
        device.terminate()
        device.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sent"] == (800 - 32) // 8 + 1 == report["learned"] + report["diverged"]
    assert report["saves"] == 1 and report["saved_steps"] == report["steps"] and 0 <= report["accuracy"] <= 1
