"""Whole sessions over real pseudo-terminals: the host pushes a learned head to the emulator through
a relay that may lose, damage, repeat, reorder or cut frames."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgefdfa
from edgefdfa.export import head_of
from edgefdfa.head import image_of, layers_of
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.protocol import (
    NONE,
    Code,
    DeviceTimeout,
    MsgType,
    ProtocolError,
    model_id,
)

X = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)


def host_outputs(head):
    """The float head's outputs on X, computed on the host."""
    layers, image = layers_of(head), image_of(head)
    return np.array([img.forward(image, layers, x) for x in X])


def device_outputs(port):
    """The device's outputs on X (INFER)."""
    return np.array([host.infer(port, x) for x in X])


def test_push_f32_infer_status_rollback(rig, heads):
    relay, emulator = rig()
    head, factory = heads(), heads(seed=99, n=0)
    assert np.abs(device_outputs(relay.host.path) - host_outputs(factory)).max() < 1e-6
    report = host.push(relay.host.path, head, verify=True, images={})
    assert report.parity == 0 and report.drift <= 1e-5 and report.resends == 0
    assert report.payload_bytes == emulator.device.slot_size and report.wire_bytes > report.payload_bytes
    assert np.abs(device_outputs(relay.host.path) - host_outputs(head)).max() <= 1e-5
    s = host.status(relay.host.path)
    assert (s.active_id, s.previous_id, s.state) == (report.update_id, 0, 0)
    assert host.rollback(relay.host.path).active_id == 0
    assert np.abs(device_outputs(relay.host.path) - host_outputs(factory)).max() < 1e-6
    assert host.status(relay.host.path).previous_id == report.update_id
    assert "payload bytes" in str(report) and report.rate > 0


def test_rollback_without_previous_is_named(rig):
    relay, _ = rig()
    with pytest.raises(ProtocolError) as e:
        host.rollback(relay.host.path)
    assert e.value.code == Code.NO_PREVIOUS and host.status(relay.host.path).previous_id == NONE


def test_wrong_head_shape_is_refused(rig):
    relay, _ = rig()
    with pytest.raises(ProtocolError) as e:
        host.push(relay.host.path, head_of(edgefdfa.MLP([24, 16, 4]))[0], images={})
    assert e.value.code == Code.MODEL_MISMATCH


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), drop=st.floats(0, 0.15), corrupt=st.floats(0, 0.15),
       duplicate=st.floats(0, 0.2), reorder=st.floats(0, 0.2))
def test_push_survives_a_faulty_line(rig, heads, seed, drop, corrupt, duplicate, reorder):
    relay, emulator = rig(seed=seed, drop=drop, corrupt=corrupt, duplicate=duplicate, reorder=reorder)
    head = heads(seed=seed % 7)
    report = host.push(relay.host.path, head, window=6, timeout=0.1, retries=60, images={})
    assert img.digest(emulator.device.weights) == img.digest(image_of(head))
    assert emulator.device.ids[emulator.device.active] == report.update_id


@pytest.mark.parametrize("fault", ["drop", "corrupt", "duplicate", "reorder"])
def test_each_fault_is_recovered(rig, heads, fault):
    relay, emulator = rig(seed=1, **{fault: 0.3})
    head = heads()
    report = host.push(relay.host.path, head, window=6, timeout=0.1, retries=60, verify=True, images={})
    assert relay.faults[fault] > 0 and report.parity == 0 and report.drift <= 1e-5
    assert img.digest(emulator.device.weights) == img.digest(image_of(head))


def test_an_update_that_fits_one_frame_is_one_update_and_one_active(rig, heads):
    """A small sparse push costs HELLO_REQ, HELLO, UPDATE and ACTIVE: four frames, every byte counted."""
    relay, emulator = rig()
    images = {}
    host.push(relay.host.path, heads(n=0), encoding="sparse", images=images)  # unknown weights: f32, in CHUNKs
    assert [k for h, k, _ in relay.sent if h][:3] == [MsgType.HELLO_REQ, MsgType.BEGIN, MsgType.CHUNK]
    relay.sent.clear()
    learned = heads(n=40)
    report = host.push(relay.host.path, learned, encoding="sparse", verify=True, images=images)
    push = relay.sent[:4]
    assert [(h, k) for h, k, _ in push] == [(True, MsgType.HELLO_REQ), (False, MsgType.HELLO),
                                            (True, MsgType.UPDATE), (False, MsgType.ACTIVE)]
    assert report.encoding == "sparse" and report.wire_bytes == sum(n for _, _, n in push)
    assert report.parity == 0 and report.resends == 0
    mirror = images[(model_id(layers_of(learned)), report.update_id)]
    assert np.array_equal(emulator.device.weights, mirror) and emulator.device.session is None


