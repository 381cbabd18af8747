"""Theorems 1 and 2 as numbers: predicted lambda regions, and the same quantities measured from sweeps.

Predictions (the paper fixes no constants; every unknown constant is a parameter here):
- Theorem 1 (addition): both tasks learned once lam >= 1 - alpha + beta, for alpha >= 0 only.
- Theorem 2 (negation): T2 forgotten and T1 kept for lam <= 0 (alpha = 0, with |lam| beta small),
  for -c_lower / alpha^2 <= lam <= c_upper / |alpha| (alpha < 0); no guarantee for alpha > 0.

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
import torch
from torch import Tensor

from ..rules import GOALS, agreement, best_lambda, sufficient_bound

__all__ = [
    "addition_threshold",
    "negation_bounds",
    "alpha_hat_linear",
    "alpha_from_alpha_hat",
    "pattern_ratios",
    "feasible_interval",
    "estimate_beta",
    "beta_from_thresholds",
    "fit_threshold_line",
    "fit_power_law",
    "seed_arrays",
    "addition_summary",
    "negation_summary",
    "learned_map",
    "worst_task",
    "beta_hat",
    "best_lambdas",
    "side_effect_prediction",
    "fit_step_exponents",
    "PREDICT_REL_TOL",
    "THRESHOLD_TOL",
    "SLOPE_TOL",
    "EXPONENT_TOL",
    "threshold_fits",
    "threshold_tightness",
    "edge_exponents",
    "ood_condition",
    "EDGE_SLOPE_TOL",
    "ood_edge_lines",
    "ood_predicted_edge",
    "ood_measured_edges",
    "fit_edge_slope",
    "ood_edge_analysis",
    "ood_edge_verdicts",
    "EDGE_METRICS",
    "ood_edge_glues",
    "ood_edges_from_runs",
    "ood_lower_edge_mean",
    "ood_edge_row",
    "rank_residuals",
    "finetuned_errors",
    "row_norm_stats",
    "seed_glues",
    "seed_frame",
]


# ---------------------------------------------------------------- predictions


def addition_threshold(alpha: float | np.ndarray, beta: float = 0.0) -> np.ndarray:
    """Theorem 1's sufficient lam for learning both tasks, 1 - alpha + beta; NaN for alpha < 0 (no lam works)."""
    a = np.asarray(alpha, dtype=float)
    _check_alpha(a)
    return np.where(a >= 0, 1.0 - a + beta, np.nan)


