"""Theorem 3 at its edges: the measured lower and upper edges of the learned (lam1, lam2) region against condition (7).

Condition (7) and its two lower edges (the "vote" and "attention" lines) are in tvlib.toy.theory.
Here, per seed of an out-of-domain sweep's error (S, L1, L2): the measured edges per lam2 column
(ood_measured_edges, ood_lower_edge_mean), their slopes where each line binds and the learned
fraction of the region (ood_edge_analysis), the claims judged by tvlib.rules (ood_edge_verdicts,
ood_edge_row), and the per-seed numbers a chapter glues and reads back from a tvlib-batch table
(ood_edge_glues, ood_edges_from_runs).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..rules import agreement, fraction_of_seeds, sufficient_bound
from .fits import feasible_interval
from .theory import ood_condition, ood_edge_lines, ood_predicted_edge

__all__ = [
    "EDGE_SLOPE_TOL",
    "ood_measured_edges",
    "fit_edge_slope",
    "ood_edge_analysis",
    "ood_edge_verdicts",
    "EDGE_METRICS",
    "ood_edge_glues",
    "ood_edges_from_runs",
    "ood_lower_edge_mean",
    "ood_edge_row",
]

#: slopes of a measured edge agree with a predicted line when within this many lam1 per unit lam2
#: (plus two standard errors over seeds); fixed before any run
EDGE_SLOPE_TOL = 0.1


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
