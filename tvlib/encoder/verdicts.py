"""The chapter's verdicts on the held-out seeds, each a tvlib.rules rule with its lambda = 0 baseline beside it.

Thresholds, fixed before the held-out runs: a task is *learned* (or kept) at test accuracy >= LEARNED,
*forgotten* at <= FORGOTTEN; a compressed (or random) vector *matches* the uncompressed merge when both
accuracies are within TOL of its accuracies in at least 4 of 5 seeds. A verdict on a claim that the lambda = 0 model (Psi*_T1 alone)
already satisfies, in as many seeds as the rule asks, is reported as "trivial": the arithmetic did
nothing the baseline did not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import rules
from ..toy import fits, theory
from . import study

__all__ = ["LEARNED", "FORGOTTEN", "TOL", "Claim", "table1", "theorem_claims", "ood_claims", "corollary_claims",
           "rank_curve", "keep_curve", "advice_claims"]

LEARNED, FORGOTTEN, TOL = 0.9, 0.6, 0.02


def _reached(lams: np.ndarray, acc: np.ndarray, side: str, goal: str) -> np.ndarray:
    """Per seed and lambda (seeds, lams): lambda is on `side` (> 0 or < 0) and reaches the goal ('both': T1
    and T2 learned; 'forget': T1 kept, T2 forgotten)."""
    a1, a2 = acc[:, :, 0], acc[:, :, 1]
    ok = (a1 >= LEARNED) & (a2 >= LEARNED) if goal == "both" else (a1 >= LEARNED) & (a2 <= FORGOTTEN)
    return ok & (lams > 0 if side == "+" else lams < 0)


def _exists(lams: np.ndarray, acc: np.ndarray, side: str, goal: str) -> np.ndarray:
    """Per seed: some lambda on `side` reaches the goal (_reached)."""
    return _reached(lams, acc, side, goal).any(1)


def _at0(lams: np.ndarray, acc: np.ndarray, goal: str) -> np.ndarray:
    k = int(np.argmin(np.abs(lams)))
    a1, a2 = acc[:, k, 0], acc[:, k, 1]
    return (a1 >= LEARNED) & (a2 >= LEARNED) if goal == "both" else (a1 >= LEARNED) & (a2 <= FORGOTTEN)


def _word(flags: np.ndarray, base: np.ndarray, negative: bool = False) -> rules.Verdict:
    """fraction_of_seeds on flags (negated for 'no lambda does'); 'trivial' when the baseline passes as often."""
    f = ~flags if negative else flags
    v = rules.fraction_of_seeds(f)
    b = rules.fraction_of_seeds(~base if negative else base)
    if v.holds and b.holds and not negative:
        return rules.Verdict("trivial", True, f"{v.detail}; lambda = 0 already: {b.detail}")
    return v


def table1(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    """Table 1's analogue: per relation and goal, tvlib.rules.best_lambda on the seed-mean curves, accuracies there and at lambda = 0."""
    rows = []
    for rel in study.RELATIONS:
        lams, acc = study.curves(runs, method, rel)
        mean = acc.mean(0)
        k0 = int(np.argmin(np.abs(lams)))
        for goal in ("add", "negate"):
            k = rules.best_lambda(lams, mean[:, 0], mean[:, 1], goal)
            rows.append({"relation": rel, "goal": goal, "lambda": lams[k], "T1": mean[k, 0], "T2": mean[k, 1],
                         "T1 sd": acc[:, k, 0].std(ddof=1) if len(acc) > 1 else 0.0,
                         "T2 sd": acc[:, k, 1].std(ddof=1) if len(acc) > 1 else 0.0,
                         "T1 at 0": mean[k0, 0], "T2 at 0": mean[k0, 1]})
    return pd.DataFrame(rows)


