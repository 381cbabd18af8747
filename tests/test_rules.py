"""tvlib.rules: Table 1's choice of lambda."""

import numpy as np
import pytest

from tvlib.rules import best_lambda

LAMS = [-1.0, -0.5, 0.0, 0.5, 1.0]
ACC1 = [0.9, 0.95, 1.0, 0.9, 0.8]
ACC2 = [0.0, 0.3, 0.5, 0.9, 0.95]


def test_best_lambda_follows_its_definition():
    assert LAMS[best_lambda(LAMS, ACC1, ACC2, "add")] == 0.5  # mean 0.9 beats 0.875 at lam = 1
    assert LAMS[best_lambda(LAMS, ACC1, ACC2, "negate")] == -1.0  # 0.9 - 0.0


def test_best_lambda_never_picks_zero():
    # lam = 0 scores best for both goals here, yet no arithmetic is not an answer
    acc1, acc2 = [0.5, 0.6, 1.0, 0.6, 0.5], [0.5, 0.5, 0.0, 0.5, 0.5]
    assert LAMS[best_lambda(LAMS, acc1, acc2, "negate")] == -0.5
    acc2 = [0.0, 0.0, 1.0, 0.0, 0.0]
    assert LAMS[best_lambda(LAMS, acc1, acc2, "add")] == 0.5


def test_best_lambda_ties_go_to_the_smallest_magnitude():
    flat = np.full(5, 0.5)
    assert LAMS[best_lambda(LAMS, flat, flat, "add")] == 0.5
    assert LAMS[best_lambda(LAMS, flat, flat, "negate")] == -0.5


def test_best_lambda_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        best_lambda(LAMS, ACC1[:4], ACC2, "add")
    with pytest.raises(ValueError, match="goal"):
        best_lambda(LAMS, ACC1, ACC2, "merge")
    with pytest.raises(ValueError, match="no lambda < 0"):
        best_lambda([0.0, 1.0], [1, 1], [0, 0], "negate")
