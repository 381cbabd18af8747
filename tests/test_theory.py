"""Tests of tvlib.toy.theory, fits and measured (and vector_stats.pattern_ratios) on synthetic inputs
whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvlib.toy import fits, measured, theory, vector_stats

LAMS = np.round(np.arange(-2.0, 3.01, 0.2), 2) + 0.0


def test_addition_threshold():
    assert theory.addition_threshold(0.0) == pytest.approx(1.0)
    assert theory.addition_threshold(0.4, beta=0.1) == pytest.approx(0.7)
    out = theory.addition_threshold(np.array([-0.5, 0.0, 1.0]))
    assert np.isnan(out[0]) and out[1:] == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="alpha"):
        theory.addition_threshold(1.5)


def test_negation_bounds():
    lo, hi = theory.negation_bounds(np.array([-0.5, 0.0, 0.5]), c_lower=2.0, c_upper=0.3, beta=0.1, budget=0.2)
    assert lo[0] == pytest.approx(-8.0) and hi[0] == pytest.approx(0.6)
    assert lo[1] == pytest.approx(-2.0) and hi[1] == 0.0
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    lo, _ = theory.negation_bounds(0.0)
    assert lo == -math.inf
    with pytest.raises(ValueError, match="c_lower"):
        theory.negation_bounds(-0.5, c_lower=0.0)


@given(st.floats(-1, 1))
@settings(max_examples=50, deadline=None)
def test_alpha_hat_linear_inverts(alpha):
    h = theory.alpha_hat_linear(alpha)
    assert abs(h) <= 1 + 1e-12 and np.sign(h) == np.sign(alpha)
    assert theory.alpha_from_alpha_hat(h) == pytest.approx(alpha, abs=1e-6)


def test_feasible_interval_interpolates_edges():
    lo, hi = fits.feasible_interval(LAMS, 0.5 - np.abs(LAMS - 1.05))
    assert lo == pytest.approx(0.55) and hi == pytest.approx(1.55)
    # two conditions: the first one violated at each edge sets it
    lo, hi = fits.feasible_interval(LAMS, np.stack([LAMS + 0.9, 1.3 - LAMS]))
    assert lo == pytest.approx(-0.9) and hi == pytest.approx(1.3)
    # a run touching the grid's end ends there
    assert fits.feasible_interval(LAMS, LAMS - 0.5) == pytest.approx((0.5, 3.0))
    # several runs: the longest, or the one holding the anchor
    slack = np.where((LAMS < -1.5) | ((LAMS > 0.5) & (LAMS < 2.5)), 1.0, -1.0)
    lo, hi = fits.feasible_interval(LAMS, slack)
    assert 0.4 < lo < 0.6 and 2.4 < hi < 2.6
    lo, hi = fits.feasible_interval(LAMS, slack, anchor=-2.0)
    assert lo == -2.0 and -1.6 < hi < -1.4
    assert all(np.isnan(fits.feasible_interval(LAMS, slack, anchor=0.0)))
    lo, hi = fits.feasible_interval(LAMS, slack, anchor=0.0, nearest=True)  # the run closest to 0
    assert 0.4 < lo < 0.6 and 2.4 < hi < 2.6
    assert all(np.isnan(fits.feasible_interval(LAMS, -np.ones_like(LAMS))))
    with pytest.raises(ValueError, match="increasing"):
        fits.feasible_interval(LAMS[::-1], LAMS)


def test_estimate_beta_recovers_a_linear_growth():
    err = 0.04 + 0.07 * np.abs(LAMS)
    for method in ("fit", "bound", "slope"):
        assert fits.estimate_beta(LAMS, err, 0.04, method=method) == pytest.approx(0.07)
    # the bound method takes the worst lam, the slope an average
    bumpy = 0.04 + 0.07 * np.abs(LAMS) + np.where(LAMS == -1.6, 0.1, 0.0)
    assert fits.estimate_beta(LAMS, bumpy, 0.04, method="bound") == pytest.approx(0.07 + 0.1 / 1.6)
    assert 0.07 < fits.estimate_beta(LAMS, bumpy, 0.04, method="slope") < 0.07 + 0.1 / 1.6
    # the book's fit uses -1 <= lam < 0 only: the bump at -1.6 and anything at lam > 0 are ignored
    one_sided = np.where(LAMS > 0, 0.0, bumpy)
    assert fits.estimate_beta(LAMS, one_sided, 0.04) == pytest.approx(0.07)
    assert fits.estimate_beta(LAMS, one_sided, 0.04, fit_max=2.0) > 0.07
    assert fits.estimate_beta(LAMS, np.full_like(LAMS, 0.01), 0.04, method="bound") == 0.0
    with pytest.raises(ValueError, match="method"):
        fits.estimate_beta(LAMS, err, 0.04, method="max")
    with pytest.raises(ValueError, match="-1.0 <= lam < 0"):
        fits.estimate_beta(np.array([0.0, 1.0]), np.array([0.1, 0.1]), 0.04)


def test_threshold_fits():
    alphas = np.array([-0.4, 0.0, 0.3, 0.6])
    lam_star = 1 - alphas + 0.1
    lam_star[0] = 5.0  # alpha < 0 is outside Theorem 1 and must be ignored
    assert fits.beta_from_thresholds(alphas, lam_star) == pytest.approx(0.1)
    intercept, slope = fits.fit_threshold_line(alphas[1:], lam_star[1:])
    assert intercept == pytest.approx(1.1) and slope == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="alpha >= 0"):
        fits.beta_from_thresholds([-0.5], [1.0])


def test_fit_power_law():
    alphas = np.array([-1.0, -0.8, -0.5, -0.2])
    c, p = fits.fit_power_law(alphas, -1.3 / alphas**2)
    assert c == pytest.approx(1.3) and p == pytest.approx(2.0)
    c, p = fits.fit_power_law(alphas, 0.3 / np.abs(alphas))
    assert c == pytest.approx(0.3) and p == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two or more"):
        fits.fit_power_law([-0.5, -0.5], [1.0, 2.0])


def synthetic_sweep(alphas, eps=0.04, seeds=(0, 1)):
    """A linear caricature of the merged model: margins on T1 and T2 proportional to 1 + lam*alpha and alpha + lam."""
    rows, refs = [], []
    for alpha in alphas:
        for seed in seeds:
            for lam in LAMS:
                for task, margin in (("T1", 1 + lam * alpha), ("T2", alpha + lam)):
                    error = eps + max(0.0, 1 - margin)
                    rows.append((alpha, seed, lam, task, error, float(margin > 0)))
            for model, task, e in (("base", "T1", 1.0), ("base", "T2", 1.0), ("T1", "T1", eps), ("T2", "T2", eps),
                                   ("T1", "T2", eps + max(0.0, 1 - alpha)), ("T2", "T1", eps + max(0.0, 1 - alpha))):
                refs.append((alpha, seed, model, task, e, 1.0))
    curves = pd.DataFrame(rows, columns=["alpha", "seed", "lam", "task", "error", "accuracy"])
    references = pd.DataFrame(refs, columns=["alpha", "seed", "model", "task", "error", "accuracy"])
    return curves, references


def test_addition_summary_on_a_linear_model():
    alphas = [-0.4, 0.0, 0.4]
    curves, refs = synthetic_sweep(alphas)
    summ = measured.addition_summary(curves, refs, factor=2.0)
    m = summ.groupby("alpha").mean()
    # T2 error eps + (1 - alpha - lam) <= 2 eps  <=>  lam >= 1 - alpha - eps
    assert m["lam_star_error"].to_numpy() == pytest.approx([1.4 - 0.04, 1 - 0.04, 0.6 - 0.04], abs=1e-9)
    # accuracy: sign of alpha + lam; the interpolated edge lies at -alpha within one grid step
    assert np.all(np.abs(m["lam_star_accuracy"].to_numpy() + np.array(alphas)) <= 0.2)
    # contradictory: T1's margin 1 - 0.4 lam < 1 - eps once lam > 0.1, before T2 is learned at 1.36
    assert np.isnan(m.loc[-0.4, "both_lo_error"])
    assert m.loc[0.0, "both_lo_error"] == pytest.approx(0.96) and m.loc[0.0, "both_hi_error"] == 3.0
    learned = measured.learned_map(curves, refs)
    assert set(learned.columns) == {"alpha", "lam", "both_error", "both_accuracy"}
    assert learned[learned["alpha"] == -0.4]["both_error"].max() == 0.0
    beta = measured.beta_hat(curves, refs, alpha=0.0)
    assert (beta["beta_hat"] == 0.0).all()  # T1 unaffected when alpha = 0 in this caricature
    worst = measured.worst_task(curves, refs).set_index(["alpha", "seed"])
    assert worst.loc[(0.0, 0), "ratio"] == pytest.approx(1.0)
    assert worst.loc[(-0.4, 0), "ratio"] > 2.0


def test_negation_summary_and_best_lambdas_on_a_linear_model():
    curves, refs = synthetic_sweep([-0.5, 0.0, 0.5])
    neg = measured.negation_summary(curves, refs).groupby("alpha").mean()
    # T2 forgotten (error >= 0.95): alpha + lam <= 0.09; T1 kept (error <= 0.08): lam*alpha >= -0.04
    assert neg.loc[-0.5, "forget_hi"] == pytest.approx(0.59)
    assert neg.loc[-0.5, "keep_hi"] == pytest.approx(0.08)
    assert neg.loc[0.5, "keep_lo"] == pytest.approx(-0.08)
    assert np.isnan(neg.loc[0.5, "region_lo_error"])  # aligned: forgetting T2 needs lam <= -0.41
    table = measured.best_lambdas(curves, [-0.5, 0.0, 0.5]).set_index(["alpha", "goal"])
    assert table.loc[(0.0, "add"), "lam"] == 0.2  # smallest lam >= 0 with both signs right
    assert table.loc[(0.0, "negate"), "lam"] == -0.2  # lam = 0 (no negation at all) is never chosen
    assert table.loc[(0.5, "negate"), "lam"] == -0.6  # T2 wrong (alpha + lam < 0), T1 right
    with pytest.raises(ValueError, match="not in the sweep"):
        measured.best_lambdas(curves, [0.3])


def test_pattern_ratios_on_constructed_task_vectors():
    import torch

    d, m = 6, 4
    mu1 = torch.zeros(d)
    mu1[0] = 1.0
    perp = torch.zeros(d)
    perp[1] = 1.0
    u = torch.tensor([1.0, -1.0, 0.5, -0.5])  # per-neuron read-out strengths
    dW, dV = [], []
    for alpha in (1.0, -0.6, 0.3):
        mu = alpha * mu1 + math.sqrt(1 - alpha**2) * perp
        dW.append(0.7 * torch.outer(mu, mu))
        dV.append(0.2 * torch.outer(u, mu))
    att, val = vector_stats.pattern_ratios(torch.stack(dW), torch.stack(dV), mu1)
    assert att == pytest.approx([1.0, 0.36, 0.09], abs=1e-6)
    assert val == pytest.approx([1.0, -0.6, 0.3], abs=1e-6)
    with pytest.raises(ValueError, match="expected"):
        vector_stats.pattern_ratios(torch.stack(dW), torch.stack(dV), torch.zeros(d + 1))


def test_side_effect_prediction_can_fail():
    curves, refs = synthetic_sweep([0.0])
    # T1's error grows like 0.05 |lam| for lam < 0, then twice as fast beyond |lam| = 1
    lam = curves["lam"]
    grow = np.where(lam < 0, 0.05 * np.abs(lam) + 0.05 * np.clip(np.abs(lam) - 1, 0, None), 0.0)
    curves.loc[curves["task"] == "T1", "error"] += grow[curves["task"] == "T1"]
    pred = measured.side_effect_prediction(curves, refs, fit_max=1.0, predict_max=2.0)
    assert pred["beta_hat"].to_numpy() == pytest.approx([0.05, 0.05])
    # lam in {-2, -1.8, -1.6, -1.4, -1.2}: predicted 0.04 + 0.05 * 1.6; measured adds 0.05 * 0.6 more
    assert pred["predicted"].to_numpy() == pytest.approx([0.12, 0.12])
    assert pred["measured"].to_numpy() == pytest.approx([0.15, 0.15])
    with pytest.raises(ValueError, match="fit_max"):
        measured.side_effect_prediction(curves, refs, fit_max=2.0, predict_max=1.0)
    with pytest.raises(ValueError, match="reach"):
        measured.side_effect_prediction(curves, refs, fit_max=2.0, predict_max=3.0)


def test_threshold_fits_per_seed():
    curves, refs = synthetic_sweep([-0.4, 0.0, 0.4, 0.8])
    lines = measured.threshold_fits(measured.addition_summary(curves, refs, factor=2.0))
    # lam* = 1 - alpha - eps in the caricature: slope -1, intercept 0.96, gap -0.04; alpha < 0 ignored
    assert lines["slope"].to_numpy() == pytest.approx([-1.0, -1.0])
    assert lines["intercept"].to_numpy() == pytest.approx([0.96, 0.96])
    assert lines["gap"].to_numpy() == pytest.approx([-0.04, -0.04])


def test_negation_summary_uses_the_side_effect_allowance_and_the_window_at_zero():
    curves, refs = synthetic_sweep([-0.5, 0.0])
    # without the allowance T1 (error 0.04 + 0.5 lam for lam > 0) is kept up to 0.08;
    # with beta = 0.1 the bound 0.08 + 0.1 lam holds up to lam = 0.1
    plain = measured.negation_summary(curves, refs).groupby("alpha").mean()
    allowed = measured.negation_summary(curves, refs, beta={0: 0.1, 1: 0.1}).groupby("alpha").mean()
    assert plain.loc[-0.5, "keep_hi"] == pytest.approx(0.08)
    assert allowed.loc[-0.5, "keep_hi"] == pytest.approx(0.1)
    # forgotten far away too: T2's error eps + 1 - (alpha + lam) is >= 0.95 for lam <= 0.09 at alpha = 0
    at0 = measured.negation_summary(curves, refs, anchor=0.0).groupby("alpha").mean()
    assert at0.loc[0.0, "forget_hi"] == pytest.approx(0.09) and at0.loc[0.0, "forget_lo"] == -2.0


def test_edge_exponents_per_seed_leave_censored_edges_out():
    alphas = [-1.0, -0.8, -0.6, -0.5, -0.3, 0.0]
    rows = [(a, s, -1.3 / a**2 if a < 0 else -5.0, 0.3 / abs(a) if a < 0 else 3.0) for a in alphas for s in (0, 1)]
    summ = pd.DataFrame(rows, columns=["alpha", "seed", "keep_lo", "keep_hi"])
    lo = measured.edge_exponents(summ, "keep_lo", lam_min=-10.0, lam_max=3.0)
    assert lo["p"].to_numpy() == pytest.approx([2.0, 2.0]) and lo["c"].to_numpy() == pytest.approx([1.3, 1.3])
    assert (lo["n"] == 4).all()  # -1.3 / 0.09 = -14.4 is beyond the grid: censored, left out
    hi = measured.edge_exponents(summ, "keep_hi", lam_min=-10.0, lam_max=3.0)
    assert hi["p"].to_numpy() == pytest.approx([1.0, 1.0])
    few = measured.edge_exponents(summ, "keep_lo", lam_min=-3.0, lam_max=3.0)
    assert few["p"].isna().all() and (few["n"] == 2).all()


def test_fit_step_exponents_recovers_the_power_law_per_run():
    ds, lr = [0.2, 0.3, 0.5], [0.5, 1.0, 2.0]
    runs = np.array([7.0, 9.0])  # one constant per run
    reach = runs[None, None, :] * np.array(ds)[:, None, None] ** -1.3 * np.array(lr)[None, :, None] ** -0.8
    reach[0, 0, 1] = np.nan  # a level never reached is left out of that run's fit
    fit = fits.fit_step_exponents(ds, lr, reach)
    assert fit["p_delta_star"].to_numpy() == pytest.approx([-1.3, -1.3])
    assert fit["p_eta"].to_numpy() == pytest.approx([-0.8, -0.8])
    with pytest.raises(ValueError, match="expected"):
        fits.fit_step_exponents(ds, lr, reach[:, :2])


def test_threshold_tightness_says_tight_conservative_or_violated():
    curves, refs = synthetic_sweep([-0.4, 0.0, 0.4, 0.8], seeds=(0, 1, 2, 3, 4))
    # lam* = 1 - alpha - (factor - 1) eps in the caricature (eps = 0.04); beta-hat 0 here
    beta = {s: 0.0 for s in range(5)}
    summaries, table = measured.threshold_tightness(curves, refs, factors=[1.0, 6.0], beta=beta)
    t = table.set_index("factor")
    assert set(summaries) == {1.0, 6.0}
    assert t.loc[1.0, "gap"] == pytest.approx(0.0, abs=1e-9) and t.loc[1.0, "threshold"] == "tight"
    assert t.loc[6.0, "gap"] == pytest.approx(-0.2) and t.loc[6.0, "threshold"] == "conservative"
    assert (t["slope_verdict"] == "agrees").all()
    # a beta-hat that the measurement does not support: the threshold 1 - alpha + beta is too low
    _, worse = measured.threshold_tightness(curves, refs, factors=[1.0], beta={s: -0.5 for s in range(5)})
    assert worse.loc[0, "threshold"] == "violated"
