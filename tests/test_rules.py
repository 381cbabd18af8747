"""tvlib.rules: Table 1's choice of lambda and the verdict rules (noise and baselines cannot pass them)."""

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


def test_ordering_needs_most_seeds_and_a_gap_beyond_noise():
    from tvlib.rules import ordering

    assert ordering([0.5, 0.6, 0.55, 0.52, 0.58], [0.1, 0.2, 0.15, 0.12, 0.18]).holds
    v = ordering([0.5, 0.1, 0.55, 0.12, 0.58], [0.1, 0.2, 0.15, 0.2, 0.18])  # 3/5 seeds only
    assert not v.holds and v.word == "does not hold" and "3/5" in v.detail
    v = ordering([0.30, 0.10, 0.31, 0.12, 0.305], [0.29, 0.30, 0.30, 0.30, 0.30])  # 3/5, mean gap within noise
    assert not v.holds
    assert not ordering([0.9], [0.1]).holds  # one seed never suffices
    with pytest.raises(ValueError, match="paired"):
        ordering([1, 2], [1, 2, 3])


def test_agreement_says_disagrees_outside_tolerance():
    from tvlib.rules import agreement

    assert agreement([0.98, 1.0, 1.02], 1.0, tol=0.05).word == "agrees"
    assert agreement([1.5, 1.52, 1.48], 1.0, tol=0.05).word == "disagrees"
    with pytest.raises(ValueError, match="finite"):
        agreement([float("nan")], 1.0, tol=0.1)


def test_agreement_noise_gives_inconclusive_not_agrees():
    from tvlib.rules import agreement

    rng = np.random.default_rng(0)
    quiet = 1.0 + 0.01 * rng.standard_normal(5)
    assert agreement(quiet, 1.0, tol=0.1).word == "agrees"
    # the same mean with seeds spread far beyond the tolerance: the old rule (mean within tol + 2 SE) said
    # "agrees" and a noisier result passed more easily; the seeds cannot tell
    noisy = quiet + np.array([-1.0, 1.0, -0.8, 0.8, 0.0])
    v = agreement(noisy, 1.0, tol=0.1)
    assert v.word == "inconclusive" and not v.holds
    # a mean 0.3 off with a noise of the same size: inconclusive too (the old rule: agrees)
    v = agreement(1.3 + np.array([-0.5, 0.5, -0.4, 0.4, 0.0]), 1.0, tol=0.1)
    assert v.word == "inconclusive"
    # noise so large that even a far-off mean is undecided, and a tight far-off mean disagrees
    assert agreement([0.0, 4.0, 0.0, 4.0, 2.0], 1.0, tol=0.1).word == "inconclusive"
    assert agreement([2.0, 2.01, 1.99, 2.0, 2.0], 1.0, tol=0.1).word == "disagrees"
    # a mean inside the tolerance whose interval reaches past its edge is not called agreeing
    assert agreement([1.08, 1.1, 1.06, 1.12, 1.04], 1.0, tol=0.1).word == "inconclusive"
    assert agreement([1.5], 1.0, tol=0.1).word == "inconclusive"  # one seed: its spread is unknown
    assert agreement([2.0, 2.0, 2.0], 1.0, tol=0.1, words=("fits", "misses")).word == "misses"


def test_against_baseline_says_trivial_when_the_baseline_already_passes():
    from tvlib.rules import against_baseline, agreement, fraction_of_seeds

    edited = [True] * 5
    v = against_baseline(fraction_of_seeds, edited, [True, True, True, True, False], name="lambda = 0")
    assert v.word == "trivial" and not v.holds and "lambda = 0" in v.detail and "4/5" in v.detail
    v = against_baseline(fraction_of_seeds, edited, [False, True, False, False, False])
    assert v.word == "holds" and v.holds and "1/5" in v.detail
    v = against_baseline(fraction_of_seeds, [False] * 5, [False] * 5)
    assert v.word == "does not hold" and not v.holds
    # a rule with extra arguments: both sides get them
    v = against_baseline(agreement, [0.99, 1.0, 1.01, 1.0, 1.0], [0.5, 0.6, 0.55, 0.5, 0.52], 1.0, tol=0.05)
    assert v.word == "agrees" and "disagrees" in v.detail
    assert against_baseline(agreement, [0.99, 1.0, 1.01], [1.0, 1.0, 1.0], 1.0, tol=0.05).word == "trivial"


def test_fraction_of_seeds():
    from tvlib.rules import fraction_of_seeds

    assert fraction_of_seeds([True, True, True, True, False]).holds
    assert not fraction_of_seeds([True, True, True, False, False]).holds


def test_sufficient_bound_says_violated_when_the_bound_claims_too_much():
    from tvlib.rules import sufficient_bound

    # "lam >= 3 suffices" while the claim holds from lam ~ 1: conservative
    assert sufficient_bound([1.0, 1.1, 0.9, 1.0, 1.05], 3.0, tol=0.2).word == "conservative"
    # "lam >= 3 suffices" while the claim needs lam ~ 3.5: the bound is violated (the disagreeing case)
    v = sufficient_bound([3.5, 3.6, 3.4, 3.7, 3.5], 3.0, tol=0.2)
    assert v.word == "violated" and not v.holds
    assert sufficient_bound([3.05, 2.95, 3.1, 2.9, 3.0], 3.0, tol=0.2).word == "tight"
    # an upper bound "lam <= 4.8 suffices" whose measured edge is at 12: conservative; at 3: violated
    assert sufficient_bound([12.0] * 5, 4.8, tol=0.4, region="below").word == "conservative"
    assert sufficient_bound([3.0, 3.1, 2.9, 3.0, 3.2], 4.8, tol=0.4, region="below").word == "violated"
    # noisy seeds: a mean gap within two standard errors is not called either way, and not "tight" either
    v = sufficient_bound([1.0, 5.0, 1.0, 5.0, 1.0], 3.0, tol=0.1)
    assert v.word == "inconclusive" and not v.holds
    # no default: a small mean slack with a spread wider than the tolerance is inconclusive
    assert sufficient_bound([2.9, 3.4, 2.7, 3.3, 2.8], 3.0, tol=0.1).word == "inconclusive"
    assert sufficient_bound([3.0], 3.0, tol=0.1).word == "inconclusive"  # one seed
    assert sufficient_bound([1.0, 1.1, 0.9, 1.0, 1.05], 3.0, tol=0.2).holds  # conservative holds
    with pytest.raises(ValueError, match="region"):
        sufficient_bound([1.0], 1.0, tol=0.1, region="left")


def test_judge_leaves_out_undefined_seeds_and_says_na_when_none_is_defined():
    from tvlib.rules import agreement, judge

    nan = float("nan")
    v = judge(agreement, [1.0, nan, 1.02, 0.98, float("inf"), 1.01], 1.0, tol=0.05)
    assert v.word == "agrees" and "4 seeds" in v.detail
    assert judge(agreement, [2.0, nan, 2.1, 1.9], 1.0, tol=0.05).word == "disagrees"
    assert judge(agreement, [nan, nan], 1.0, tol=0.05) == "n/a"
