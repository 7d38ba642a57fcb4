"""The fast FDFA step equals a slow, obviously-correct loop over the equations of DESIGN.md,
on the same random draws."""

import math

import numpy as np

import edgefdfa


def slow_fdfa_step(W, b, B, x, label, u, alpha, lr, act):
    """One FDFA + SGD step written element by element, in float64. Returns new W, b, B."""
    L = len(W)
    f = {"tanh": math.tanh, "relu": lambda v: max(v, 0.0)}[act]
    df = {"tanh": lambda v: 1 - math.tanh(v) ** 2, "relu": lambda v: 1.0 if v > 0 else 0.0}[act]
    h, t, a = [list(map(float, x))], [[0.0] * len(x)], []
    for l in range(L):
        n_out, n_in = len(W[l]), len(W[l][0])
        a_l = [sum(W[l][j][i] * h[l][i] for i in range(n_in)) + b[l][j] for j in range(n_out)]
        ta_l = [sum(W[l][j][i] * t[l][i] for i in range(n_in)) for j in range(n_out)]
        if l < L - 1:  # hidden: activation, then the perturbation joins the tangent
            h.append([f(v) for v in a_l])
            t.append([df(a_l[j]) * ta_l[j] + u[l][j] for j in range(n_out)])
        else:  # output: identity; its tangent is the directional derivative d
            h.append(a_l)
            t.append(ta_l)
        a.append(a_l)
    y, d = h[-1], t[-1]
    K = len(y)
    z = [math.exp(v - max(y)) for v in y]
    p = [v / sum(z) for v in z]
    e = [p[k] - (1.0 if k == label else 0.0) for k in range(K)]
    deltas = [None] * L
    deltas[L - 1] = e  # output layer: true gradient
    for l in range(L - 1):  # hidden: e B_l (before the update) times f'(a_l)
        deltas[l] = [sum(e[k] * B[l][k][j] for k in range(K)) * df(a[l][j]) for j in range(len(a[l]))]
    newW = [[[W[l][j][i] - lr * deltas[l][j] * h[l][i] for i in range(len(W[l][0]))] for j in range(len(W[l]))]
            for l in range(L)]
    newb = [[b[l][j] - lr * deltas[l][j] for j in range(len(b[l]))] for l in range(L)]
    newB = [[[(1 - alpha) * B[l][k][j] + alpha * d[k] * u[l][j] for j in range(len(u[l]))] for k in range(K)]
            for l in range(L - 1)]
    return newW, newb, newB


def test_fast_step_equals_slow_loop():
    sizes, alpha, lr = [7, 6, 5, 3], 0.3, 0.05
    for act in ("tanh", "relu"):
        learner = edgefdfa.MLP(sizes, activation=act, rule="fdfa", optimizer="sgd", lr=lr, alpha=alpha, seed=11)
        W = [w.astype(np.float64).tolist() for w in learner.net.W]
        b = [v.astype(np.float64).tolist() for v in learner.net.b]
        B = [m.astype(np.float64).tolist() for m in learner.rule.B]
        data = np.random.default_rng(0)
        for step in range(6):
            x = data.uniform(-1, 1, sizes[0]).astype(np.float32)
            label = int(data.integers(0, sizes[-1]))
            twin = np.random.default_rng()  # the same draws the learner is about to make
            twin.bit_generator.state = learner.rng.bit_generator.state
            u = [twin.standard_normal(n, dtype=np.float32).astype(np.float64) for n in sizes[1:-1]]
            learner.learn_one(x, label)
            W, b, B = slow_fdfa_step(W, b, B, x, label, u, alpha, lr, act)
            for l in range(len(W)):
                assert np.allclose(learner.net.W[l], W[l], atol=1e-5), (act, step, l)
                assert np.allclose(learner.net.b[l], b[l], atol=1e-5), (act, step, l)
            for l in range(len(B)):
                assert np.allclose(learner.rule.B[l], B[l], atol=1e-5), (act, step, l)
        assert any(np.abs(np.asarray(m)).max() > 0.01 for m in B)  # feedback was learned, not trivially 0


