"""Rules that turn measurements into the book's choices and verdicts, one implementation each.

`best_lambda` is Table 1's rule for choosing lambda, used by the toy model and the image experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["GOALS", "best_lambda"]

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
