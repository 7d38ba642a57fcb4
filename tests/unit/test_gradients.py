"""Each rule against a reference: BP against finite differences, the forward-gradient rules
against BP in expectation, FDFA's feedback against the true Jacobian."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa.network import Network, Workspace


def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def estimate(learner, x, y):
    """The rule's gradient for one sample, without an optimiser step (the rule's own state, FDFA's
    feedback, learns from it)."""
    bt = learner.workspace.batch(1)
    bt.x[0] = x
    learner.rule.gradient(bt, np.array([y]))
    learner.rule.commit(bt)
    return learner.net.grad.copy()


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("loss,target", [("ce", 1), ("mse", np.array([0.3, -0.2, 0.5]))])
def test_bp_matches_finite_differences(activation, loss, target):
    learner = edgefdfa.MLP([5, 7, 6, 3], activation=activation, rule="bp", loss=loss, seed=1)
    x = np.random.default_rng(1).uniform(-1, 1, 5).astype(np.float32)
    grad = estimate(learner, x, target)
    ws = Workspace(learner.net, 1).batch(1)
    e = np.zeros((1, 3), np.float32)
    tgt = np.array([target]) if loss == "ce" else target[None, :].astype(np.float32)

    def loss_at(params):
        learner.net.params[...] = params
        ws.x[0] = x
        learner.net.forward(ws)
        return learner.loss.error(ws.y, tgt, e)

    p0 = learner.net.params.copy()
    eps = 1e-2
    fd = np.zeros_like(p0, dtype=np.float64)
    for i in range(p0.size):
        p = p0.copy()
        p[i] += eps
        up = loss_at(p)
        p[i] -= 2 * eps
        fd[i] = (up - loss_at(p)) / (2 * eps)
    learner.net.params[...] = p0
    assert np.allclose(grad, fd, atol=2e-3, rtol=2e-2), np.abs(grad - fd).max()
    assert cosine(grad, fd) > 0.9999


@pytest.mark.parametrize("rule", ["fg-w", "fg-a"])
def test_forward_gradients_are_unbiased(rule):
    learner = edgefdfa.MLP([6, 8, 8, 3], activation="tanh", rule=rule, loss="ce", seed=2, sigma=0.5)
    exact = edgefdfa.MLP([6, 8, 8, 3], activation="tanh", rule="bp", loss="ce", seed=2)
    x = np.random.default_rng(2).uniform(-1, 1, 6).astype(np.float32)
    true = estimate(exact, x, 2)
    mean = np.zeros_like(true, dtype=np.float64)
    n = 20000
    for _ in range(n):
        mean += estimate(learner, x, 2)
    mean /= n
    assert cosine(mean, true) > 0.95
    single = estimate(learner, x, 2)
    assert cosine(single, true) < 0.9  # one estimate is noisy: the mean is what converges


def test_fdfa_feedback_converges_to_average_jacobian():
    """With forward weights frozen, B_l tends to the mean over inputs of dy/dh_l."""
    sizes = (10, 24, 24, 4)
    learner = edgefdfa.MLP(sizes, activation="tanh", rule="fdfa", seed=5, alpha=0.0005)
    net = learner.net
    X = np.random.default_rng(5).uniform(-1, 1, (64, sizes[0])).astype(np.float32)
    rng = np.random.default_rng(6)
    for i in rng.integers(0, len(X), 30000):
        estimate(learner, X[i], 0)  # updates B only; W is never stepped
    mean_J = [np.zeros((sizes[-1], n)) for n in sizes[1:-1]]
    ws = Workspace(net, 1).batch(1)
    for x in X:
        for l, J in enumerate(jacobians(net, ws, x)):
            mean_J[l] += J / len(X)
    for B, J in zip(learner.rule.B, mean_J):
        assert cosine(B, J) > 0.9


def jacobians(net: Network, ws, x):
    """dy/dh_l for every hidden layer l, by the chain rule from the output down."""
    ws.x[0] = x
    net.forward(ws)
    J = net.W[-1].astype(np.float64)  # the output layer is identity
    out = []
    for l in range(net.n_layers - 2, -1, -1):
        out.append(J.copy())  # dy/dh_{l+1}
        J = (J * ws.df[l][0]) @ net.W[l]
    return out[::-1]
