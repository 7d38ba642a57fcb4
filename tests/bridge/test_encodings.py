"""Every encoding over a real pty: device-vs-host parity within the encoding's tolerance, the sparse
residual carried to the next push, and the HMAC on a keyed device."""

import numpy as np
import pytest

from edgefdfa.head import image_of, layers_of, size
from firmware_bridge import encoding as enc
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.protocol import Code, Encoding, ProtocolError

TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "int8": 3e-2, "int8-tensor": 6e-2}


@pytest.mark.parametrize("encoding", list(TOLERANCE))
def test_encoding_parity(rig, heads, encoding):
    relay, emulator = rig()
    report = host.push(relay.host.path, heads(), encoding=encoding, verify=True, images={})
    assert report.encoding == encoding and report.parity == 0 and report.drift <= TOLERANCE[encoding]
    assert report.payload_bytes <= emulator.device.slot_size


def test_sparse_residual_is_resent_until_nothing_is_lost(rig, heads):
    relay, emulator = rig()
    images = {}
    first = host.push(relay.host.path, heads(n=10), encoding="sparse", images=images)
    assert first.encoding == "f32"  # the host mirrors nothing of the factory weights: send them whole
    target = image_of(heads(n=40))
    errors, sizes = [], []
    for _ in range(3):
        report = host.push(relay.host.path, heads(n=40), encoding="sparse", budget=emulator.device.slot_size,
                           verify=True, images=images)
        assert report.encoding == "sparse" and report.parity == 0
        errors.append(float(np.abs(emulator.device.weights - target).max()))
        sizes.append(report.payload_bytes)
    # each push is capped at the slot size, so the first ones cannot say everything: what they
    # leave out is the residual, carried by the next push until the device holds the target
    assert errors[0] > 0 and errors[1] <= errors[0] / 10 and errors[2] <= 1e-6
    assert max(sizes) <= emulator.device.slot_size


def test_sparse_budget_sends_largest_changes_first():
    layers = layers_of([_dense(20, 10)])
    base = np.zeros(size(layers), np.float32)
    target = np.random.default_rng(0).standard_normal(base.size).astype(np.float32)
    update = enc.encode(target, layers, Encoding.SPARSE_INT8, base=base, budget=100)
    got = enc.decode(update, layers, Encoding.SPARSE_INT8, base)
    assert len(update) <= 100
    sent = got != 0
    assert np.abs(target[sent]).min() >= np.abs(target[~sent]).max()


def _dense(n_out, n_in):
    from edgefdfa.head import Dense
    return Dense(np.zeros((n_out, n_in), np.float32), np.zeros(n_out, np.float32), "relu", "")


KEY = b"0123456789abcdef0123456789abcdef"


def test_keyed_device_accepts_signed_and_rejects_unsigned_or_forged(rig, heads):
    relay, emulator = rig(key=KEY)
    before = img.digest(emulator.device.weights)
    with pytest.raises(ProtocolError) as e:
        host.push(relay.host.path, heads(), images={})
    assert e.value.code == Code.UNSIGNED and img.digest(emulator.device.weights) == before
    with pytest.raises(ProtocolError) as e:
        host.push(relay.host.path, heads(), key=b"not the device's key", images={})
    assert e.value.code == Code.BAD_SIGNATURE and img.digest(emulator.device.weights) == before
    report = host.push(relay.host.path, heads(), key=KEY, verify=True, images={})
    assert report.parity == 0 and img.digest(emulator.device.weights) == img.digest(image_of(heads()))


def test_unkeyed_device_takes_a_signed_update(rig, heads):
    relay, _ = rig()
    assert host.push(relay.host.path, heads(), key=KEY, verify=True, images={}).parity == 0
