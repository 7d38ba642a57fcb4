"""SPARSE_INT8 (PROTOCOL.md §4): varint gaps against a plain reference, malformed blocks refused
without writing outside the slot, the byte budget kept with the largest changes first, and a
budgeted push over a real pty whose device answers are the host mirror's, bit for bit."""

import struct
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgefdfa import cli
from edgefdfa.formats import bundle
from edgefdfa.head import Dense, image_of, layers_of, shapes, size, tensors
from firmware_bridge import encoding as enc
from firmware_bridge import host
from firmware_bridge import image as img
from firmware_bridge.emulator import Device, Emulator
from firmware_bridge.protocol import Code, Encoding, Layer, ProtocolError, model_id

SPARSE = Encoding.SPARSE_INT8


def leb128(value):
    """The reference: one unsigned LEB128 varint, a loop of the spec's words."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 200), st.integers(0, 2**32 - 1)), max_size=60), st.binary(max_size=5))
def test_varints_match_the_reference_and_read_back(values, tail):
    wire = enc.varints(np.array(values, np.uint64))
    assert wire == b"".join(leb128(v) for v in values)
    assert max((len(leb128(v)) for v in values), default=0) <= 5
    got, end = enc.read_varints(b"\x07" + wire + tail, 1, len(values))
    assert got.tolist() == values and end == 1 + len(wire)


def _layers(draw):
    sizes = draw(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    return tuple(Layer(o, i, 1) for i, o in zip(sizes, sizes[1:]))


@st.composite
def sparse_updates(draw):
    """(layers, base, target): a random head and a change at a random subset (empty to every element)."""
    layers = _layers(draw)
    n = size(layers)
    base = draw(hnp.arrays(np.float32, n, elements=st.floats(-4, 4, width=32)))
    density = draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    changed = rng.random(n) < density
    target = base + np.where(changed, rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 1, n), 0).astype(np.float32)
    return layers, base, target.astype(np.float32)


@settings(max_examples=80, deadline=None)
@given(sparse_updates())
def test_sparse_round_trip(update):
    layers, base, target = update
    wire = enc.encode(target, layers, SPARSE, base=base)
    got = enc.decode(wire, layers, SPARSE, base)
    for g, t, b in zip(tensors(got, layers), tensors(target, layers), tensors(base, layers)):
        step = np.float32(np.abs(t - b).max()) / np.float32(127)
        assert np.all(np.abs(g - t) <= step / 2 + 1e-6 * np.abs(t).max() + 1e-30)  # half a step (§4)
        assert np.array_equal(g[t == b], b[t == b])  # nothing unchanged is touched


def block(count, scale, gaps, q):
    """One tensor's SPARSE_INT8 block from raw parts (gaps already varint bytes)."""
    return struct.pack("<If", count, scale) + gaps + bytes(np.array(q, np.int8).tobytes())