def negation_bounds(
    alpha: float | np.ndarray,
    *,
    c_lower: float = 1.0,
    c_upper: float = 1.0,
    beta: float = 0.0,
    budget: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 2's lam interval (lower, upper) for forgetting T2 while keeping T1, per alpha.

    alpha < 0: [-c_lower / alpha^2, c_upper / |alpha|] (the paper's -Theta(alpha^-2) and
    poly(eta delta*) / |alpha|; c_lower and c_upper are unknown constants). alpha = 0:
    [-budget / beta, 0] (|lam| beta <= budget; -inf when beta = 0). alpha > 0: NaN (no guarantee).
    """
    a = np.asarray(alpha, dtype=float)
    _check_alpha(a)
    if c_lower <= 0 or c_upper <= 0 or beta < 0 or budget <= 0:
        raise ValueError(
            f"c_lower={c_lower}, c_upper={c_upper}, beta={beta}, budget={budget}: "
            "expected c_lower > 0, c_upper > 0, beta >= 0, budget > 0"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        irrelevant_lower = -budget / beta if beta > 0 else -math.inf
        lower = np.where(a < 0, -c_lower / a**2, np.where(a == 0, irrelevant_lower, np.nan))
        upper = np.where(a < 0, c_upper / np.abs(a), np.where(a == 0, 0.0, np.nan))
    return lower, upper


def alpha_hat_linear(alpha: float | np.ndarray) -> np.ndarray:
    """alpha-hat on an equal mix of T1 and T2 inputs if each model answered alpha times the other's margin: 2 alpha / (1 + alpha^2)."""
    a = np.asarray(alpha, dtype=float)
    _check_alpha(a)
    return 2 * a / (1 + a**2)


def alpha_from_alpha_hat(alpha_hat: float | np.ndarray) -> np.ndarray:
    """Inverse of alpha_hat_linear on [-1, 1]: (1 - sqrt(1 - h^2)) / h (0 at h = 0)."""
    h = np.asarray(alpha_hat, dtype=float)
    if np.any(np.abs(h) > 1 + 1e-9):
        raise ValueError(f"alpha_hat={h}: a cosine must lie in [-1, 1]")
    h = np.clip(h, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(h == 0, 0.0, (1 - np.sqrt(1 - h**2)) / h)


def pattern_ratios(dW: Tensor, dV: Tensor, mu: Tensor, *, ref: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """How strongly each of K task vectors reads pattern mu, relative to task vector `ref`.

    dW (K, d, d), dV (K, m, d). Attention: mu^T dW_k mu / mu^T dW_ref mu. Value: the projection of
    the neurons' read-out dV_k mu on dV_ref mu, divided by |dV_ref mu|^2. For T2 against T1 the
    first-order picture predicts alpha^2 (attention ignores the sign of mu) and alpha (values carry it).
    """
    if dW.ndim != 3 or dV.ndim != 3 or dW.shape[0] != dV.shape[0] or mu.shape != (dW.shape[-1],):
        raise ValueError(
            f"dW {tuple(dW.shape)}, dV {tuple(dV.shape)}, mu {tuple(mu.shape)}: expected (K, d, d), (K, m, d), (d,)"
        )
    w = torch.einsum("i,kij,j->k", mu, dW, mu)
    read = dV @ mu  # (K, m)
    v = read @ read[ref] / (read[ref] @ read[ref])
    return (w / w[ref]).numpy(), v.numpy()


def _check_alpha(a: np.ndarray) -> None:
    if np.any(~np.isfinite(a)) or np.any(np.abs(a) > 1):
        raise ValueError(f"alpha={a}: a task correlation must lie in [-1, 1]")


# ---------------------------------------------------------------- measurements on arrays


def feasible_interval(
    lams: Sequence[float], slacks: np.ndarray, *, anchor: float | None = None, nearest: bool = False
) -> tuple[float, float]:
    """Edges (lo, hi) of a run of consecutive grid lams where every slack is >= 0, interpolated linearly.

    slacks: (L,) or (n_constraints, L), one row per condition (e.g. level - error). The run is the
    one containing the grid point nearest `anchor` (with nearest=True: else the run closest to it), or
    the longest (ties: nearest 0) if anchor is None.
    Each edge is moved from the last feasible grid point towards the first infeasible one, to where
    the first violated condition crosses zero. An edge equal to lams[0] or lams[-1] means the run may
    continue beyond the grid. (nan, nan) if no grid point (or not the anchor) is feasible.
    """
    lam = np.asarray(lams, dtype=float)
    s = np.atleast_2d(np.asarray(slacks, dtype=float))
    if lam.ndim != 1 or lam.size < 1 or s.shape[1] != lam.size:
        raise ValueError(f"lams of shape {lam.shape} and slacks of shape {s.shape}: expected (L,) and (L,) or (k, L)")
    if np.any(np.diff(lam) <= 0):
        raise ValueError("lams must be strictly increasing")
    ok = np.all(s >= 0, axis=0)
    runs: list[tuple[int, int]] = []
    i = 0
    while i < lam.size:
        if ok[i]:
            j = i
            while j + 1 < lam.size and ok[j + 1]:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    if not runs:
        return math.nan, math.nan
    if anchor is not None:
        k = int(np.argmin(np.abs(lam - anchor)))
        match = [r for r in runs if r[0] <= k <= r[1]]
        if not match and nearest:
            match = [min(runs, key=lambda r: min(abs(lam[r[0]] - anchor), abs(lam[r[1]] - anchor)))]
        if not match:
            return math.nan, math.nan
        i, j = match[0]
    else:
        i, j = max(runs, key=lambda r: (lam[r[1]] - lam[r[0]], -min(abs(lam[r[0]]), abs(lam[r[1]]))))

    def edge(inside: int, outside: int) -> float:
        cands = []
        for row in s:
            if row[outside] < 0:  # violated outside: crosses zero between the two points
                t = row[inside] / (row[inside] - row[outside])
                cands.append(lam[inside] + t * (lam[outside] - lam[inside]))
        return min(cands, key=lambda x: abs(x - lam[inside]))

    lo = lam[i] if i == 0 else edge(i, i - 1)
    hi = lam[j] if j == lam.size - 1 else edge(j, j + 1)
    return float(lo), float(hi)


def estimate_beta(
    lams: Sequence[float], t1_error: Sequence[float], eps: float, *, method: str = "fit", fit_max: float = 1.0
) -> float:
    """beta from T1's hinge error err(lam) ~ eps + |lam| beta (Theorems 1-2); eps = the error at lam = 0.

    method="fit" (the book's convention): the least-squares slope through the origin of err - eps
    against |lam| over -fit_max <= lam < 0 only (where the side effect shows; lam > 0 is not used).
    method="bound": the smallest beta for which err <= eps + |lam| beta at every non-zero grid lam.
    method="slope": the least-squares slope through the origin over every non-zero grid lam.
    """
    lam = np.asarray(lams, dtype=float)
    err = np.asarray(t1_error, dtype=float)
    if lam.shape != err.shape or lam.ndim != 1:
        raise ValueError(f"lams {lam.shape} and t1_error {err.shape}: expected equal 1-d shapes")
    keep = (lam < 0) & (lam >= -fit_max - 1e-9) if method == "fit" else lam != 0
    if not keep.any():
        raise ValueError(f"lams holds no value for method {method!r}: expected a grid of lam around 0"
                         + (f" with some -{fit_max} <= lam < 0" if method == "fit" else ""))
    x, excess = np.abs(lam[keep]), err[keep] - eps
    if method == "bound":
        return float(max(0.0, np.max(excess / x)))
    if method in ("slope", "fit"):
        return float(np.sum(x * excess) / np.sum(x * x))
    raise ValueError(f"method={method!r}: expected 'fit', 'bound' or 'slope'")


def beta_from_thresholds(alphas: Sequence[float], thresholds: Sequence[float]) -> float:
    """beta from lam*(alpha) = 1 - alpha + beta: the mean of lam* - (1 - alpha) over alpha >= 0 (NaN ignored)."""
    a = np.asarray(alphas, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    if a.shape != t.shape:
        raise ValueError(f"alphas {a.shape} and thresholds {t.shape}: expected equal shapes")
    use = (a >= 0) & np.isfinite(t)
    if not use.any():
        raise ValueError("no finite threshold at alpha >= 0: Theorem 1's threshold covers alpha >= 0 only")
    return float(np.mean(t[use] - (1 - a[use])))


def fit_threshold_line(alphas: Sequence[float], thresholds: Sequence[float]) -> tuple[float, float]:
    """Least-squares line lam* = intercept + slope * alpha over finite thresholds (theory: 1 + beta, -1)."""
    a = np.asarray(alphas, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    use = np.isfinite(a) & np.isfinite(t)
    if use.sum() < 2:
        raise ValueError("need at least two finite (alpha, threshold) points to fit a line")
    slope, intercept = np.polyfit(a[use], t[use], 1)
    return float(intercept), float(slope)


def fit_power_law(alphas: Sequence[float], bounds: Sequence[float]) -> tuple[float, float]:
    """Fit |bound| = c * |alpha|^-p by least squares in log-log over finite, non-zero points; returns (c, p)."""
    a = np.abs(np.asarray(alphas, dtype=float))
    b = np.abs(np.asarray(bounds, dtype=float))
    use = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if use.sum() < 2 or np.unique(a[use]).size < 2:
        raise ValueError("need finite non-zero bounds at two or more distinct alphas to fit a power law")
    slope, intercept = np.polyfit(np.log(a[use]), np.log(b[use]), 1)
    return float(np.exp(intercept)), float(-slope)


# ---------------------------------------------------------------- measurements on sweep DataFrames


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


def fit_step_exponents(delta_stars: Sequence[float], lrs: Sequence[float], reach: np.ndarray) -> pd.DataFrame:
    """Per run k: log T = a + p_delta log delta_star + p_eta log eta by least squares (theory: -2, -1).

    reach: steps to reach a loss level, shape (len(delta_stars), len(lrs), runs); NaN cells are left out."""
    r = np.asarray(reach, dtype=float)
    ds, lr = np.log(np.asarray(delta_stars, dtype=float)), np.log(np.asarray(lrs, dtype=float))
    if r.ndim != 3 or r.shape[:2] != (ds.size, lr.size):
        raise ValueError(f"reach of shape {r.shape}: expected (len(delta_stars), len(lrs), runs) = ({ds.size}, {lr.size}, k)")
    X = np.stack(np.broadcast_arrays(np.ones((ds.size, lr.size)), ds[:, None], lr[None, :]), -1).reshape(-1, 3)
    rows = []
    for k in range(r.shape[2]):
        y = np.log(r[:, :, k].reshape(-1))
        use = np.isfinite(y)
        coef = np.linalg.lstsq(X[use], y[use], rcond=None)[0] if use.sum() >= 3 else np.full(3, np.nan)
        rows.append((k, float(coef[1]), float(coef[2])))
    return pd.DataFrame(rows, columns=["run", "p_delta_star", "p_eta"])


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


def _judge(rule, per_seed: Sequence[float], *args, **kw) -> str:
    """A tvlib.rules verdict word on the finite per-seed values; "n/a" when there are none."""
    x = np.asarray(per_seed, dtype=float)
    return str(rule(x[np.isfinite(x)], *args, **kw)) if np.isfinite(x).any() else "n/a"


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
                     fits["slope"].std(), gap.mean(), _judge(sufficient_bound, gap, 0.0, tol=THRESHOLD_TOL),
                     _judge(agreement, fits["slope"], -1.0, tol=SLOPE_TOL)))
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


# ---------------------------------------------------------------- Theorem 3 (out-of-domain)

def ood_condition(
    lams1: Sequence[float], lams2: Sequence[float], gammas: Sequence[float], *, beta: float, c: float
) -> np.ndarray:
    """Condition (7) on a (lam1, lam2) grid, shape (L1, L2): sum lam_i gamma_i >= 1 + c,
    sum lam_i gamma_i^2 >= 1 + c and |lam_i| beta <= c for both i."""
    if len(gammas) != 2:
        raise ValueError(f"gammas={list(gammas)}: expected (gamma1, gamma2)")
    if not 0 < c < 1 or not beta >= 0:
        raise ValueError(f"c={c}, beta={beta}: expected 0 < c < 1 and beta >= 0")
    l1 = np.asarray(lams1, dtype=float)[:, None]
    l2 = np.asarray(lams2, dtype=float)[None, :]
    g1, g2 = (float(g) for g in gammas)
    return (
        (l1 * g1 + l2 * g2 >= 1 + c)
        & (l1 * g1**2 + l2 * g2**2 >= 1 + c)
        & (np.abs(l1) * beta <= c)
        & (np.abs(l2) * beta <= c)
    )


# ---------------------------------------------------------------- Theorem 3 at its edges

#: slopes of a measured edge agree with a predicted line when within this many lam1 per unit lam2
#: (plus two standard errors over seeds); fixed before any run
EDGE_SLOPE_TOL = 0.1


def ood_edge_lines(gammas: Sequence[float], c: float) -> dict[str, float]:
    """The two lower edges of condition (7) in the (lam1, lam2) plane, as lines lam1 = a + s lam2 (gamma_1 > 0).

    "vote": sum lam_i gamma_i = 1 + c; "attention": sum lam_i gamma_i^2 = 1 + c. Keys vote_a, vote_s,
    attention_a, attention_s and cross (the lam2 where the two lines meet; nan when they are parallel).
    """
    g1, g2 = (float(g) for g in gammas)
    if not g1 > 0 or not 0 < c < 1:
        raise ValueError(f"gammas={list(gammas)}, c={c}: expected gamma_1 > 0 (the edge is a lower bound on lam1) and 0 < c < 1")
    va, vs = (1 + c) / g1, -g2 / g1
    aa, as_ = (1 + c) / g1**2, -(g2**2) / g1**2
    cross = (aa - va) / (vs - as_) if not math.isclose(vs, as_, abs_tol=1e-12) else math.nan
    return dict(vote_a=va, vote_s=vs, attention_a=aa, attention_s=as_, cross=cross)


def ood_predicted_edge(lams2: Sequence[float], gammas: Sequence[float], c: float) -> tuple[np.ndarray, np.ndarray]:
    """Condition (7)'s lower edge in lam1 at each lam2 (the larger of the two lines), and which line binds there
    ("vote" or "attention"; the vote line wins ties)."""
    e = ood_edge_lines(gammas, c)
    l2 = np.asarray(lams2, dtype=float)
    vote = e["vote_a"] + e["vote_s"] * l2
    att = e["attention_a"] + e["attention_s"] * l2
    return np.maximum(vote, att), np.where(vote >= att - 1e-12, "vote", "attention")


def ood_measured_edges(lams1: Sequence[float], error: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per lam2 column of error (L1, L2): the lower and upper edge in lam1 of the longest run of grid points
    with error <= level, interpolated (feasible_interval). nan where the column learns nothing; an edge equal
    to the grid's end is censored (the run may go on beyond the grid)."""
    err = np.asarray(error, dtype=float)
    if err.ndim != 2 or err.shape[0] != len(lams1):
        raise ValueError(f"error of shape {err.shape}: expected (len(lams1)={len(lams1)}, L2)")
    edges = np.array([feasible_interval(lams1, level - err[:, k]) for k in range(err.shape[1])])
    return edges[:, 0], edges[:, 1]


def fit_edge_slope(lams2: Sequence[float], edge: np.ndarray, keep: np.ndarray, *, min_points: int = 3) -> float:
    """Least-squares slope of edge against lam2 over the columns in `keep` with a finite edge (nan if fewer than min_points)."""
    x, y = np.asarray(lams2, dtype=float), np.asarray(edge, dtype=float)
    use = np.asarray(keep, dtype=bool) & np.isfinite(y)
    if use.sum() < min_points:
        return math.nan
    return float(np.polyfit(x[use], y[use], 1)[0])


def ood_edge_analysis(
    lams1: Sequence[float],
    lams2: Sequence[float],
    error: np.ndarray,
    eps: Sequence[float],
    gammas: Sequence[float],
    *,
    c: float,
    beta: float,
    factor: float = 2.0,
) -> pd.DataFrame:
    """Theorem 3 at its edges, one row per seed of error (S, L1, L2) on T'(gammas), eps (S,) = error of the
    model fine-tuned on T'; learned = error <= factor * eps.

    Columns: slope_vote, slope_attention (the measured lower edge's slope on the lam2 columns where each
    line of condition (7) binds; nan where it binds on fewer than 3 columns), edge_measured and
    edge_predicted (the measured and predicted lower edge, averaged over the lam2 columns where the
    measured one is finite and not censored), inside
    (grid points in region (7)), inside_learned (their learned fraction), beyond_cap (grid points that meet
    both sums but not |lam_i| beta <= c), beyond_cap_learned (their learned fraction), upper_edge (the
    smallest upper edge of a learned run among the columns with a point beyond the cap, the grid's lam1_max
    when every such run reaches it; nan when no column goes beyond the cap).
    """
    l1, l2 = np.asarray(lams1, dtype=float), np.asarray(lams2, dtype=float)
    err = np.asarray(error, dtype=float)
    if err.ndim != 3 or err.shape[1:] != (l1.size, l2.size) or len(eps) != err.shape[0]:
        raise ValueError(f"error {err.shape}, eps {len(eps)}: expected (S, {l1.size}, {l2.size}) and S values")
    predicted, binds = ood_predicted_edge(l2, gammas, c)
    region = ood_condition(l1, l2, gammas, beta=beta, c=c)
    sums = ood_condition(l1, l2, gammas, beta=0.0, c=c)
    over = sums & ~region
    cols = over.any(0)
    rows = []
    for s in range(err.shape[0]):
        level = factor * float(eps[s])
        learned = err[s] <= level
        lo, hi = ood_measured_edges(l1, err[s], level)
        lo_fit = np.where(np.isclose(lo, l1[0]), np.nan, lo)  # censored at the grid's start
        both = np.isfinite(lo_fit)
        rows.append(dict(
            slope_vote=fit_edge_slope(l2, lo_fit, binds == "vote"),
            slope_attention=fit_edge_slope(l2, lo_fit, binds == "attention"),
            edge_measured=float(lo_fit[both].mean()) if both.any() else math.nan,
            edge_predicted=float(predicted[both].mean()) if both.any() else math.nan,
            inside=int(region.sum()),
            inside_learned=float(learned[region].mean()) if region.any() else math.nan,
            beyond_cap=int(over.sum()),
            beyond_cap_learned=float(learned[over].mean()) if over.any() else math.nan,
            upper_edge=float(np.nanmin(np.where(cols, hi, np.nan))) if cols.any() and np.isfinite(hi[cols]).any() else math.nan,
        ))
    return pd.DataFrame(rows)


def ood_edge_verdicts(
    per_seed: pd.DataFrame, gammas: Sequence[float], *, c: float, beta: float, tol: float
) -> list[dict]:
    """Theorem 3's claims on one target, judged by tvlib.rules from ood_edge_analysis's per-seed rows.

    One dict per claim with keys claim, predicted, measured (seed mean), se (standard error over seeds)
    and verdict (a tvlib.rules.Verdict, or None where the grid cannot test the claim):
    - "vote edge slope", "attention edge slope": agreement with -gamma_2/gamma_1 and -gamma_2^2/gamma_1^2
      within EDGE_SLOPE_TOL, on the columns where each line binds;
    - "lower edge": sufficient_bound (region "above", tolerance tol) of the measured against the predicted edge;
    - "region learned": fraction_of_seeds that every grid point of region (7) is learned;
    - "cap": sufficient_bound (region "below") of the measured upper edge against c / beta.
    """
    from ..rules import agreement, fraction_of_seeds, sufficient_bound

    lines = ood_edge_lines(gammas, c)
    out = []

    def row(claim: str, predicted: float, values: np.ndarray, judge) -> None:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        ok = v.size >= 2
        se = float(v.std(ddof=1) / np.sqrt(v.size)) if ok else math.nan
        out.append(dict(claim=claim, predicted=predicted, measured=float(v.mean()) if v.size else math.nan,
                        se=se, verdict=judge(v) if ok else None))

    for line in ("vote", "attention"):
        pred = lines[f"{line}_s"]
        row(f"{line} edge slope", pred, per_seed[f"slope_{line}"].to_numpy(),
            lambda v, p=pred: agreement(v, p, tol=EDGE_SLOPE_TOL))
    finite = per_seed[["edge_measured", "edge_predicted"]].dropna()
    row("lower edge", float(finite["edge_predicted"].mean()) if len(finite) else math.nan,
        finite["edge_measured"].to_numpy(),
        lambda v: sufficient_bound(v, finite["edge_predicted"].to_numpy(), tol=tol, region="above"))
    row("region learned", 1.0, per_seed["inside_learned"].to_numpy(),
        lambda v: fraction_of_seeds(v >= 1.0))
    cap = c / beta if beta > 0 else math.inf
    row("cap", cap, per_seed["upper_edge"].to_numpy(),
        lambda v: sufficient_bound(v, cap, tol=tol, region="below") if math.isfinite(cap) else None)
    return out


#: the per-seed columns of ood_edge_analysis that a chapter glues (and tvlib-batch collects) for each seed
EDGE_METRICS = ("slope_vote", "slope_attention", "edge_measured", "edge_predicted", "inside_learned",
                "beyond_cap_learned", "upper_edge")


def ood_edge_glues(per_seed: pd.DataFrame, lower_edge: np.ndarray, **extra: float) -> dict[str, float]:
    """Finite numbers to glue for one target: ood_edge_<metric>_s<i> per seed, ood_lo_<k> = the seed-mean lower
    edge at lam2 column k, ood_n_seeds, ood_n_cols, and `extra` (e.g. gamma1, gamma2, beta, lam2_min, lam_step) as ood_<name>."""
    out: dict[str, float] = {"ood_n_seeds": len(per_seed), "ood_n_cols": len(lower_edge)}
    for i, row in per_seed.reset_index(drop=True).iterrows():
        out.update({f"ood_edge_{k}_s{i}": float(row[k]) for k in EDGE_METRICS if np.isfinite(row[k])})
    out.update({f"ood_lo_{k}": float(v) for k, v in enumerate(np.asarray(lower_edge, dtype=float)) if np.isfinite(v)})
    out.update({f"ood_{k}": float(v) for k, v in extra.items()})
    return out


def ood_edges_from_runs(runs: pd.DataFrame) -> list[dict]:
    """Inverse of ood_edge_glues on a tvlib-batch table (one row per run): per run a dict with the extras,
    `per_seed` (a DataFrame with EDGE_METRICS, nan where not glued) and `lo` (lower edge per lam2 column)."""
    out = []
    for _, r in runs.iterrows():
        n = int(r["ood_n_seeds"])
        per_seed = pd.DataFrame([{k: float(r.get(f"ood_edge_{k}_s{i}", math.nan)) for k in EDGE_METRICS}
                                 for i in range(n)])
        lo = np.array([float(r.get(f"ood_lo_{k}", math.nan)) for k in range(int(r["ood_n_cols"]))])
        extra = {c[len("ood_"):]: r[c] for c in r.index
                 if c.startswith("ood_") and not c.startswith(("ood_edge_", "ood_lo_")) and c not in ("ood_n_seeds", "ood_n_cols")}
        out.append(dict(extra, per_seed=per_seed, lo=lo))
    return out


def ood_lower_edge_mean(lams1: Sequence[float], error: np.ndarray, eps: Sequence[float], *, factor: float = 2.0) -> np.ndarray:
    """Seed mean of the measured lower edge per lam2 column (error (S, L1, L2), learned = error <= factor * eps[s]);
    edges censored at the grid's start are left out, nan where no seed has one."""
    l1 = np.asarray(lams1, dtype=float)
    lo = np.array([ood_measured_edges(l1, e, factor * float(x))[0] for e, x in zip(np.asarray(error), eps)])
    lo = np.where(np.isclose(lo, l1[0]), np.nan, lo)
    n = np.isfinite(lo).sum(0)
    return np.where(n > 0, np.nansum(lo, 0) / np.maximum(n, 1), np.nan)


def ood_edge_row(
    per_seed: pd.DataFrame, gammas: Sequence[float], *, c: float, beta: float, tol: float
) -> tuple[dict[str, str], dict[str, object]]:
    """One target's edge claims for a table: "prediction → measurement: verdict" per claim (ood_edge_verdicts),
    with the target and kappa; and the verdicts by claim (None where the grid cannot test the claim)."""
    g1, g2 = (float(g) for g in gammas)
    row = {"target": f"γ = ({g1:.2f}, {g2:.2f})", "κ": f"{math.sqrt(max(0.0, 1 - g1**2 - g2**2)):.2f}"}
    verdicts: dict[str, object] = {}
    for r in ood_edge_verdicts(per_seed, gammas, c=c, beta=beta, tol=tol):
        verdicts[r["claim"]] = r["verdict"]
        if r["claim"] == "region learned":
            continue
        shown = f"{r['predicted']:.2f} → {r['measured']:.2f}" if np.isfinite(r["measured"]) else "–"
        row[r["claim"]] = shown + (f": {r['verdict']}" if r["verdict"] is not None else ": not on the grid")
    return row, verdicts


# ---------------------------------------------------------------- Corollary 1 (low rank)


def rank_residuals(deltas: dict[str, Tensor], ranks: Sequence[int]) -> dict[str, np.ndarray]:
    """||D - D_r||_F of the best rank-r approximation (truncated SVD) of every matrix in a stack D (runs, a, b),
    for each key and each r in ranks: arrays (runs, len(ranks))."""
    out = {}
    for k, D in deltas.items():
        s = torch.linalg.svdvals(D.double())  # (runs, min(a, b)), descending
        tail = torch.flip(torch.cumsum(torch.flip(s**2, [-1]), -1), [-1])  # tail[j] = sum_{i >= j} s_i^2
        tail = torch.cat([tail, torch.zeros_like(tail[..., :1])], -1)
        out[k] = torch.stack([tail[..., min(int(r), s.shape[-1])].sqrt() for r in ranks], -1).numpy()
    return out


def finetuned_errors(references: pd.DataFrame, alphas: Sequence[float]) -> np.ndarray:
    """Each fine-tuned model's hinge error on its own task, per seed: (S, 1 + A) for T1 and T2(alpha) of an
    arithmetic sweep, in the order of its VectorGrid (task 0 = T1, 1 + i = T2(alphas[i]))."""
    r = references
    own = lambda task, a: (r[(r["model"] == task) & (r["task"] == task) & np.isclose(r["alpha"], a)]  # noqa: E731
                           .sort_values("seed")["error"].to_numpy())
    return np.stack([own("T1", alphas[0])] + [own("T2", a) for a in alphas], 1)


# ---------------------------------------------------------------- Corollary 2 (sparsity)


def row_norm_stats(dV: Tensor, batch_size: int) -> pd.DataFrame:
    """Corollary 2's two scales on the rows u_i of stacked dV (runs, m, d), one row per run, in units of m^-1/2:
    frac_large (||u_i|| >= m^-1/2), frac_small (<= m^-1/2 sqrt(log B / B)), frac_gap (in between), and the
    min, 5 % quantile and median of ||u_i|| sqrt(m)."""
    if dV.ndim != 3 or batch_size < 2:
        raise ValueError(f"dV of shape {tuple(dV.shape)}, batch_size={batch_size}: expected (runs, m, d) and B >= 2")
    r = (dV.norm(dim=-1) * dV.shape[1] ** 0.5).double()
    small = math.sqrt(math.log(batch_size) / batch_size)
    large_f, small_f = (r >= 1).double().mean(1), (r <= small).double().mean(1)
    return pd.DataFrame({
        "frac_large": large_f.numpy(), "frac_small": small_f.numpy(), "frac_gap": (1 - large_f - small_f).numpy(),
        "min": r.min(1).values.numpy(), "q05": r.quantile(0.05, dim=1).numpy(), "median": r.median(1).values.numpy(),
    })


def seed_glues(prefix: str, frame: pd.DataFrame) -> dict[str, float]:
    """Per-seed numbers to glue (and for tvlib-batch to collect): <prefix>_<column>_s<i> for each finite value."""
    out: dict[str, float] = {f"{prefix}_n_seeds": len(frame)}
    for i, row in frame.reset_index(drop=True).iterrows():
        out.update({f"{prefix}_{k}_s{i}": float(v) for k, v in row.items() if np.isfinite(v)})
    return out


def seed_frame(run: pd.Series, prefix: str, columns: Sequence[str]) -> pd.DataFrame:
    """Inverse of seed_glues on one row of a tvlib-batch table: the per-seed frame (nan where not glued)."""
    n = int(run[f"{prefix}_n_seeds"])
    return pd.DataFrame([{k: float(run.get(f"{prefix}_{k}_s{i}", math.nan)) for k in columns} for i in range(n)])