def slow_fdfa_batch_step(W, b, B, X, labels, U, alpha, lr):
    """One FDFA + SGD step on a mini-batch, element by element in float64 (tanh hidden layers): the
    batch-mean loss's error e_i / m per row, summed local gradients, and the feedback updated with the
    row mean of d_i u_i^T."""
    L, m = len(W), len(X)
    gW = [[[0.0] * len(W[l][0]) for _ in W[l]] for l in range(L)]
    gb = [[0.0] * len(b[l]) for l in range(L)]
    J = [[[0.0] * len(U[0][l]) for _ in range(len(W[-1]))] for l in range(L - 1)]
    for x, label, u in zip(X, labels, U):
        h, t, a = [list(map(float, x))], [[0.0] * len(x)], []
        for l in range(L):
            a_l = [sum(wi * hi for wi, hi in zip(row, h[l])) + bj for row, bj in zip(W[l], b[l])]
            ta_l = [sum(wi * ti for wi, ti in zip(row, t[l])) for row in W[l]]
            last = l == L - 1
            h.append(a_l if last else [math.tanh(v) for v in a_l])
            t.append(ta_l if last else [(1 - math.tanh(a_l[j]) ** 2) * ta_l[j] + u[l][j] for j in range(len(a_l))])
            a.append(a_l)
        y, d = h[-1], t[-1]
        z = [math.exp(v - max(y)) for v in y]
        e = [(v / sum(z) - (1.0 if k == label else 0.0)) / m for k, v in enumerate(z)]
        deltas = [[sum(e[k] * B[l][k][j] for k in range(len(e))) * (1 - math.tanh(a[l][j]) ** 2)
                   for j in range(len(a[l]))] for l in range(L - 1)] + [e]
        for l in range(L):
            for j, dj in enumerate(deltas[l]):
                gb[l][j] += dj
                for i, hi in enumerate(h[l]):
                    gW[l][j][i] += dj * hi
        for l in range(L - 1):
            for k, dk in enumerate(d):
                for j, uj in enumerate(u[l]):
                    J[l][k][j] += dk * uj / m
    newW = [[[w - lr * g for w, g in zip(rw, rg)] for rw, rg in zip(W[l], gW[l])] for l in range(L)]
    newb = [[v - lr * g for v, g in zip(b[l], gb[l])] for l in range(L)]
    newB = [[[(1 - alpha) * Bv + alpha * Jv for Bv, Jv in zip(rB, rJ)] for rB, rJ in zip(B[l], J[l])] for l in range(L - 1)]
    return newW, newb, newB


def test_batch_step_equals_slow_loop():
    """learn_many's branch (several rows: no rank-1 BLAS update) against the equations."""
    sizes, alpha, lr, m = [7, 6, 5, 3], 0.3, 0.05, 4
    learner = edgefdfa.MLP(sizes, activation="tanh", rule="fdfa", optimizer="sgd", lr=lr, alpha=alpha, seed=5,
                           batch_size=m)
    W = [w.astype(np.float64).tolist() for w in learner.net.W]
    b = [v.astype(np.float64).tolist() for v in learner.net.b]
    B = [M.astype(np.float64).tolist() for M in learner.rule.B]
    data = np.random.default_rng(1)
    for step in range(4):
        X = data.uniform(-1, 1, (m, sizes[0])).astype(np.float32)
        labels = data.integers(0, sizes[-1], m)
        twin = np.random.default_rng()
        twin.bit_generator.state = learner.rng.bit_generator.state
        draws = [twin.standard_normal((m, n), dtype=np.float32).astype(np.float64) for n in sizes[1:-1]]
        U = [[draws[l][i] for l in range(len(draws))] for i in range(m)]  # per row, per hidden layer
        learner.learn_many(X, labels)
        W, b, B = slow_fdfa_batch_step(W, b, B, X, labels, U, alpha, lr)
        for l in range(len(W)):
            assert np.allclose(learner.net.W[l], W[l], atol=1e-5), (step, l)
            assert np.allclose(learner.net.b[l], b[l], atol=1e-5), (step, l)
        for l in range(len(B)):
            assert np.allclose(learner.rule.B[l], B[l], atol=1e-5), (step, l)
    assert any(np.abs(np.asarray(M)).max() > 0.01 for M in B)