@pytest.mark.parametrize("fault", ["drop", "corrupt", "duplicate", "reorder"])
def test_each_fault_is_recovered_in_one_frame_updates(rig, heads, fault):
    """A lost or damaged UPDATE or ACTIVE is resent; a repeated one answers ACTIVE and changes nothing."""
    relay, emulator = rig(seed=2, **{fault: 0.3})
    images = {}
    host.push(relay.host.path, heads(n=0), encoding="sparse", timeout=0.1, retries=60, images=images)
    for n in (10, 20, 30, 40):
        report = host.push(relay.host.path, heads(n=n), encoding="sparse", timeout=0.1, retries=60, images=images)
        assert report.encoding == "sparse"
        assert np.array_equal(emulator.device.weights, images[(model_id(layers_of(heads())), report.update_id)])
    assert relay.faults[fault] > 0 and MsgType.UPDATE in {k for _, k, _ in relay.sent}


def test_cut_cable_keeps_old_weights_then_resumes(rig, heads):
    relay, emulator = rig()
    head, factory = heads(), heads(seed=99, n=0)

    def cut_halfway(have, total):
        if have > total // 2:
            relay.cut.set()

    with pytest.raises(DeviceTimeout):
        host.push(relay.host.path, head, window=2, timeout=0.05, retries=3, progress=cut_halfway, images={})
    relay.cut.clear()
    assert np.abs(device_outputs(relay.host.path) - host_outputs(factory)).max() < 1e-6
    held = host.status(relay.host.path).have
    assert 0 < held < emulator.device.slot_size
    report = host.push(relay.host.path, head, verify=True, images={})
    assert report.resumed_from == held and report.parity == 0 and report.drift <= 1e-5


def test_device_reset_midway_restarts_and_completes(rig, heads):
    relay, emulator = rig()
    head, factory = heads(), heads(seed=99, n=0)
    resets = []

    def reset_once(have, total):
        if have > total // 2 and not resets:
            resets.append(have)
            emulator.device.reset()
            assert np.abs(np.array([img.forward(emulator.device.weights, emulator.device.layers, x) for x in X])
                          - host_outputs(factory)).max() < 1e-6

    report = host.push(relay.host.path, head, window=2, timeout=0.1, progress=reset_once, verify=True, images={})
    assert resets and report.resends > 0 and report.parity == 0 and report.drift <= 1e-5


def test_a_port_that_goes_away_is_named_and_the_device_keeps_its_weights(heads):
    """An unplugged adapter (the pty's other end closed mid-push) surfaces as DeviceTimeout, not EIO."""
    from firmware_bridge.cable import Cable
    from firmware_bridge.emulator import Device, Emulator

    factory = heads(seed=99, n=0)
    cable = Cable()
    device = Device(layers_of(factory), image_of(factory), max_frame=128)
    emulator = Emulator(cable.device, device).start()
    try:
        def unplug(have, total):
            if have >= total // 2:
                cable.close()

        with pytest.raises(DeviceTimeout, match="went away"):
            host.push(cable.host, heads(n=40), images={}, progress=unplug, timeout=0.3, retries=2)
        assert np.array_equal(device.weights, image_of(factory))
    finally:
        emulator.stop()


def test_the_push_report_counts_the_push_not_its_verify(rig, heads):
    reports = []
    for verify in (False, True):
        relay, _ = rig()
        reports.append(host.push(relay.host.path, heads(n=40), verify=verify, images={}))
    plain, verified = reports
    assert verified.parity is not None and plain.parity is None
    assert verified.wire_bytes == plain.wire_bytes > plain.payload_bytes
