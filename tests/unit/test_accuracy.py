"""The acceptance checks on real data: online, one sample at a time, two hidden layers, the same
seed and data budget for every rule, the rules' own defaults, scored on the held-out test split."""

import pytest

import edgefdfa
from edgefdfa.datasets import load
from edgefdfa.evaluate import accuracy, fit_online

EPOCHS = 3


def online_test_accuracy(data, sizes, rule):
    ds = load(data)
    learner = edgefdfa.MLP(sizes, rule=rule, loss="ce", seed=0)
    fit_online(learner, ds.X_train, ds.y_train, epochs=EPOCHS, seed=0)
    return accuracy(learner, ds.X_test, ds.y_test)


@pytest.fixture(scope="module")
def digits():
    return {rule: online_test_accuracy("digits", [64, 128, 128, 10], rule) for rule in ["bp", "dfa", "fdfa", "fg-a", "fg-w"]}


def test_digits_fdfa_within_3_points_of_bp(digits):
    assert digits["fdfa"] >= digits["bp"] - 0.03, digits


def test_digits_fdfa_within_1_point_of_dfa_or_above(digits):
    assert digits["fdfa"] >= digits["dfa"] - 0.01, digits


def test_digits_fdfa_clearly_above_forward_gradients(digits):
    assert digits["fdfa"] >= digits["fg-a"] + 0.05, digits
    assert digits["fdfa"] >= digits["fg-w"] + 0.05, digits
    assert digits["fdfa"] > 0.9, digits


def test_mnist_subset_fdfa_above_dfa():
    sizes = [784, 256, 256, 10]
    fdfa, dfa = online_test_accuracy("mnist5k", sizes, "fdfa"), online_test_accuracy("mnist5k", sizes, "dfa")
    assert fdfa > dfa, (fdfa, dfa)
