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
