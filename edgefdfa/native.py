"""The compiled head: edgefdfa/_head.c, an extension type bound once to a learner's weights (in
place) and buffers, running the firmware's C: the forward pass (edgefdfa_head.c) for predictions and
the SGD step at batch 1 (edgefdfa_learn.c) for `learn_one`. Its status codes are the C enums',
exported by the module.

`available()` is False when the module was not built (no C compiler or no Python headers at install)
or the environment sets EDGEFDFA_NATIVE=0; the learner then predicts and learns in NumPy.
"""

from __future__ import annotations

import os

import numpy as np

from .head import ACTIVATION_CODES as ACTIVATIONS  # edgefdfa_activation

try:
    from . import _head as _MODULE
except ImportError:
    _MODULE = None

NOT_FINITE = getattr(_MODULE, "SAMPLE_NOT_FINITE", -1)  # the sample holds NaN or Inf
NOT_A_BUFFER = getattr(_MODULE, "SAMPLE_NOT_A_BUFFER", -2)  # not a C-ordered float32 array of the row's shape
RULES = {"fdfa": "RULE_FDFA", "dfa": "RULE_DFA", "bp": "RULE_BP"}  # edgefdfa_rule, by rule name
LOSSES = {"ce": "LOSS_CE", "mse": "LOSS_MSE"}  # edgefdfa_loss, by loss name
DIVERGED = ({_MODULE.LEARN_DIVERGED_LOSS: "loss", _MODULE.LEARN_DIVERGED_STEP: "step",
             _MODULE.LEARN_DIVERGED_FEEDBACK: "feedback"} if _MODULE is not None else {})
"""edgefdfa_learn_status of a refused step -> which check refused it."""


def built() -> bool:
    """Whether the extension module was built at install."""
    return _MODULE is not None


def available() -> bool:
    """Whether the compiled head is built and not switched off (EDGEFDFA_NATIVE=0)."""
    return _MODULE is not None and os.environ.get("EDGEFDFA_NATIVE", "1") != "0"


def compiles(activations: list[str]) -> bool:
    """Whether the compiled forward pass is at hand and runs these activations."""
    return available() and all(a in ACTIVATIONS for a in activations)


def head(sizes: tuple[int, ...], activations: list[str], params: np.ndarray, x: np.ndarray):
    """A `_head.Head` on the flat parameter array (W0 b0 W1 b1 ..., read and written in place) and
    the input row x, with new (K,) output arrays `raw` and `probabilities` it writes. Per sample:
    load(v) copies v into x (0, or NOT_A_BUFFER / NOT_FINITE: the caller checks v itself), then raw()
    or probabilities() return 0. learning(...) binds the step that learn(label, lr) takes."""
    raw, probabilities = np.zeros(sizes[-1], np.float32), np.zeros(sizes[-1], np.float32)
    compiled = _MODULE.Head(bytes(ACTIVATIONS[a] for a in activations), tuple(int(n) for n in sizes), params, x,
                            raw, probabilities)
    return compiled, raw, probabilities


def code(table: dict[str, str], name: str) -> int:
    """The C enum value for a rule or loss name (RULES, LOSSES)."""
    return constant(table[name])


def constant(name: str) -> int:
    """A C enum value the module exports by name ("LEARN_OK", "LEARN_BAD_LABEL", ...)."""
    return getattr(_MODULE, name)


def _copy_sample(dst: np.ndarray, src) -> int:
    """copy_sample where the module is not built: nothing is taken, the caller checks."""
    return NOT_A_BUFFER


copy_sample = _MODULE.copy_sample if available() else _copy_sample
"""copy_sample(dst, src) -> 0, NOT_FINITE or NOT_A_BUFFER: src copied into dst (float32, C order, one
shape) and checked, in one C call; the caller checks anything not 0 itself and says what is wrong."""


def _dequantize(dst: np.ndarray, codes: np.ndarray, table: np.ndarray) -> None:
    """dequantize where the module is not built: NumPy's take."""
    table.take(codes.view(np.uint8), out=dst, mode="wrap")  # wrap: no bounds check to buffer


dequantize = _MODULE.dequantize if available() else _dequantize
"""dequantize(dst, codes, table): dst[i] = table[codes[i]], an 8-bit output's codes (read as unsigned) to
their real values, (n,) float32 from (n,) 8-bit codes and a (256,) float32 table, in one C call."""
