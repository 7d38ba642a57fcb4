"""What every learning rule shares: the interface, the output error, the perturbation draw."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .. import checkpoint

if TYPE_CHECKING:
    from ..learner import LearnerConfig
    from ..losses import Loss
    from ..network import Batch, Network


class Rule:
    """Fills `net.grad` with a gradient (exact or estimated) for one batch and returns its mean loss;
    changes no state of its own until `commit`, so a step found unsound is dropped whole.

    A rule owns only its own state (feedback matrices, directions); the network owns the weights,
    the workspace owns the per-sample buffers, the optimiser applies the update. A `local` rule's
    weight gradient is delta_l^T h_l for every layer: it writes the deltas (`deltas`), and the
    gradient, or a fused in-place SGD update, follows from them.
    """

    name: ClassVar[str] = ""
    local: ClassVar[bool] = True
    draws: ClassVar[bool] = False  # a step consumes random draws (the learner keeps the stream exact on a refusal)

    def __init__(self, net: "Network", loss: "Loss", rng: np.random.Generator, config: "LearnerConfig"):
        self.net, self.loss, self.rng, self.config = net, loss, rng, config

    def gradient(self, bt: "Batch", target: np.ndarray, scale: float = 1.0) -> float:
        """Fill net.grad with scale * (the rule's dL/dparams) for the batch; return the mean loss."""
        loss = self.deltas(bt, target, scale)
        self.net.local_gradients(bt)
        return loss

    def deltas(self, bt: "Batch", target: np.ndarray, scale: float = 1.0) -> float:
        """Write scale * dL/da_l (exact or estimated) into bt.delta[l] for every layer; return the loss."""
        raise NotImplementedError

    def pending_sumsq(self, bt: "Batch") -> float:
        """A squared size of the change `commit` would make to the rule's own state, checked (finite,
        bounded) with the gradient before the step is applied; 0 for a rule that learns no state."""
        return 0.0

    def kernel(self) -> str | None:
        """The C learning step's rule (edgefdfa_learn.c: "fdfa", "dfa", "bp") that computes exactly this
        rule's SGD step at batch 1, with these options; None when it has none."""
        return None

    def commit(self, bt: "Batch") -> None:
        """Update the rule's own state (feedback) from the batch, once the step is known to be sound."""

    def state(self) -> dict[str, np.ndarray]:
        """Arrays a checkpoint must hold for this rule to continue exactly."""
        return {}

    def reset_feedback(self) -> bool:
        """Forget learned feedback (a drift reaction); False when the rule learns none."""
        return False

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Put back `state()`: each array exactly as this rule holds it (a CheckpointError otherwise)."""
        for key, value in self.state().items():
            checkpoint.restore(value, state, key)

    # helpers shared by the rules

    def output_error(self, bt: "Batch", target: np.ndarray, scale: float) -> float:
        """e = scale * dL/dy into bt.e and the output layer's exact delta into bt.delta[-1]."""
        loss = self.loss.error(bt.y, target, bt.e)
        if scale != 1.0:
            bt.e *= scale
        if not self.net.acts[-1].linear:  # else bt.e is bt.delta[-1] (see Workspace)
            np.multiply(bt.e, bt.df[-1], out=bt.delta[-1])
        return loss

    def draw_perturbations(self, bt: "Batch") -> None:
        """u_l ~ N(0, sigma^2 I) for every hidden layer, drawn in layer order."""
        for u in bt.u:
            self.rng.standard_normal(out=u, dtype=np.float32)
            if self.config.sigma != 1.0:
                u *= self.config.sigma


def feedback_matrices(n_out: int, widths: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One flat float32 array holding B_l (n_out, n_l) for each hidden width, and views into it."""
    flat = np.zeros(n_out * sum(widths), dtype=np.float32)
    views, offset = [], 0
    for n in widths:
        views.append(flat[offset:offset + n_out * n].reshape(n_out, n))
        offset += n_out * n
    return flat, views
