"""A device that learns by itself (PROTOCOL.md §8), in Python: LEARN steps the working copy with the
C kernel's arithmetic, every refusal leaves learning exactly where it was, SAVE persists through the
atomic path, a reset comes back to the last save and learning then goes on as if uninterrupted."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefdfa import native
from edgefdfa.head import Layer, size
from firmware_bridge import image as img
from firmware_bridge.emulator import Device, learned_id
from firmware_bridge.frame import FrameReader
from firmware_bridge.learning import Learning, LearnConfig, Sample
from firmware_bridge.protocol import LEARNS, TARGETS, Code, Encoding, MsgType, StepStatus, model_id
from firmware_bridge import encoding as enc
from firmware_bridge.rng import Rng
from tests.bridge import hostile
from tests.bridge import wire as req
from tests.bridge.test_device import error, send

LAYERS = (Layer(5, 4, 1), Layer(3, 5, 0))  # 4 inputs, 5 hidden (relu), 3 classes
START = (np.arange(size(LAYERS), dtype=np.float32) % 7 - 3) / 10
MODEL = model_id(LAYERS)
KEY = b"k" * 16


def device(**kw):
    return Device(LAYERS, START, max_frame=512, learn=kw.pop("learn", LearnConfig(lr=0.1)), **kw)


def stream(n, seed=0, k=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), [int(v) for v in rng.integers(0, k, n)]


def learn(dev, xs, labels, counter, key=None):
    (kind, m), = send(dev, MsgType.LEARN, req.learn(req.samples(xs, labels), len(xs), MODEL, counter, key))
    return kind, m


def state(dev):
    """Everything learning carries: the working copy, the feedback, the generator, the step count."""
    l = dev.learning
    return l.working.copy(), l.feedback.copy(), tuple(l.rng.state), l.steps


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_hello_says_the_device_learns_and_how():
    (_, hello), = send(device(), MsgType.HELLO_REQ, raw=b"")
    assert hello.flags & LEARNS and not hello.flags & TARGETS and hello.counter == 0
    (_, hello), = send(device(learn=LearnConfig(loss="mse")), MsgType.HELLO_REQ, raw=b"")
    assert hello.flags & LEARNS and hello.flags & TARGETS
    (_, hello), = send(Device(LAYERS, START), MsgType.HELLO_REQ, raw=b"")
    assert not hello.flags & (LEARNS | TARGETS)


def test_learn_answers_test_then_train_and_infer_serves_the_working_copy():
    dev = device()
    xs, labels = stream(4)
    before = [img.forward(START, LAYERS, x) for x in xs[:1]]
    kind, m = learn(dev, xs, labels, 1)
    assert kind == MsgType.LEARNED and m.steps == 4 and m.saved_steps == 0
    assert m.status == (StepStatus.LEARNED,) * 4
    assert m.predicted[0] == int(np.argmax(before[0]))  # the first prediction is the untouched head's
    assert np.isfinite(m.loss).all() and m.loss[0] > 0
    (_, out), = send(dev, MsgType.INFER, raw=np.asarray(xs[0], "<f4").tobytes())
    assert np.array_equal(out.values, img.forward(dev.learning.working, LAYERS, xs[0]))
    assert not np.array_equal(dev.learning.working, START) and np.array_equal(dev.weights, START)
    (_, hello), = send(dev, MsgType.HELLO_REQ, raw=b"")
    assert hello.active_id == 0 and hello.counter == 1  # nothing saved; the LEARN's counter is the floor


def test_learning_beats_the_frozen_head_on_a_learnable_stream():
    """A LEARN stream the head can fit (the label is the largest of the first three inputs): the
    device's test-then-train accuracy on the second half is far above the untouched head's."""
    dev = device()
    xs, _ = stream(600, seed=1)
    labels = [int(np.argmax(x[:3])) for x in xs]
    predicted = []
    for i in range(0, 600, 10):
        _, m = learn(dev, xs[i:i + 10], labels[i:i + 10], i + 1)
        predicted += m.predicted
    frozen = np.mean([np.argmax(img.forward(START, LAYERS, x)) == y for x, y in zip(xs[300:], labels[300:])])
    learned = np.mean(np.array(predicted[300:]) == labels[300:])
    assert learned > 0.8 and learned > frozen + 0.3


@pytest.mark.parametrize("rule,loss,acts", [("fdfa", "ce", (1, 0)), ("dfa", "ce", (1, 0)), ("bp", "ce", (1, 0)),
                                            ("fdfa", "mse", (1, 0)), ("fdfa", "mse", (2, 3)), ("fdfa", "ce", (0,))])
@pytest.mark.skipif(not native.built(), reason="the compiled kernel is not built")
def test_the_python_device_steps_as_the_c_kernel(rule, loss, acts):
    """The NumPy twin against edgefdfa_learn_step itself (the extension's build, -ffp-contract=off)
    on the same draws: bit for bit with no transcendental function in the step (relu, identity,
    mse), within 2e-6 over 1,000 steps otherwise (NumPy's and libm's exp, log, tanh round apart)."""
    sizes = (6, 8, 3)[:len(acts) + 1] if len(acts) > 1 else (6, 3)
    names = {0: "identity", 1: "relu", 2: "tanh", 3: "sigmoid"}
    layers = tuple(Layer(o, i, a) for i, o, a in zip(sizes, sizes[1:], acts))
    rng = np.random.default_rng(3)
    w = (rng.standard_normal(size(layers)) * 0.4).astype(np.float32)
    config = LearnConfig(rule=rule, loss=loss, lr=0.05)
    twin, params, x = Learning(layers, config, w), w.copy(), np.zeros(sizes[0], np.float32)
    head, _, _ = native.head(sizes, [names[a] for a in acts], params, x)
    hidden, K = sum(sizes[1:-1]), sizes[-1]
    u = np.zeros(hidden, np.float32) if rule == "fdfa" and hidden else None
    feedback = np.zeros(K * hidden, np.float32) if rule != "bp" and hidden else None
    target = np.zeros(K, np.float32) if loss == "mse" else None
    head.learning(native.code(native.RULES, rule), native.code(native.LOSSES, loss), config.alpha, config.sigma,
                  config.max_sumsq, feedback, u, target, np.zeros(K, np.float32))
    draws = Rng(config.seed)
    for _ in range(1000):
        sample = Sample(rng.standard_normal(sizes[0]).astype(np.float32), int(rng.integers(K)),
                        rng.standard_normal(K).astype(np.float32) if loss == "mse" else None)
        if u is not None:
            u[:] = draws.normals(hidden) * np.float32(config.sigma)
        if target is not None:
            target[:] = sample.target
        head.load(sample.x)
        assert head.learn(sample.label, config.lr) == twin.step(sample)[0]
    exact = loss == "mse" and set(acts) <= {0, 1}
    assert np.abs(params - twin.working).max() <= (0 if exact else 2e-6)
    if feedback is not None:
        assert np.abs(feedback - twin.feedback).max() <= (0 if exact else 2e-6)


def refusals(dev, key=None):
    """(code, LEARN) pairs the device must refuse, after a first LEARN at counter 1."""
    xs, labels = stream(2)
    nan = xs.copy()
    nan[1, 2] = np.nan
    huge_label = [0, 3]
    good = req.samples(xs, labels)
    out = [
        (Code.BAD_LENGTH, req.learn(good[:-1], 2, MODEL, 5, key)),
        (Code.BAD_LENGTH, req.learn(good, 3, MODEL, 5, key)),
        (Code.BAD_LENGTH, req.learn(b"", 0, MODEL, 5, key)),
        (Code.BAD_INPUT, req.learn(req.samples(nan, labels), 2, MODEL, 5, key)),
        (Code.BAD_INPUT, req.learn(req.samples(np.full((1, 4), np.inf, np.float32), [0]), 1, MODEL, 5, key)),
        (Code.BAD_LABEL, req.learn(req.samples(xs, huge_label), 2, MODEL, 5, key)),
        (Code.STALE, req.learn(good, 2, MODEL, 1, key)),  # the first LEARN's counter: a resend
    ]
    if key is not None:
        out += [(Code.UNSIGNED, req.learn(good, 2, MODEL, 5)),
                (Code.BAD_SIGNATURE, req.learn(good, 2, MODEL, 5, b"x" * 16))]
    return out


@pytest.mark.parametrize("key", [None, KEY])
def test_a_refused_learn_changes_nothing_and_learning_goes_on_identically(key):
    dev, twin = device(key=key), device(key=key)
    xs, labels = stream(6, seed=2)
    for d in (dev, twin):
        assert learn(d, xs[:3], labels[:3], 1, key)[0] == MsgType.LEARNED
    for code, frame in refusals(dev, key):
        before = state(dev)
        assert error(send(dev, MsgType.LEARN, frame)) == code, code
        assert same(state(dev), before), code
    for d in (dev, twin):
        assert learn(d, xs[3:], labels[3:], 2, key)[0] == MsgType.LEARNED
    assert same(state(dev), state(twin))


def test_a_device_that_does_not_learn_says_so():
    dev = Device(LAYERS, START)
    xs, labels = stream(1)
    assert error(send(dev, MsgType.LEARN, req.learn(req.samples(xs, labels), 1, MODEL))) == Code.NOT_LEARNING
    assert error(send(dev, MsgType.SAVE, req.save(MODEL))) == Code.NOT_LEARNING


def test_save_persists_and_a_reset_comes_back_to_it_then_learns_on_as_if_uninterrupted():
    dev, straight = device(), device()
    xs, labels = stream(40, seed=4)
    for d in (dev, straight):
        learn(d, xs[:20], labels[:20], 1)
        (kind, active), = send(d, MsgType.SAVE, req.save(MODEL))
        assert kind == MsgType.ACTIVE and active.digest == img.digest(d.learning.working)
        assert active.active_id == learned_id(d.learning.working) == d.ids[d.active]
    saved = dev.weights.copy()
    learn(dev, xs[20:30], labels[20:30], 2)  # learned, not saved: lost at the reset
    dev.reset()
    assert np.array_equal(dev.learning.working, saved) and dev.learning.steps == 20
    (_, status), = send(dev, MsgType.STATUS_REQ, raw=b"")
    assert status.previous_id == 0  # the factory weights wait in the other slot for ROLLBACK
    for d in (dev, straight):
        _, m = learn(d, xs[20:], labels[20:], 3)
        assert m.steps == 40 and m.saved_steps == 20
    assert same(state(dev), state(straight))  # generator, feedback and steps were saved with the weights


def test_a_resent_save_answers_active_and_writes_nothing():
    dev = device(key=KEY)
    xs, labels = stream(5)
    learn(dev, xs, labels, 1, KEY)
    (_, first), = send(dev, MsgType.SAVE, req.save(MODEL, 2, KEY))
    slots = dev.slots.copy()
    (kind, again), = send(dev, MsgType.SAVE, req.save(MODEL, 2, KEY))  # the reply was lost: the same SAVE again
    assert kind == MsgType.ACTIVE and again == first and np.array_equal(dev.slots, slots)
    assert error(send(dev, MsgType.SAVE, req.save(MODEL, 3))) == Code.UNSIGNED


def test_a_keyed_device_persists_its_floor_with_a_save():
    dev = device(key=KEY)
    xs, labels = stream(4)
    learn(dev, xs[:2], labels[:2], 7, KEY)
    assert error(send(dev, MsgType.SAVE, req.save(MODEL, 7, KEY))) == Code.STALE  # not above the LEARN's
    send(dev, MsgType.SAVE, req.save(MODEL, 8, KEY))
    learn(dev, xs[2:], labels[2:], 9, KEY)
    dev.reset()
    (_, hello), = send(dev, MsgType.HELLO_REQ, raw=b"")
    assert hello.counter == 8  # the unsaved LEARN's counter is gone with it (PROTOCOL.md §8, limits)
    assert learn(dev, xs[:2], labels[:2], 7, KEY)[0] == MsgType.ERROR  # anything signed before the save is stale


def test_the_device_saves_by_itself_every_n_steps():
    dev = device(learn=LearnConfig(lr=0.1, save_every=10))
    xs, labels = stream(25)
    _, m = learn(dev, xs[:8], labels[:8], 1)
    assert m.saved_steps == 0 and dev.ids[dev.active] == 0
    _, m = learn(dev, xs[8:16], labels[8:16], 2)
    assert m.saved_steps == 16 and np.array_equal(dev.weights, dev.learning.working)
    dev.reset()
    assert dev.learning.steps == 16


def test_a_push_replaces_the_working_copy_and_learning_carries_on():
    dev = device()
    xs, labels = stream(5)
    learn(dev, xs, labels, 1)
    feedback, steps = dev.learning.feedback.copy(), dev.learning.steps
    target = START + 1
    data = enc.encode(target, LAYERS, Encoding.F32)
    (kind, _), = send(dev, MsgType.UPDATE, req.update(data, img.digest(target), MODEL, encoding=Encoding.F32))
    assert kind == MsgType.ACTIVE
    assert np.array_equal(dev.learning.working, target) and dev.learning.steps == steps
    assert np.array_equal(dev.learning.feedback, feedback)
    dev.reset()
    assert np.array_equal(dev.learning.working, target) and dev.learning.steps == steps


def test_mse_samples_carry_targets():
    dev = device(learn=LearnConfig(loss="mse", lr=0.05))
    xs, _ = stream(3)
    targets = np.ones((3, 3), np.float32)
    (kind, m), = send(dev, MsgType.LEARN, req.learn(req.samples(xs, targets=targets), 3, MODEL))
    assert kind == MsgType.LEARNED and m.steps == 3
    targets[1, 0] = np.nan
    assert error(send(dev, MsgType.LEARN, req.learn(req.samples(xs, targets=targets), 3, MODEL, 2))) == Code.BAD_INPUT


def test_a_diverging_step_is_refused_and_named_and_the_rest_are_learned():
    dev = device(learn=LearnConfig(lr=0.1, max_sumsq=1e6))
    xs, labels = stream(3)
    xs[1] *= 1e4  # finite, far out of range: the step's gradient is over the bound
    before = dev.learning.working.copy()
    _, m = learn(dev, xs, labels, 1)
    assert m.status[1] in (StepStatus.DIVERGED_STEP, StepStatus.DIVERGED_LOSS) and m.steps == 2
    assert m.status[0] == m.status[2] == StepStatus.LEARNED
    assert np.isfinite(dev.learning.working).all() and not np.array_equal(dev.learning.working, before)


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile.frames, max_size=30), st.sampled_from([None, KEY]))
def test_hostile_streams_never_crash_a_learning_device_or_touch_what_is_saved(stream, key):
    """Whatever arrives, every refusal is named, the working copy stays finite and, on a keyed
    device, nothing unsigned changes the slots or learning (the corpus's hmacs are all forged)."""
    dev = device(key=key)
    before = state(dev)
    reader = FrameReader(dev.max_frame)
    for wire in stream:
        for item in reader.feed(wire + b"\x00"):
            for kind, _, m in dev.handle(item):
                assert kind != MsgType.ERROR or Code(m.code) != Code.OK
    assert np.isfinite(dev.learning.working).all() and np.isfinite(dev.learning.feedback).all()
    if key is not None:
        assert np.array_equal(dev.weights, START) and same(state(dev), before)
