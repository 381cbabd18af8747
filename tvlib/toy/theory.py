"""The paper's statements as formulas: the lambda regions Theorems 1-3 predict, before any measurement.

The paper fixes no constants; every unknown constant is a parameter here.
- Theorem 1 (addition): both tasks learned once lam >= 1 - alpha + beta, for alpha >= 0 only.
- Theorem 2 (negation): T2 forgotten and T1 kept for lam <= 0 (alpha = 0, with |lam| beta small),
  for -c_lower / alpha^2 <= lam <= c_upper / |alpha| (alpha < 0); no guarantee for alpha > 0.
- alpha-hat (the paper's measured task correlation: the cosine of the two fine-tuned models' outputs)
  in the first-order picture: 2 alpha / (1 + alpha^2), and its inverse.
- Theorem 3 (out-of-domain): condition (7) on a (lam1, lam2) grid, and its two lower edges as lines.

The same quantities measured: tvlib.toy.measured (Theorems 1-2 on an arithmetic sweep),
tvlib.toy.ood_edges (Theorem 3's edges), tvlib.toy.vector_stats (the task vectors themselves).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "addition_threshold",
    "negation_bounds",
    "alpha_hat_linear",
    "alpha_from_alpha_hat",
    "ood_condition",
    "ood_edge_lines",
    "ood_predicted_edge",
]


# ---------------------------------------------------------------- Theorems 1 and 2


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


def _check_alpha(a: np.ndarray) -> None:
    if np.any(~np.isfinite(a)) or np.any(np.abs(a) > 1):
        raise ValueError(f"alpha={a}: a task correlation must lie in [-1, 1]")


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
