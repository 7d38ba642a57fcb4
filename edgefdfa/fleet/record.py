"""What a device shares each round, as a Flower ArrayRecord: its head's weights and biases in the
flat layout of params.py and, when the server asks for them, FDFA's feedback matrices. The server's
check that a reply holds exactly the expected arrays, finite, with a positive weight."""

from __future__ import annotations

import math

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from ..learner import Learner

PARAMS, FEEDBACK = "params", "feedback"
WEIGHT = "num-examples"  # samples learned this round: FedAvg's weight (Flower's default key)


def feedback_of(learner: Learner) -> np.ndarray | None:
    """FDFA's feedback matrices as one flat array (a view), or None for a rule or head without them."""
    B = learner.rule.state().get("B")
    return B if B is not None and B.size else None


def record_of(learner: Learner, feedback: bool) -> ArrayRecord:
    """The head (and the feedback if `feedback` and the learner has any) as copies."""
    arrays = {PARAMS: Array(learner.get_params())}
    B = feedback_of(learner) if feedback else None
    if B is not None:
        arrays[FEEDBACK] = Array(B.copy())
    return ArrayRecord(arrays)


def adopt(learner: Learner, record: ArrayRecord) -> None:
    """Take the global head (and feedback, if the record holds it) in place; the rest of the
    learner (optimiser state, counters, random stream) stays."""
    learner.set_params(record[PARAMS].numpy())
    B = feedback_of(learner)
    if FEEDBACK in record and B is not None:
        learner.rule.load_state({"B": record[FEEDBACK].numpy()})


def expected_shapes(record: ArrayRecord) -> dict[str, tuple[int, ...]]:
    """The arrays (name: shape) every reply must hold: those of the global record."""
    return {k: tuple(v.shape) for k, v in record.items()}


def refusal(content: RecordDict, expected: dict[str, tuple[int, ...]]) -> str | None:
    """Why a reply cannot be averaged in (None when it can): missing or extra arrays, another shape
    or dtype, a non-finite value, or no positive, finite weight."""
    if len(content.array_records) != 1 or len(content.metric_records) != 1:
        return "a reply must hold one ArrayRecord and one MetricRecord"
    arrays = next(iter(content.array_records.values()))
    if set(arrays.keys()) != set(expected):
        return f"arrays {sorted(arrays.keys())}, expected {sorted(expected)}"
    for name, shape in expected.items():
        a = arrays[name].numpy()
        if a.shape != shape or a.dtype != np.float32:
            return f"{name} has shape {a.shape} and dtype {a.dtype}, expected {shape} float32"
        if not np.isfinite(a).all():
            return f"{name}[{int(np.flatnonzero(~np.isfinite(a))[0])}] is not finite"
    weight = next(iter(content.metric_records.values())).get(WEIGHT)
    if not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight > 0):
        return f"{WEIGHT} is {weight!r}: a reply must say how many samples it learned (> 0)"
    return None
