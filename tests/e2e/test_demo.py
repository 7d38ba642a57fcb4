"""The main job, as the README's first command runs it."""

import json
import subprocess
import sys

import numpy as np

import edgefdfa


def test_demo_adapted_model_beats_frozen_after_the_shift(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefdfa", "demo", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    frozen, fdfa, bp = (summary["models"][k] for k in ("frozen", "fdfa", "bp"))
    assert fdfa["after_shift"] > frozen["after_shift"] + 0.15
    assert bp["after_shift"] > frozen["after_shift"] + 0.15
    assert abs(fdfa["before_shift"] - frozen["before_shift"]) < 0.1  # no harm while nothing changed
    assert any(s >= 397 for s in frozen["drift_points"])  # the frozen model's loss shows the shift
    for key in ("onnx", "tflite", "c", "plot"):
        assert (tmp_path / summary["files"][key].split("/")[-1]).stat().st_size > 0
    device = summary["device"]  # the adapted head, pushed as a sparse delta to an emulated device
    assert device["encoding"] == "sparse" and device["payload_bytes"] < device["f32_bytes"]
    assert device["parity"] <= 1e-5  # the device answers as the host computes from what it sent
    assert device["same_class"] >= 0.9 and device["checked"] >= 10  # ... and as the adapted float head
    mcu = summary["device_learning"]  # a microcontroller that learned the stream by itself, over the line
    assert mcu["after_shift"] > frozen["after_shift"] + 0.15 and mcu["steps"] >= 990
    assert abs(mcu["after_shift"] - fdfa["after_shift"]) < 0.05  # as well as the host's FDFA
    onnx_model = edgefdfa.load(summary["files"]["onnx"])
    tflite_model = edgefdfa.load(summary["files"]["tflite"])
    assert np.allclose(onnx_model.learner.net.params, tflite_model.learner.net.params)


def test_demo_table_for_people(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefdfa", "demo", "--out", str(tmp_path), "--no-plot"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "after shift" in proc.stdout and "fdfa (on device)" in proc.stdout
    assert "pushed to an emulated device over a serial line: sparse update" in proc.stdout
    assert "fdfa (by the MCU)" in proc.stdout and "the MCU learned by itself" in proc.stdout
