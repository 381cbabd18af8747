"""Theorems 1 and 2 measured on an arithmetic sweep: thresholds, windows, beta-hat and the verdicts on them.

Every function reads a sweep's `curves` (error and accuracy per alpha, lam, seed, task) and
`references` (the fine-tuned models and Psi0 on each task) and returns a frame per seed (or per
alpha and seed); the predictions they are compared with are in tvlib.toy.theory.

Measurements: one convention for Theta(eps), stated in the setting chapter and used everywhere:
- Theta(eps) = factor * eps_T, eps_T = hinge error of the model fine-tuned on T, on the same
  evaluation samples (factor = 2 in the book). T learned (error): hinge error <= Theta(eps);
  T learned (accuracy): accuracy >= acc_level.
- beta-hat: the slope of T1's excess error err - eps_T1 in |lam| over -fit_max <= lam < 0 at alpha = 0,
  fitted through lam = 0 (where the merged model is Psi*_T1 itself), so Theta(eps) does not enter it
  (estimate_beta, method "fit"). The theorems' bound on T1 is then Theta(eps) + |lam| beta-hat:
  T1 kept (error) means hinge error <= factor * eps_T1 + |lam| beta-hat.
- T forgotten (error): hinge error >= forget_factor * error of Psi0 on T (Psi0 knows no task, error ~1).
- Measured threshold lam*(alpha): the lower edge of the run of lam over which T2 is learned,
  linearly interpolated between grid points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd

from ..rules import GOALS, agreement, best_lambda, judge, sufficient_bound
from .fits import estimate_beta, feasible_interval, fit_power_law, fit_threshold_line

__all__ = [
    "seed_arrays",
    "finetuned_errors",
    "addition_summary",
    "negation_summary",
    "learned_map",
    "worst_task",
    "beta_hat",
    "best_lambdas",
    "PREDICT_REL_TOL",
    "THRESHOLD_TOL",
    "SLOPE_TOL",
    "EXPONENT_TOL",
    "side_effect_prediction",
    "threshold_fits",
    "threshold_tightness",
    "edge_exponents",
]


def seed_arrays(curves: pd.DataFrame, references: pd.DataFrame, alpha: float) -> dict[str, np.ndarray]:
    """One alpha of a sweep as arrays: lams (L,), seeds (S,), error and accuracy (S, L, 2) for (T1, T2),
    eps (S, 2) = fine-tuned errors on their own task, base (S, 2) = errors of Psi0."""
    c = curves[np.isclose(curves["alpha"], alpha)]
    if c.empty:
        raise ValueError(f"alpha={alpha} is not in the sweep: expected one of {sorted(curves['alpha'].unique())}")
    lams = np.sort(c["lam"].unique())
    seeds = np.sort(c["seed"].unique())
    idx = pd.MultiIndex.from_product([seeds, lams, ["T1", "T2"]], names=["seed", "lam", "task"])
    c = c.set_index(["seed", "lam", "task"]).reindex(idx)
    shape = (seeds.size, lams.size, 2)
    r = references[np.isclose(references["alpha"], alpha)].set_index(["seed", "model", "task"])["error"]
    eps = np.stack([[r[s, t, t] for t in ("T1", "T2")] for s in seeds])
    base = np.stack([[r[s, "base", t] for t in ("T1", "T2")] for s in seeds])
    return dict(
        lams=lams, seeds=seeds, eps=eps, base=base,
        error=c["error"].to_numpy().reshape(shape), accuracy=c["accuracy"].to_numpy().reshape(shape),
    )


def finetuned_errors(references: pd.DataFrame, alphas: Sequence[float]) -> np.ndarray:
    """Each fine-tuned model's hinge error on its own task, per seed: (S, 1 + A) for T1 and T2(alpha) of an
    arithmetic sweep, in the order of its VectorGrid (task 0 = T1, 1 + i = T2(alphas[i]))."""
    r = references
    own = lambda task, a: (r[(r["model"] == task) & (r["task"] == task) & np.isclose(r["alpha"], a)]  # noqa: E731
                           .sort_values("seed")["error"].to_numpy())
    return np.stack([own("T1", alphas[0])] + [own("T2", a) for a in alphas], 1)


def _per_seed(beta: float | Mapping[int, float], seed: int) -> float:
    return float(beta[seed]) if isinstance(beta, Mapping) else float(beta)


def addition_summary(
    curves: pd.DataFrame,
    references: pd.DataFrame,
    *,
    factor: float = 2.0,
    acc_level: float = 0.95,
    beta: float | Mapping[int, float] = 0.0,
) -> pd.DataFrame:
    """Per (alpha, seed): lam* (lower edge of T2 learned) and the interval where both tasks are learned,
    by hinge error (T2 <= factor * eps, T1 <= factor * eps + |lam| beta, Theorem 1's bounds) and by
    accuracy (>= acc_level). beta: one value, or one per seed. NaN where nothing is learned."""
    rows = []
    for alpha in sorted(curves["alpha"].unique()):
        d = seed_arrays(curves, references, alpha)
        for i, seed in enumerate(d["seeds"]):
            err_slack = factor * d["eps"][i][None, :] - d["error"][i]  # (L, 2)
            err_slack[:, 0] += np.abs(d["lams"]) * _per_seed(beta, seed)
            acc_slack = d["accuracy"][i] - acc_level
            t2_err = feasible_interval(d["lams"], err_slack[:, 1], anchor=d["lams"][-1])
            t2_acc = feasible_interval(d["lams"], acc_slack[:, 1], anchor=d["lams"][-1])
            both_err = feasible_interval(d["lams"], err_slack.T)
            both_acc = feasible_interval(d["lams"], acc_slack.T)
            rows.append((alpha, seed, t2_err[0], t2_acc[0], *both_err, *both_acc))
    return pd.DataFrame(
        rows,
        columns=["alpha", "seed", "lam_star_error", "lam_star_accuracy",
                 "both_lo_error", "both_hi_error", "both_lo_accuracy", "both_hi_accuracy"],
    )


def negation_summary(
    curves: pd.DataFrame,
    references: pd.DataFrame,
    *,
    factor: float = 2.0,
    forget_factor: float = 0.95,
    acc_level: float = 0.95,
    chance: float = 0.5,
    beta: float | Mapping[int, float] = 0.0,
    anchor: float | None = None,
) -> pd.DataFrame:
    """Per (alpha, seed): where T1 is kept (run containing lam = 0), where T2 is forgotten, and where both
    hold, by hinge error (Theorem 2's bounds: T1 <= factor * eps + |lam| beta, T2 >= forget_factor * Psi0's
    error) and by accuracy (T1 >= acc_level, T2 <= chance). The forgotten and both runs are the longest
    ones, or with `anchor` the run closest to it (e.g. 0: the window that starts from no editing)."""
    rows = []
    near = dict(anchor=anchor, nearest=True) if anchor is not None else {}
    for alpha in sorted(curves["alpha"].unique()):
        d = seed_arrays(curves, references, alpha)
        for i, seed in enumerate(d["seeds"]):
            allow = np.abs(d["lams"]) * _per_seed(beta, seed)
            keep = factor * d["eps"][i, 0] + allow - d["error"][i, :, 0]
            forget = d["error"][i, :, 1] - forget_factor * d["base"][i, 1]
            keep_acc = d["accuracy"][i, :, 0] - acc_level
            forget_acc = chance - d["accuracy"][i, :, 1]
            rows.append((
                alpha, seed,
                *feasible_interval(d["lams"], keep, anchor=0.0),
                *feasible_interval(d["lams"], forget, **near),
                *feasible_interval(d["lams"], np.stack([keep, forget]), **near),
                *feasible_interval(d["lams"], np.stack([keep_acc, forget_acc]), **near),
            ))
    return pd.DataFrame(
        rows,
        columns=["alpha", "seed", "keep_lo", "keep_hi", "forget_lo", "forget_hi",
                 "region_lo_error", "region_hi_error", "region_lo_accuracy", "region_hi_accuracy"],
    )


def learned_map(
    curves: pd.DataFrame, references: pd.DataFrame, *, factor: float = 2.0, acc_level: float = 0.95
) -> pd.DataFrame:
    """Per (alpha, lam): the fraction of seeds for which both tasks are learned, by error and by accuracy."""
    eps = references[references["model"] == references["task"]][["alpha", "seed", "task", "error"]]
    df = curves.merge(eps.rename(columns={"error": "eps"}), on=["alpha", "seed", "task"])
    df["ok_error"] = df["error"] <= factor * df["eps"]
    df["ok_accuracy"] = df["accuracy"] >= acc_level
    both = df.groupby(["alpha", "seed", "lam"])[["ok_error", "ok_accuracy"]].all()
    out = both.groupby(["alpha", "lam"]).mean().reset_index()
    return out.rename(columns={"ok_error": "both_error", "ok_accuracy": "both_accuracy"})


def worst_task(curves: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Per (alpha, seed): over the lam grid, the smallest worse-task error ratio max(err_T1/eps_T1, err_T2/eps_T2)
    (column ratio, at lam_ratio) and the largest worse-task accuracy min(acc_T1, acc_T2) (accuracy, at lam_accuracy)."""
    rows = []
    for alpha in sorted(curves["alpha"].unique()):
        d = seed_arrays(curves, references, alpha)
        for i, seed in enumerate(d["seeds"]):
            ratio = (d["error"][i] / d["eps"][i][None, :]).max(1)
            acc = d["accuracy"][i].min(1)
            k, j = int(np.argmin(ratio)), int(np.argmax(acc))
            rows.append((alpha, seed, float(ratio[k]), float(d["lams"][k]), float(acc[j]), float(d["lams"][j])))
    return pd.DataFrame(rows, columns=["alpha", "seed", "ratio", "lam_ratio", "accuracy", "lam_accuracy"])


def beta_hat(
    curves: pd.DataFrame,
    references: pd.DataFrame,
    *,
    alpha: float = 0.0,
    method: str = "fit",
    fit_max: float = 1.0,
) -> pd.DataFrame:
    """Per seed: estimate_beta from T1's error at the given alpha (irrelevant tasks by default)."""
    d = seed_arrays(curves, references, alpha)
    return pd.DataFrame(
        [(s, estimate_beta(d["lams"], d["error"][i, :, 0], d["eps"][i, 0], method=method, fit_max=fit_max))
         for i, s in enumerate(d["seeds"])],
        columns=["seed", "beta_hat"],
    )


def best_lambdas(curves: pd.DataFrame, alphas: Sequence[float]) -> pd.DataFrame:
    """Table 1 on a sweep: per alpha and goal, tvlib.rules.best_lambda on the seed-mean accuracy curves.

    Addition picks lam > 0, negation lam < 0. Reports the seed-mean accuracy and hinge error of both
    tasks at that lam.
    """
    mean = curves.groupby(["alpha", "lam", "task"])[["accuracy", "error"]].mean().unstack("task")
    rows = []
    for alpha in alphas:
        m = mean.loc[np.isclose(mean.index.get_level_values("alpha").to_numpy(), alpha)]
        if m.empty:
            raise ValueError(f"alpha={alpha} is not in the sweep: expected one of {sorted(curves['alpha'].unique())}")
        m = m.droplevel("alpha")
        acc1, acc2 = m[("accuracy", "T1")], m[("accuracy", "T2")]
        for goal in GOALS:
            k = best_lambda(m.index.to_numpy(), acc1.to_numpy(), acc2.to_numpy(), goal)
            lam = float(m.index[k])
            rows.append((alpha, goal, lam, float(acc1.iloc[k]), float(acc2.iloc[k]),
                         float(m[("error", "T1")].iloc[k]), float(m[("error", "T2")].iloc[k])))
    return pd.DataFrame(rows, columns=["alpha", "goal", "lam", "acc_T1", "acc_T2", "error_T1", "error_T2"])


#: Tolerances of the book's verdicts on Theorems 1-2 and Section 4, fixed before any run (plus two
#: standard errors over seeds, see tvlib.rules): a predicted error agrees within this fraction of the
#: predicted excess error; a threshold is tight within half the paper's lambda grid step (0.2);
#: a fitted slope agrees within 0.1; a fitted exponent within 0.25 (a quarter of the way to the
#: next integer, so 1 and 2 are never both accepted).
PREDICT_REL_TOL = 0.25
THRESHOLD_TOL = 0.1
SLOPE_TOL = 0.1
EXPONENT_TOL = 0.25


def side_effect_prediction(
    curves: pd.DataFrame,
    references: pd.DataFrame,
    *,
    alpha: float = 0.0,
    fit_max: float = 1.0,
    predict_max: float = 2.0,
) -> pd.DataFrame:
    """T1's side effect as a prediction, per seed: beta-hat fitted on -fit_max <= lam < 0, then T1's
    mean hinge error over -predict_max <= lam < -fit_max, predicted (eps + beta-hat |lam|) and measured."""
    if not 0 < fit_max < predict_max:
        raise ValueError(f"fit_max={fit_max}, predict_max={predict_max}: expected 0 < fit_max < predict_max")
    d = seed_arrays(curves, references, alpha)
    lam = d["lams"]
    out = (lam < -fit_max - 1e-9) & (lam >= -predict_max - 1e-9)
    if not out.any():
        raise ValueError(f"no grid lam in [-{predict_max}, -{fit_max}): expected the grid to reach -{predict_max}")
    rows = []
    for i, seed in enumerate(d["seeds"]):
        eps = d["eps"][i, 0]
        b = estimate_beta(lam, d["error"][i, :, 0], eps, fit_max=fit_max)
        pred = float(np.mean(eps + b * np.abs(lam[out])))
        rows.append((seed, b, eps, pred, float(np.mean(d["error"][i, out, 0]))))
    return pd.DataFrame(rows, columns=["seed", "beta_hat", "eps", "predicted", "measured"])


def threshold_fits(summary: pd.DataFrame, column: str = "lam_star_error") -> pd.DataFrame:
    """Per seed: the line lam*(alpha) = intercept + slope * alpha over alpha >= 0 (Theorem 1: 1 + beta, -1),
    and the mean gap lam* - (1 - alpha); from addition_summary's frame. NaN where lam* is undefined."""
    rows = []
    for seed, g in summary[summary["alpha"] >= 0].groupby("seed"):
        ok = np.isfinite(g[column].to_numpy())
        intercept, slope = fit_threshold_line(g["alpha"], g[column]) if ok.sum() >= 2 else (math.nan, math.nan)
        gap = float(np.mean((g[column] - (1 - g["alpha"]))[ok])) if ok.any() else math.nan
        rows.append((seed, intercept, slope, gap))
    return pd.DataFrame(rows, columns=["seed", "intercept", "slope", "gap"])


def threshold_tightness(
    curves: pd.DataFrame,
    references: pd.DataFrame,
    *,
    factors: Sequence[float],
    beta: Mapping[int, float],
    acc_level: float = 0.95,
) -> tuple[dict[float, pd.DataFrame], pd.DataFrame]:
    """Theorem 1's threshold 1 - alpha + beta-hat against lam*(alpha) measured at several tolerances.

    Per factor (T2 learned: error <= factor * eps): addition_summary with T1's allowance |lam| beta
    (beta per seed), and one table row: the line lam* = intercept + slope * alpha over alpha >= 0
    (mean and SD over seeds), the mean gap lam* - (1 - alpha + beta-hat), and two verdicts:
    "threshold" by tvlib.rules.sufficient_bound (tight within THRESHOLD_TOL) and "slope" by
    tvlib.rules.agreement with -1 (within SLOPE_TOL). Returns (summaries by factor, table).
    """
    b = pd.Series(beta, dtype=float)
    summaries, rows = {}, []
    for f in factors:
        s = addition_summary(curves, references, factor=f, acc_level=acc_level, beta=dict(beta))
        fits = threshold_fits(s).set_index("seed")
        gap = fits["gap"] - b.reindex(fits.index)
        rows.append((float(f), fits["intercept"].mean(), fits["intercept"].std(), fits["slope"].mean(),
                     fits["slope"].std(), gap.mean(), str(judge(sufficient_bound, gap, 0.0, tol=THRESHOLD_TOL)),
                     str(judge(agreement, fits["slope"], -1.0, tol=SLOPE_TOL))))
        summaries[float(f)] = s
    table = pd.DataFrame(rows, columns=["factor", "intercept", "intercept_sd", "slope", "slope_sd", "gap",
                                        "threshold", "slope_verdict"])
    return summaries, table


def edge_exponents(
    summary: pd.DataFrame, column: str, *, lam_min: float, lam_max: float, min_points: int = 3
) -> pd.DataFrame:
    """Per seed: |edge| = c |alpha|^-p fitted over alpha < 0 where the edge is inside (lam_min, lam_max)
    (an edge at the grid's end is censored and left out); from negation_summary's frame.
    NaN when fewer than min_points values of alpha remain."""
    rows = []
    for seed, g in summary[summary["alpha"] < 0].groupby("seed"):
        e = g[column].to_numpy()
        use = np.isfinite(e) & (e > lam_min + 1e-9) & (e < lam_max - 1e-9) & (e != 0)
        n = int(use.sum())
        c, p = fit_power_law(g["alpha"][use], e[use]) if n >= max(2, min_points) else (math.nan, math.nan)
        rows.append((seed, c, p, n))
    return pd.DataFrame(rows, columns=["seed", "c", "p", "n"])
