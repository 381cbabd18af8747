"""Estimators on plain arrays: where conditions hold along a lambda grid, and the theorems' lines and power laws, fitted.

feasible_interval gives the edges of a run of grid lambdas on which every condition holds,
interpolated linearly (the measured thresholds and windows of tvlib.toy.measured and
tvlib.toy.ood_edges). estimate_beta is the book's beta-hat (the convention is stated in
tvlib.toy.measured). fit_threshold_line, fit_power_law and fit_step_exponents fit Theorem 1's threshold
line, Theorem 2's power laws and Section 4's step exponents. Each function takes arrays and returns
numbers or a small frame; none reads a sweep.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "feasible_interval",
    "estimate_beta",
    "beta_from_thresholds",
    "fit_threshold_line",
    "fit_power_law",
    "fit_step_exponents",
]


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