LAYERS = (Layer(4, 3, 1),)  # W (4, 3): 12 elements, b: 4
EMPTY_B = block(0, 0.0, b"", [])
MALFORMED = {  # name: (update, what the refusal says)
    "over-long varint": (block(1, 1.0, b"\x80\x80\x80\x80\x80\x00", [1]) + EMPTY_B, "longer than 5 bytes"),
    "varint of 2**32": (block(1, 1.0, b"\x80\x80\x80\x80\x10", [1]) + EMPTY_B, "2**32 or more"),
    "varint past 32 bits": (block(1, 1.0, b"\xff\xff\xff\xff\x7f", [1]) + EMPTY_B, "2**32 or more"),
    "truncated varint": (block(1, 1.0, b"", [])[:8] + b"\x85", "ends inside"),
    "index past the tensor": (block(2, 1.0, b"\x03\x08", [1, 1]) + EMPTY_B, "past a tensor of 12"),
    "5-byte gap past the tensor": (block(1, 1.0, b"\x81\x80\x80\x80\x01", [1]) + EMPTY_B, "past a tensor"),
    "count over the tensor": (block(13, 1.0, b"\x00" * 13, [1] * 13) + EMPTY_B, "13 sparse entries"),
    "values missing": (block(2, 1.0, b"\x00\x00", [1]) + EMPTY_B, "update ends"),
    "bytes left over": (block(1, 1.0, b"\x00", [1]) + EMPTY_B + b"\x00", "left over"),
    "second block bad": (block(1, 1.0, b"\x00", [1]) + block(1, 1.0, b"\x04", [1]), "past a tensor of 4"),
    "decodes to Inf": (block(1, 3e38, b"\x00", [127]) + EMPTY_B, "NaN or Inf"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_sparse_blocks_are_bad_update_and_write_only_the_slot(name):
    update, says = MALFORMED[name]
    base = np.arange(16, dtype=np.float32)
    memory = np.full(20, 7.0, np.float32)  # guard | slot (16) | guard
    with pytest.raises(ProtocolError, match=says.replace("*", r"\*")) as e:
        enc.decode(update, LAYERS, SPARSE, base.copy(), out=memory[2:18])
    assert e.value.code == Code.BAD_UPDATE
    assert np.array_equal(memory[[0, 1, 18, 19]], [7, 7, 7, 7])  # §4: nothing outside the inactive slot
    assert np.array_equal(base, np.arange(16, dtype=np.float32))


def test_a_well_formed_block_with_a_5_byte_gap_decodes():
    layers = (Layer(1, 1, 1),)
    # gap 0 written in 5 bytes (allowed: at most 5 bytes and < 2**32), then an empty bias block
    wire = block(1, 0.5, b"\x80\x80\x80\x80\x00", [3]) + EMPTY_B
    got = enc.decode(wire, layers, SPARSE, np.zeros(2, np.float32))
    assert got.tolist() == [1.5, 0.0]


def sent(wire, layers):
    """The image positions a SPARSE_INT8 update lists, read from its blocks."""
    out, at, offset = [], 0, 0
    for shape in shapes(layers):
        count, _ = struct.unpack_from("<If", wire, at)
        gaps, at = enc.read_varints(wire, at + 8, count)
        out.append(offset + np.cumsum(gaps + 1) - 1)
        at, offset = at + count, offset + int(np.prod(shape))
    assert at == len(wire)
    mask = np.zeros(offset, bool)
    mask[np.concatenate(out).astype(np.int64)] = True
    return mask


@settings(max_examples=80, deadline=None)
@given(sparse_updates(), st.integers(0, 400))
def test_budget_kept_largest_first_and_as_many_as_fit(update, extra):
    layers, base, target = update
    n_tensors = 2 * len(layers)
    budget = enc.sparse_minimum(n_tensors) + extra
    wire = enc.encode(target, layers, SPARSE, base=base, budget=budget)
    full = enc.encode(target, layers, SPARSE, base=base)
    assert len(wire) <= budget and (len(full) > budget or wire == full)
    sent_, could = sent(wire, layers), sent(full, layers)  # could: what a delta without a budget lists
    assert not (sent_ & ~could).any()
    delta = np.abs(target - base)  # float32, as the host computes it
    if could.any():
        assert sent_[np.argmax(np.where(could, delta, -1))]  # the largest change always goes
    if (could & ~sent_).any() and sent_.any():
        assert delta[sent_].min() >= delta[could & ~sent_].max()  # largest first
    if len(wire) < len(full):  # as many as fit: one more change would not
        k = int(sent_.sum())
        order = np.argsort(-np.where(could, delta, -1), kind="stable")
        more = np.zeros_like(could)
        more[order[:k + 1]] = True
        bigger = enc.encode(np.where(more, target, base).astype(np.float32), layers, SPARSE, base=base)
        assert len(bigger) > budget or not (more & could).sum() > k


def test_budget_under_the_minimum_is_refused_by_name():
    layers = (Layer(4, 3, 1),)
    with pytest.raises(ValueError, match="budget of 10 bytes"):
        enc.encode(np.ones(16, np.float32), layers, SPARSE, base=np.zeros(16, np.float32), budget=10)


# --- a budgeted push over a real pty -------------------------------------------------------------

def test_budgeted_pushes_match_the_mirror_and_converge(rig, heads):
    relay, emulator = rig()
    images = {}
    host.push(relay.host.path, heads(n=0), encoding="sparse", images=images)  # f32: now mirrored
    learned = heads(n=40)
    target, layers = image_of(learned), layers_of(learned)
    X = np.random.default_rng(3).standard_normal((8, layers[0].n_in)).astype(np.float32)
    budget = host.sparse_budget(None, layers)
    assert budget == emulator.device.slot_size // 16
    residuals = [np.abs(emulator.device.weights - target)]
    for _ in range(16):
        report = host.push(relay.host.path, learned, encoding="sparse", images=images)
        assert report.encoding == "sparse" and report.payload_bytes <= budget
        mirror = images[(model_id(layers), report.update_id)]
        assert np.array_equal(emulator.device.weights, mirror)
        device = host.infer(relay.host.path, X)
        assert np.array_equal(device, np.array([img.forward(mirror, layers, x) for x in X]))  # exactly
        residuals.append(np.abs(mirror - target))
    l2 = [float(np.linalg.norm(r)) for r in residuals]
    top = [float(r.max()) for r in residuals]
    assert all(b < a for a, b in pairwise(l2) if a > 1e-6)  # shrinks on every push
    assert all(b <= a for a, b in pairwise(top))  # no element's error grows
    assert top[1] > 1e-3 and top[-1] <= 1e-6  # the first push left a residual; repeated ones lose nothing


def test_sparse_budget_flag_caps_the_cli_push(tmp_path, rig, heads, capsys):
    relay, _ = rig()
    images_dir = tmp_path / "mirror"
    for name, n in (("factory.efdb", 0), ("learned.efdb", 40)):
        (tmp_path / name).write_bytes(bundle.pack(bundle.head_tensors(heads(n=n))))
    base = [str(tmp_path / "factory.efdb"), "--port", relay.host.path, "--mirror", str(images_dir)]
    assert cli.main(["push", *base, "--encoding", "f32"]) == 0
    args = [str(tmp_path / "learned.efdb"), "--port", relay.host.path, "--mirror", str(images_dir),
            "--encoding", "sparse", "--verify"]
    assert cli.main(["push", *args, "--budget", "5"]) == 1
    assert "budget of 5 bytes" in capsys.readouterr().err
    assert cli.main(["push", *args, "--budget", "100"]) == 0
    out = capsys.readouterr().out
    assert "(sparse): " in out and int(out.split("(sparse): ")[1].split()[0]) <= 100


# --- INFER and OUTPUT must fit the device's max_frame (§2) ---------------------------------------

@pytest.mark.parametrize("n_in, n_out, name", [(40, 4, "INFER"), (4, 40, "OUTPUT")])
def test_infer_that_does_not_fit_max_frame_is_refused_before_sending(relays, n_in, n_out, name):
    relay = relays()
    layers = (Layer(n_out, n_in, 0),)
    device = Device(layers, np.zeros(size(layers), np.float32), max_frame=128)
    emulator = Emulator(relay.device.path, device).start()
    try:
        with pytest.raises(ProtocolError) as e:
            host.infer(relay.host.path, np.zeros(n_in, np.float32))
        assert e.value.code == Code.TOO_LONG
        assert f"{name} of 40 floats is a 172-byte frame" in str(e.value) and "max_frame is 128" in str(e.value)
        assert device.dropped == 0  # the host never sent a frame the device would drop as TOO_LONG
        head = [Dense(np.ones((n_out, n_in), np.float32), np.ones(n_out, np.float32), "identity", "")]
        with pytest.raises(ProtocolError) as e:
            host.push(relay.host.path, head, verify=True, images={})
        assert e.value.code == Code.TOO_LONG and device.ids == [0, 0] and not device.weights.any()
    finally:
        emulator.stop()


def test_infer_of_the_wrong_size_is_refused_by_the_host(rig):
    relay, _ = rig()
    with pytest.raises(ProtocolError) as e:
        host.infer(relay.host.path, np.zeros(23, np.float32))
    assert e.value.code == Code.BAD_INPUT and "24 values" in str(e.value)
    assert host.infer(relay.host.path, np.zeros((3, 24), np.float32)).shape == (3, 4)
