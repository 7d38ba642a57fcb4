"""The fused in-place SGD step (BLAS ger) against the reference: materialised gradient, then step."""

import numpy as np
import pytest

import edgefdfa
from edgefdfa import RULES, blas

LOCAL_RULES = sorted(r for r, cls in RULES.items() if cls.local)


def test_fast_path_is_available_where_scipy_is():
    pytest.importorskip("scipy")
    assert blas.available


@pytest.mark.parametrize("rule", LOCAL_RULES)
def test_fused_sgd_equals_reference(rule):
    if not blas.available:
        pytest.skip("SciPy's BLAS is not installed: only the reference path exists")
    sizes = [30, 24, 16, 5]
    fused, reference = (edgefdfa.MLP(sizes, rule=rule, optimizer="sgd", seed=1) for _ in range(2))
    reference.fused = False
    assert fused.fused
    rng = np.random.default_rng(0)
    X, y = rng.random((300, sizes[0]), dtype=np.float32), rng.integers(0, 5, 300)
    for x, t in zip(X, y):
        assert fused.learn_one(x, t) == pytest.approx(reference.learn_one(x, t), rel=1e-4, abs=1e-6)
    assert np.allclose(fused.net.params, reference.net.params, atol=1e-5)
    assert not np.allclose(fused.net.params, edgefdfa.MLP(sizes, rule=rule, seed=1).net.params)


def test_fused_path_only_for_plain_sgd():
    assert not edgefdfa.MLP([4, 3, 2], optimizer="adam").fused
    assert not edgefdfa.MLP([4, 3, 2], optimizer="momentum").fused
    assert not edgefdfa.MLP([4, 3, 2], rule="fg-w").fused


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_one_row_softmax_error_equals_the_batch_path(scale):
    """The one-row cross-entropy (Python floats) against the batch path, on the same logits."""
    from edgefdfa.losses import SoftmaxCrossEntropy

    loss, rng = SoftmaxCrossEntropy(), np.random.default_rng(0)
    y = (rng.standard_normal((2, 10)) * scale).astype(np.float32)
    y[1] = y[0]  # the batch path's second row repeats the first: same loss, e halved by m = 2
    t = np.array([3, 3])
    e1, e2 = np.zeros((1, 10), np.float32), np.zeros((2, 10), np.float32)
    one, batch = loss.error(y[:1], t[:1], e1), loss.error(y, t, e2)
    assert one == pytest.approx(batch, rel=1e-5, abs=1e-6)
    assert np.allclose(e1[0], 2 * e2[0], atol=1e-6)
    assert e1.sum() == pytest.approx(0.0, abs=1e-5)