def theorem_claims(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    """Theorems 1-2 per relation: the claim, its verdict on the held-out seeds, and the lambda = 0 baseline."""
    out = []
    spec = {("irrelevant", "add"): ("some lambda > 0 learns T2, keeps T1", "+", "both", False),
            ("aligned", "add"): ("some lambda > 0 learns T2, keeps T1", "+", "both", False),
            ("contradictory", "add"): ("no lambda > 0 learns T2 and keeps T1", "+", "both", True),
            ("irrelevant", "negate"): ("some lambda < 0 forgets T2, keeps T1", "-", "forget", False),
            ("aligned", "negate"): ("no lambda < 0 forgets T2 and keeps T1", "-", "forget", True),
            ("contradictory", "negate"): ("some lambda < 0 forgets T2, keeps T1", "-", "forget", False)}
    for (rel, goal), (claim, side, what, negative) in spec.items():
        lams, acc = study.curves(runs, method, rel)
        flags, base = _exists(lams, acc, side, what), _at0(lams, acc, what)
        v = _word(flags, base, negative)
        k0 = int(np.argmin(np.abs(lams)))
        out.append({"relation": rel, "goal": goal, "claim": claim, "verdict": v.word, "seeds": v.detail,
                    "T1 at 0": acc[:, k0, 0].mean(), "T2 at 0": acc[:, k0, 1].mean()})
    return pd.DataFrame(out)


def ood_claims(runs: pd.DataFrame, method: str, c: float) -> dict[str, object]:
    """Theorem 3 per seed: gamma-hat, beta-hat, the target region on the grid, T' accuracy inside and outside it, best merge."""
    l1, l2, heat = study.heat(runs, method)
    lams, err = study.curves(runs, method, "irrelevant", "err")
    inside, outside, best, best_at, n_region = [], [], [], [], []
    gam = runs[[f"{method}_gamma_1", f"{method}_gamma_2"]].to_numpy(float)
    betas = []
    for s in range(len(runs)):
        e = err[s, :, 0]
        beta = max(0.0, fits.estimate_beta(lams, e, eps=float(e[int(np.argmin(np.abs(lams)))])))
        region = theory.ood_condition(l1, l2, gam[s], beta=beta, c=c)
        betas.append(beta)
        n_region.append(int(region.sum()))
        inside.append(float(heat[s][region].mean()) if region.any() else np.nan)
        outside.append(float(heat[s][~region].mean()))
        i, j = np.unravel_index(int(np.argmax(heat[s])), heat[s].shape)
        best.append(float(heat[s][i, j]))
        best_at.append((float(l1[i]), float(l2[j])))
    inside, outside = np.array(inside), np.array(outside)
    t1_alone = runs[f"{method}_on_target_T1"].to_numpy(float)
    target = runs[f"{method}_own_ood_Tp"].to_numpy(float)
    ok = np.isfinite(inside)
    empty = "n/a (the target region holds no point of the grid)"
    return {"gamma": gam, "beta": np.array(betas), "n_region": np.array(n_region), "inside": inside,
            "outside": outside, "best": np.array(best), "best_at": best_at, "t1_alone": t1_alone, "target": target,
            "region_better": rules.ordering(inside[ok], outside[ok]) if ok.sum() > 1 else empty,
            "merge_beats_t1": rules.ordering(np.array(best), t1_alone),
            "region_learned": rules.fraction_of_seeds(np.where(ok, inside, 0.0) >= LEARNED) if ok.any() else empty}


def rank_curve(runs: pd.DataFrame, method: str, goal: str) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, accuracy (seeds, ranks, 2)) of Psi0 + v1 + lam v2 with both vectors truncated to rank r."""
    ranks = sorted({int(c.rsplit("_r", 1)[1]) for c in runs.columns if c.startswith(f"{method}_rank_{goal}_T1_r")})
    acc = np.stack([[runs[f"{method}_rank_{goal}_{t}_r{r}"].to_numpy(float) for t in ("T1", "T2")] for r in ranks])
    return np.array(ranks), np.moveaxis(acc, -1, 0)


def keep_curve(runs: pd.DataFrame, method: str, goal: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept shares of rows, accuracy (seeds, keeps, 2)) with both vectors row-pruned."""
    keeps = sorted({float(c.rsplit("_k", 1)[1]) for c in runs.columns if c.startswith(f"{method}_rows_{goal}_T1_k")})
    acc = np.stack([[runs[f"{method}_rows_{goal}_{t}_k{k:g}"].to_numpy(float) for t in ("T1", "T2")] for k in keeps])
    return np.array(keeps), np.moveaxis(acc, -1, 0)


def _reference(runs: pd.DataFrame, method: str, goal: str) -> np.ndarray:
    """Accuracy (seeds, 2) of the uncompressed merge: lam = 1 (add, irrelevant) or -1 (negate, contradictory)."""
    rel, lam = ("irrelevant", 1.0) if goal == "add" else ("contradictory", -1.0)
    lams, acc = study.curves(runs, method, rel)
    return acc[:, int(np.argmin(np.abs(lams - lam)))]


