"""What a device sends and what the server accepts, without processes: the records, the guard in
front of Flower's FedAvg and trimmed mean (on real RecordDicts; a reply is stood in for by the
three attributes the strategies read), and a device's rounds against one uninterrupted run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

import edgefdfa
from edgefdfa.errors import BadModelError
from edgefdfa.fleet import record, split
from edgefdfa.fleet.device import Device, DeviceConfig
from edgefdfa.fleet.strategy import GuardedFedAvg, GuardedTrimmedMean
from edgefdfa.online import OnlineRun, RunConfig
from edgefdfa.stream import Window, open_source

from conftest import MODEL


def reply(params, n=10, **extra) -> RecordDict:
    arrays = {record.PARAMS: Array(np.asarray(params, np.float32)), **{k: Array(v) for k, v in extra.items()}}
    return RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({record.WEIGHT: n})})


@dataclass
class Metadata:
    src_node_id: int


@dataclass
class Reply:
    """The parts of a Flower reply Message a strategy reads."""
    content: RecordDict
    metadata: Metadata

    def has_error(self) -> bool:
        return False


EXPECTED = {record.PARAMS: (4,)}


@pytest.mark.parametrize("content, why", [
    (reply([1, 2, 3, 4]), None),
    (reply([1, np.nan, 3, 4]), "params[1] is not finite"),
    (reply([1, 2, np.inf, 4]), "params[2] is not finite"),
    (reply([1, 2, 3]), "params has shape (3,)"),
    (reply([1, 2, 3, 4], feedback=np.zeros(2, np.float32)), "arrays ['feedback', 'params']"),
    (reply([1, 2, 3, 4], n=0), "num-examples is 0"),
])
def test_refusal_names_what_is_wrong(content, why):
    got = record.refusal(content, EXPECTED)
    assert got is None if why is None else why in got


def test_refusal_of_another_dtype():
    content = RecordDict({"arrays": ArrayRecord({record.PARAMS: Array(np.zeros(4))}),
                          "metrics": MetricRecord({record.WEIGHT: 1})})
    assert "dtype float64" in record.refusal(content, EXPECTED)


@pytest.mark.parametrize("strategy", [GuardedFedAvg, GuardedTrimmedMean])
def test_a_broken_head_does_not_poison_the_round(strategy, caplog):
    good = [Reply(reply([1, 1, 1, 1], n=10), Metadata(1)), Reply(reply([3, 3, 3, 3], n=30), Metadata(2)),
            Reply(reply([2, 2, 2, 2], n=20), Metadata(5))]
    bad = [Reply(reply([np.nan, 0, 0, 0]), Metadata(3)), Reply(reply([0, 0, 0]), Metadata(4))]
    s = strategy(min_train_nodes=1, min_available_nodes=1, expected=EXPECTED,
                 **({"beta": 0.0} if strategy is GuardedTrimmedMean else {}))
    with caplog.at_level("WARNING", logger="flwr"):
        arrays, _ = s.aggregate_train(1, good[:1] + bad + good[1:])
    mean = arrays[record.PARAMS].numpy()
    expected = (10 * 1 + 30 * 3 + 20 * 2) / 60 if strategy is GuardedFedAvg else 2.0  # weighted, or plain mean
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    assert [r["node"] for r in s.last["refused"]] == [3, 4] and s.last["nodes"] == [1, 2, 5]
    assert "node 3 refused: params[0] is not finite" in caplog.text and "node 4 refused" in caplog.text


def test_set_params_refuses_and_changes_nothing():
    learner = edgefdfa.MLP([3, 4, 2], seed=0)
    before = learner.get_params()
    for bad in (np.zeros(5), np.full(before.shape, np.nan)):
        with pytest.raises(BadModelError):
            learner.set_params(bad)
        assert np.array_equal(learner.get_params(), before)
    learner.set_params(before + 1)
    assert np.array_equal(learner.get_params(), before + 1)


def test_rounds_keep_the_device_exactly_where_one_uninterrupted_run_is(tmp_path):
    """Two rounds that adopt the device's own head (an aggregate of one) learn exactly what one run
    over the same stream learns: the window, the stream position and the random stream all carry on."""
    data = split.make(tmp_path / "data", n_devices=2)
    stream = str(data.streams[1])
    device = Device(DeviceConfig(str(MODEL), stream, str(tmp_path / "dev"), samples=50, window=split.WINDOW,
                                 hop=split.HOP, lr=0.01))
    g = record.record_of(edgefdfa.load(MODEL, lr=0.01).learner, True)
    for r in (1, 2):
        g, metrics = device.round(g, r, True)
    model = edgefdfa.load(MODEL, lr=0.01)
    run = OnlineRun(model, RunConfig(), Window(split.WINDOW, split.HOP, 6))
    with open_source(stream, n_features=6) as source:
        for sample in source:
            run.run([sample])
            if model.learner.n_seen == 100:
                break
    assert metrics["consumed"] == run.consumed
    np.testing.assert_array_equal(g[record.PARAMS].numpy(), model.learner.get_params())
    np.testing.assert_array_equal(g[record.FEEDBACK].numpy(), record.feedback_of(model.learner))
