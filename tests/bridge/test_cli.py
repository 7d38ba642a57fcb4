"""`edgefdfa push` and `edgefdfa device` (edgefdfa/cli.py over firmware_bridge.host and .emulator): the
device as a real subprocess on one pty, the CLI's push on the other."""

import os
import select
import subprocess
import sys

import numpy as np
import pytest

import edgefdfa
from edgefdfa import cli
from edgefdfa.export import head_from
from edgefdfa.formats import bundle
from edgefdfa.head import image_of, layers_of
from firmware_bridge import host
from firmware_bridge import image as img


@pytest.fixture
def device_process(tmp_path, relays):
    """start(model, key=None) -> relay: `python -m edgefdfa device` serving the relay's device pty."""
    running = []

    def start(model, key=None):
        relay = relays()
        cmd = [sys.executable, "-m", "edgefdfa", "device", "--port", relay.device.path, "--model", str(model)]
        if key:
            (tmp_path / "key").write_bytes(key)
            cmd += ["--key", str(tmp_path / "key")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        running.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE))
        return relay

    yield start
    for process in running:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()


def test_push_a_checkpoint_to_a_device_process(tmp_path, device_process, heads, capsys):
    factory = tmp_path / "factory.efdb"
    factory.write_bytes(bundle.pack(bundle.head_tensors(heads(seed=99, n=0))))
    learner = edgefdfa.MLP([24, 32, 4], seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal(24)
        learner.learn_one(x, int(x[:4].argmax()))
    learner.save(tmp_path / "learner.ckpt")
    relay = device_process(factory, key=b"k" * 32)
    (tmp_path / "key").write_bytes(b"k" * 32)
    args = ["push", str(tmp_path / "learner.ckpt"), "--port", relay.host.path, "--verify", "--key",
            str(tmp_path / "key"), "--mirror", str(tmp_path / "mirror"), "--encoding", "sparse"]
    assert cli.main(args) == 0
    assert "(f32)" in capsys.readouterr().out  # nothing mirrored yet: the first sparse push is whole
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "(sparse)" in out and "parity max|device-host| 0" in out
    head = head_from(tmp_path / "learner.ckpt")
    x = rng.standard_normal(24).astype(np.float32)
    assert np.abs(host.infer(relay.host.path, x) - img.forward(image_of(head), layers_of(head), x)).max() <= 1e-5


def test_device_on_a_fresh_pty_prints_the_port_to_push_to(tmp_path, heads, capsys):
    model = tmp_path / "factory.efdb"
    model.write_bytes(bundle.pack(bundle.head_tensors(heads(seed=99, n=0))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, "-m", "edgefdfa", "device", "--pty", "--model", str(model)]
    device = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([device.stdout], [], [], 30)
        assert ready, device.stderr.read()
        port = device.stdout.readline().strip()
        assert port.startswith("/dev/"), port
        learned = tmp_path / "learned.efdb"
        learned.write_bytes(bundle.pack(bundle.head_tensors(heads())))
        assert cli.main(["push", str(learned), "--port", port, "--verify"]) == 0
        assert "parity max|device-host| 0" in capsys.readouterr().out
    finally:
        device.terminate()
        device.wait(timeout=10)
        device.stdout.close()
        device.stderr.close()


def test_push_refused_by_a_keyed_device_exits_1(tmp_path, device_process, heads, capsys):
    model = tmp_path / "head.efdb"
    model.write_bytes(bundle.pack(bundle.head_tensors(heads())))
    relay = device_process(model, key=b"secret-key-16-by")
    assert cli.main(["push", str(model), "--port", relay.host.path]) == 1
    assert "UNSIGNED" in capsys.readouterr().err