def corollary_claims(runs: pd.DataFrame, method: str, rank: int, keep: float) -> pd.DataFrame:
    """Corollary 1 (rank `rank`), Corollary 2 (rows `keep`), TIES, DARE and the random control, per goal."""
    out = []
    for goal in ("add", "neg"):
        ref = _reference(runs, method, "add" if goal == "add" else "negate")
        ranks, racc = rank_curve(runs, method, goal)
        keeps, kacc = keep_curve(runs, method, goal)
        cand = {f"rank {rank}": racc[:, list(ranks).index(rank)], f"rows {keep:g}": kacc[:, list(keeps).index(keep)],
                "TIES 0.2": runs[[f"{method}_ties_{goal}_T1", f"{method}_ties_{goal}_T2"]].to_numpy(float),
                "DARE 0.2": runs[[f"{method}_dare_{goal}_T1", f"{method}_dare_{goal}_T2"]].to_numpy(float),
                "random": runs[[f"{method}_random_{goal}_T1", f"{method}_random_{goal}_T2"]].to_numpy(float)}
        for name, acc in cand.items():
            close = (np.abs(acc - ref) <= TOL).all(1)
            v = rules.fraction_of_seeds(close, words=("matches", "differs"))
            out.append({"goal": "addition" if goal == "add" else "negation", "vector": name,
                        "T1": acc[:, 0].mean(), "T2": acc[:, 1].mean(), "T1 full": ref[:, 0].mean(),
                        "T2 full": ref[:, 1].mean(), "verdict": v.word, "seeds": v.detail})
    return pd.DataFrame(out)


def _in_range(lam: float, rng: tuple[float, float] | None) -> bool:
    return rng is not None and rng[0] - 1e-9 <= lam <= rng[1] + 1e-9


def _interval(lo: list[float], hi: list[float]) -> str:
    """The advised ranges of several seeds in words that wrap between words: 'λ ≥ 0.16 … 0.34' (over seeds), 'λ ≤ 0', '−1.4 … −1.3 to 0'."""
    def edge(xs: list[float]) -> str:
        shown = sorted({f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}" for x in (min(xs), max(xs))}, key=float)
        return " … ".join(shown).replace("-", "−")

    finite = [x for x in lo if np.isfinite(x)]
    if all(np.isinf(h) for h in hi):
        return f"λ ≥ {edge(lo)}"
    if not finite:
        return f"λ ≤ {edge(hi)}"
    return f"{edge(finite)} to {edge(hi)}" + (" (or below)" if len(finite) < len(lo) else "")


def advice_claims(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    """`tvlib inspect`'s lambda advice (tvlib.vectors.inspection.lambda_range) tested on the held-out seeds.

    Per relation, goal and seed, the advice is read from a correlation, either the weight-space cosine of
    the two task vectors (what `tvlib inspect` sees in the checkpoints) or the paper's output-space
    alpha-hat (which needs data). It is *right* in a seed when it names a range and some lambda of the grid
    in that range reaches the goal (the thresholds of theorem_claims: both tasks learned, or T1 kept and T2
    forgotten), or when it says no lambda works and no lambda of that sign reaches the goal. The verdict is
    tvlib.rules.fraction_of_seeds; "trivial" when the range holds every lambda of the grid on that side in
    every seed (the advice narrowed nothing). The best lambda (tvlib.rules.best_lambda on each seed's
    curves) is shown beside it, descriptive: the theorems give sufficient ranges, not the optimum.
    """
    from ..vectors.inspection import lambda_range, relation

    out = []
    for rel in study.RELATIONS:
        lams, acc = study.curves(runs, method, rel)
        for goal in ("add", "negate"):
            side = lams > 0 if goal == "add" else lams < 0
            ok = _reached(lams, acc, "+" if goal == "add" else "-", "both" if goal == "add" else "forget")
            best = np.array([lams[rules.best_lambda(lams, a[:, 0], a[:, 1], goal)] for a in acc])
            for source, col in (("weight cosine", "cos"), ("output α̂", "alpha")):
                corr = runs[f"{method}_{col}_{rel}"].to_numpy(float)
                ranges = [lambda_range(float(a), goal) for a in corr]
                inside = np.array([[_in_range(x, r) for x in lams] for r in ranges]) & side
                right = np.array([(ok[s] & inside[s]).any() if r is not None else not ok[s].any()
                                  for s, r in enumerate(ranges)])
                v = rules.fraction_of_seeds(right, words=("right", "wrong"))
                if v.holds and all(r is not None for r in ranges) and (inside == side).all():
                    v = rules.Verdict("trivial", True, f"{v.detail}; range = whole side")
                kinds = sorted({relation(float(a)) for a in corr})
                lo = [r[0] for r in ranges if r is not None]
                hi = [r[1] for r in ranges if r is not None]
                advice = "no λ" if not lo else _interval(lo, hi)
                if lo and len(lo) < len(ranges):
                    advice += f" ({len(ranges) - len(lo)} seeds: no λ)"
                out.append({"relation": rel, "goal": goal, "read from": source, "correlation": corr.mean(),
                            "read as": "/".join(kinds), "advised λ": advice, "best λ": best.mean(),
                            "verdict": v.word, "seeds": v.detail})
    return pd.DataFrame(out)
