"""Rules that turn measurements into the book's choices and verdicts, one implementation each.

`best_lambda` is Table 1's rule for choosing lambda, used by the toy model and the image experiment.
`ordering`, `agreement`, `fraction_of_seeds` and `sufficient_bound` turn per-seed measurements into the
verdict words of the chapters' theory-vs-measurement tables; each states its rule in its docstring, and
the thresholds are fixed here, before any experiment is run (at least 4 of 5 seeds, gaps beyond two
standard errors). Uncertainty counts against a claim: an agreement or a bound whose interval
(mean +- 2 SE) straddles the tolerance is "inconclusive", never passed. `against_baseline` calls a claim
"trivial" when the baseline (lambda = 0, or the fine-tuned model alone) already satisfies it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GOALS", "INCONCLUSIVE", "best_lambda", "Verdict", "ordering", "agreement", "fraction_of_seeds",
           "sufficient_bound", "against_baseline", "judge"]

GOALS = ("add", "negate")


def best_lambda(lams: Sequence[float], acc_T1: Sequence[float], acc_T2: Sequence[float], goal: str) -> int:
    """Index of Table 1's best lambda on seed-mean accuracy curves, ties to the smallest |lambda|.

    goal "add": maximise the mean of T1 and T2 accuracy over lambda > 0; "negate": maximise
    T1 accuracy minus T2 accuracy over lambda < 0. lambda = 0 (no arithmetic at all) is never chosen.
    """
    lams = np.asarray(lams, dtype=float)
    a1, a2 = np.asarray(acc_T1, dtype=float), np.asarray(acc_T2, dtype=float)
    if lams.ndim != 1 or a1.shape != lams.shape or a2.shape != lams.shape:
        raise ValueError(f"lams {lams.shape}, acc_T1 {a1.shape}, acc_T2 {a2.shape}: expected three equal 1-D shapes")
    if goal == "add":
        score, allowed = (a1 + a2) / 2, lams > 0
    elif goal == "negate":
        score, allowed = a1 - a2, lams < 0
    else:
        raise ValueError(f"goal={goal!r}: expected one of {GOALS}")
    if not allowed.any():
        side = "> 0" if goal == "add" else "< 0"
        raise ValueError(f"lams={lams.tolist()} has no lambda {side}: goal {goal!r} needs one")
    top = allowed & (score >= score[allowed].max() - 1e-9)
    return int(np.flatnonzero(top)[np.argmin(np.abs(lams[top]))])


# ---------------------------------------------------------------- verdicts: words computed from measurements


@dataclass(frozen=True)
class Verdict:
    """A verdict word, whether the claim holds, and the numbers behind it in one line."""

    word: str
    holds: bool
    detail: str

    def __str__(self) -> str:
        return self.word


def _seeds(x: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name}={a.tolist()}: expected a non-empty list of finite per-seed values")
    return a


def _se(x: np.ndarray) -> float:
    """Standard error of the mean of per-seed values; inf for a single seed (its spread is unknown)."""
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("inf")


INCONCLUSIVE = "inconclusive"


def ordering(a: Sequence[float], b: Sequence[float], *, min_frac: float = 0.8, n_se: float = 2.0,
             words: tuple[str, str] = ("holds", "does not hold")) -> Verdict:
    """"a > b" over paired seeds: holds when a > b in at least min_frac of the seeds AND the mean
    gap exceeds n_se standard errors of the per-seed gaps (a single seed never suffices)."""
    a, b = _seeds(a, "a"), _seeds(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has {a.size} seeds and b {b.size}: expected paired seeds")
    gap = a - b
    n = gap.size
    se = _se(gap)
    wins = int((gap > 0).sum())
    ok = wins >= min_frac * n and float(gap.mean()) > n_se * se
    return Verdict(words[0] if ok else words[1], ok,
                   f"{wins}/{n} seeds, mean gap {gap.mean():.3g} ± {se:.2g} (SE)")


def agreement(measured: Sequence[float], predicted: float, *, tol: float, n_se: float = 2.0,
              words: tuple[str, str] = ("agrees", "disagrees")) -> Verdict:
    """A measured quantity (per seed) against a prediction, with the uncertainty counted against the claim.

    The interval mean +- n_se SE is compared with the tolerance band predicted +- tol: "agrees" when the
    whole interval lies inside the band (|mean - predicted| + n_se SE <= tol), "disagrees" when the
    whole interval lies outside it (|mean - predicted| - n_se SE > tol), otherwise "inconclusive" (the
    seeds cannot tell; always so when n_se SE exceeds tol, and for a single seed). Noisier data thus
    never agrees more easily; only "agrees" holds.
    """
    m = _seeds(measured, "measured")
    if not np.isfinite(predicted) or not tol >= 0:
        raise ValueError(f"predicted={predicted}, tol={tol}: expected a finite prediction and tol >= 0")
    se = _se(m)
    off = abs(float(m.mean()) - float(predicted))
    if off + n_se * se <= tol:
        word = words[0]
    elif off - n_se * se > tol:
        word = words[1]
    else:
        word = INCONCLUSIVE
    return Verdict(word, word == words[0],
                   f"measured {m.mean():.3g} ± {se:.2g} (SE, {m.size} seeds) vs predicted {predicted:.3g}, "
                   f"tol {tol:.2g}")


def fraction_of_seeds(flags: Sequence[bool], *, min_frac: float = 0.8,
                      words: tuple[str, str] = ("holds", "does not hold")) -> Verdict:
    """A per-seed yes/no claim holds when it is true in at least min_frac of the seeds."""
    f = np.asarray(flags, dtype=bool).reshape(-1)
    if f.size == 0:
        raise ValueError("flags is empty: expected one yes/no per seed")
    ok = int(f.sum()) >= min_frac * f.size
    return Verdict(words[0] if ok else words[1], ok, f"{int(f.sum())}/{f.size} seeds")


def sufficient_bound(measured: Sequence[float], predicted: float | Sequence[float], *, tol: float,
                     region: str = "above", min_frac: float = 0.8, n_se: float = 2.0) -> Verdict:
    """How a sufficient bound compares with the measured edge, per seed: "tight", "conservative",
    "violated" or "inconclusive"; no outcome is the default.

    region "above": the bound says lam >= predicted suffices, the measured edge is the smallest lam from
    which the claim holds; "below": lam <= predicted suffices, the edge is the largest such lam. The
    slack is predicted - measured ("above") or measured - predicted ("below"), per seed; its mean has
    the interval mean +- n_se SE. "violated" (the bound claims points where the measurement fails) when
    the slack is negative in at least min_frac of the seeds and the whole interval lies below -tol;
    "conservative" when it is positive in at least min_frac of the seeds and the whole interval lies
    above tol; "tight" when the whole interval lies within +-tol; otherwise "inconclusive" (the seeds
    cannot tell, e.g. when n_se SE exceeds tol). "tight" and "conservative" hold.
    """
    m = _seeds(measured, "measured")
    p = np.broadcast_to(np.asarray(predicted, dtype=float), m.shape)
    if not np.isfinite(p).all() or not tol >= 0 or region not in ("above", "below"):
        raise ValueError(f"predicted={predicted}, tol={tol}, region={region!r}: expected finite predictions, "
                         "tol >= 0 and region 'above' or 'below'")
    slack = p - m if region == "above" else m - p
    n = slack.size
    se = _se(slack)
    mean = float(slack.mean())
    if (slack < 0).sum() >= min_frac * n and mean + n_se * se < -tol:
        word = "violated"
    elif (slack > 0).sum() >= min_frac * n and mean - n_se * se > tol:
        word = "conservative"
    elif abs(mean) + n_se * se <= tol:
        word = "tight"
    else:
        word = INCONCLUSIVE
    return Verdict(word, word in ("tight", "conservative"),
                   f"slack {mean:.3g} ± {se:.2g} (SE, {n} seeds; > 0: the bound asks for more than needed), tol {tol:.2g}")


def against_baseline(rule: Callable[..., Verdict], measured: Any, baseline: Any, *args: Any,
                     name: str = "baseline", **kw: Any) -> Verdict:
    """rule(measured, *args, **kw), judged beside the same rule on the baseline (lambda = 0, or Psi*_T1 alone).

    "trivial" when the baseline already passes the rule: the claim is then satisfied without the
    edit, so the measurement is no evidence for it (holds is False). Otherwise the rule's own verdict,
    with the baseline's numbers added to its detail.
    """
    v, b = rule(measured, *args, **kw), rule(baseline, *args, **kw)
    if b.holds:
        return Verdict("trivial", False, f"{v.detail}; {name} already passes: {b.detail}")
    return Verdict(v.word, v.holds, f"{v.detail}; {name}: {b.word} ({b.detail})")


def judge(rule: Callable[..., Verdict], per_seed: Sequence[float], *args: Any, **kw: Any) -> Verdict | str:
    """rule(finite per-seed values, *args, **kw): a seed whose measurement is undefined (NaN, inf) is left
    out; "n/a" when no seed has one."""
    x = np.asarray(per_seed, dtype=float)
    return rule(x[np.isfinite(x)], *args, **kw) if np.isfinite(x).any() else "n/a"
