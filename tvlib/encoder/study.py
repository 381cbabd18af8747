"""The chapter's run as one row of numbers (`run_row`), the calibration of the task shares, and the
multi-seed table read back (curves, heat maps).

Column names: `<m>_c_<relation>_<T1|T2>_<acc|err>_<lambda>` for the lambda curves and
`<m>_h_<lambda1>_<lambda2>` for the out-of-domain grid (the image chapter's keys, tvlib.images.table,
behind the method m = full or lora); every other number under a plain name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..images import table as tab
from ..toy import fits
from ..vectors.methods import dare, prune_rows, ties_merge
from . import corollaries as cor
from . import experiment as ex
from .params import RELATIONS, PretrainedParams
from .texts import Task, designed_alpha

__all__ = ["METHODS", "FT_TASKS", "run_row", "curves", "heat", "CANDIDATES", "calibration_rows",
           "choose_shares"]

METHODS = ("full", "lora")
#: the fine-tuned tasks of a run: T1, the three T2 and T' (Table 2's T1 and T2 are T1 and the irrelevant T2)
FT_TASKS = ("T1", *RELATIONS, "ood T'")
ENERGY_KS = (1, 4, 16)


def _check_ood(p: PretrainedParams) -> None:
    t = p.tasks()
    if t["ood T1"] != t["T1"] or t["ood T2"] != t["irrelevant"]:
        raise ValueError("ood['T1'] and ood['T2'] must be t1 and t2['irrelevant'] (a run fine-tunes each task once)")


def run_row(p: PretrainedParams, *, keep_vectors: bool = False) -> dict:
    """Every number of one run (seed p.seed) as a flat dict; with keep_vectors the run and its vectors too (key '_run')."""
    _check_ood(p)
    row: dict = {"seed": p.seed}
    kept = {}
    with ex.numerics(p):
        run = ex.setup(p)
        f0 = ex.outputs(run, None, FT_TASKS)
        for name in FT_TASKS:
            row[f"psi0_acc_{_k(name)}"] = ex.accuracy(f0[name], run.y_test(name))
        for m in METHODS:
            v = ex.finetune_tasks(run, FT_TASKS, m)
            kept[m] = v
            f = {n: ex.outputs(run, v[n], FT_TASKS) for n in FT_TASKS}  # every model on every task's sentences
            for n in FT_TASKS:
                row[f"{m}_own_{_k(n)}"] = ex.accuracy(f[n][n], run.y_test(n))
                row[f"{m}_norm_{_k(n)}"] = v[n].norm()
            for rel in RELATIONS:
                row[f"{m}_alpha_{rel}"] = ex.alpha_hat(*ex.pair_outputs(run, f["T1"], f[rel], "T1", rel))
                row[f"{m}_cos_{rel}"] = v["T1"].cosine(v[rel])  # weight-space cosine, descriptive
                cv = ex.lam_curves(run, v["T1"], v[rel], p.lams, ("T1", rel))
                row.update({f"{m}_{k}": x for k, x in tab.curve_columns(rel, p.lams, cv["accuracy"][None],
                                                                        cv["error"][None]).items()})
            tp = "ood T'"  # gamma on T''s own sentences, where Theorem 3 asks for its accuracy
            row[f"{m}_gamma_1"] = ex.alpha_hat(f[tp][tp], f["T1"][tp])
            row[f"{m}_gamma_2"] = ex.alpha_hat(f[tp][tp], f["irrelevant"][tp])
            for n in ("T1", "irrelevant"):
                row[f"{m}_on_target_{_k(n)}"] = ex.accuracy(f[n][tp], run.y_test(tp))
            if m == "full":
                grid = ex.ood_grid(run, v["T1"], v["irrelevant"], p.ood_lams, tp)
                row.update({f"{m}_{k}": x for k, x in tab.heat_columns(p.ood_lams, p.ood_lams, grid).items()})
            _corollaries(p, run, m, v, row)
    if keep_vectors:
        row["_run"], row["_vectors"] = run, kept
    return row


def _k(name: str) -> str:
    return name.replace(" ", "_").replace("'", "p")


def _add_neg(run: ex.Run, v1, v2, lam2: float) -> tuple[float, float]:
    """Accuracy on (T1, T2) of Psi0 + v1 + lam2 v2 (T2 = the irrelevant task for lam2 > 0, contradictory for < 0)."""
    rel = "irrelevant" if lam2 > 0 else "contradictory"
    f = ex.merged_outputs(run, [v1, v2], [1.0, lam2], ("T1", rel))
    return ex.accuracy(f["T1"], run.y_test("T1")), ex.accuracy(f[rel], run.y_test(rel))


def _corollaries(p: PretrainedParams, run: ex.Run, m: str, v: Mapping, row: dict) -> None:
    """Corollary 1 (rank-r truncation, energy), Corollary 2 (row pruning, row mass), TIES/DARE and the random control."""
    pairs = {"add": ("irrelevant", 1.0), "neg": ("contradictory", -1.0)}
    for kind in ("attention", "mlp"):
        for k, e in cor.energy(v["T1"], kind, ENERGY_KS).items():
            row[f"{m}_energy_{kind}_k{k}"] = e
        for share in (0.5, 0.9):
            row[f"{m}_rowmass_{kind}_{int(share * 100)}"] = cor.row_mass(v["T1"], kind, share)
    for goal, (rel, lam) in pairs.items():
        for r in p.ranks:
            a1, a2 = _add_neg(run, v["T1"].low_rank(r), v[rel].low_rank(r), lam)
            row[f"{m}_rank_{goal}_T1_r{r}"], row[f"{m}_rank_{goal}_T2_r{r}"] = a1, a2
        for keep in p.keeps:
            a1, a2 = _add_neg(run, prune_rows(v["T1"], keep=keep), prune_rows(v[rel], keep=keep), lam)
            row[f"{m}_rows_{goal}_T1_k{keep:g}"], row[f"{m}_rows_{goal}_T2_k{keep:g}"] = a1, a2
        merged = ties_merge([v["T1"], v[rel]], density=0.2, weights=[1.0, lam])
        f = ex.merged_outputs(run, [merged], [1.0], ("T1", rel))
        row[f"{m}_ties_{goal}_T1"] = ex.accuracy(f["T1"], run.y_test("T1"))
        row[f"{m}_ties_{goal}_T2"] = ex.accuracy(f[rel], run.y_test(rel))
        g = torch.Generator().manual_seed(p.seed)
        a1, a2 = _add_neg(run, dare(v["T1"], 0.8, generator=g), dare(v[rel], 0.8, generator=g), lam)
        row[f"{m}_dare_{goal}_T1"], row[f"{m}_dare_{goal}_T2"] = a1, a2
        a1, a2 = _add_neg(run, v["T1"], cor.random_like(v[rel], p.seed), lam)
        row[f"{m}_random_{goal}_T1"], row[f"{m}_random_{goal}_T2"] = a1, a2


def _strip(table: pd.DataFrame, method: str) -> pd.DataFrame:
    pre = f"{method}_"
    return table[[c for c in table.columns if c.startswith(pre)]].rename(columns=lambda c: c[len(pre):])


def curves(table: pd.DataFrame, method: str, relation: str, metric: str = "acc") -> tuple[np.ndarray, np.ndarray]:
    """(lams, values (rows, lams, 2)) of one method's and relation's T1 and T2 curves."""
    return tab.curves(_strip(table, method), relation, metric)


def heat(table: pd.DataFrame, method: str = "full") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lams1, lams2, accuracy on T' (rows, L1, L2)) of one method's out-of-domain grid."""
    return tab.heat(_strip(table, method))


# ---------------------------------------------------------------- calibration

#: candidate tasks (sent, topic, share) per role: what the calibration may choose from
CANDIDATES: dict[str, tuple[tuple[int, int, float], ...]] = {
    "irrelevant": ((0, 1, 1.0),),  # measured, not chosen: the topic rule (Table 2's T2)
    "aligned": ((1, 0, 20 / 24), (1, 0, 22 / 24), (1, 0, 23 / 24)),
    "contradictory": ((-1, 0, 21 / 24), (-1, 0, 22 / 24), (-1, 0, 23 / 24)),
    "T'": ((1, -1, 13 / 24), (1, -1, 14 / 24), (1, -1, 15 / 24), (1, -1, 16 / 24)),
}


def calibration_rows(p: PretrainedParams, seeds: Sequence[int], methods: Sequence[str] = ("full",)) -> pd.DataFrame:
    """alpha-hat of every candidate against T1 (and, for T' candidates, against the topic task), per seed and method.

    One row per (seed, method, role, candidate): alpha (with T1, on the sentences of both tasks; for T'
    candidates gamma_1, on T''s sentences), gamma_2 (T' candidates: with the topic task (0, 1, 1), on
    T''s sentences), the candidate's own test accuracy and its designed alpha (on the same sentences).
    """
    cands = {f"{role} {c}": c for role, cs in CANDIDATES.items() for c in cs}
    rows = []
    for seed in seeds:
        q = p.replace(seed=int(seed))
        with ex.numerics(q):
            run = ex.setup(q)
            from .params import task_of

            run.tasks.update({n: task_of(n, c, q.rule_seed) for n, c in cands.items()})
            for m in methods:
                v = ex.finetune_tasks(run, ["T1", *cands], m)
                f = {n: ex.outputs(run, v[n], ["T1", *cands]) for n in v}
                topic = "irrelevant (0, 1, 1.0)"
                for n, c in cands.items():
                    role = n.split(" ")[0]
                    ood = role == "T'"
                    alpha = (ex.alpha_hat(f[n][n], f["T1"][n]) if ood
                             else ex.alpha_hat(*ex.pair_outputs(run, f["T1"], f[n], "T1", n)))
                    rows.append({"seed": int(seed), "method": m, "role": role, "sent": c[0], "topic": c[1],
                                 "share": c[2], "alpha": alpha,
                                 "gamma_2": ex.alpha_hat(f[n][n], f[topic][n]) if ood else np.nan,
                                 "own_acc": ex.accuracy(f[n][n], run.y_test(n)),
                                 "designed": designed_alpha(run.tasks["T1"], run.tasks[n],
                                                            run.domain(n) if ood else None)})
    return pd.DataFrame(rows)


def choose_shares(cal: pd.DataFrame, paper_alpha: Mapping[str, float], paper_gamma: Sequence[float],
                  method: str = "full") -> dict[str, tuple[int, int, float]]:
    """Per role, the candidate nearest the paper, by one rule fixed before the runs.

    Relations: minimise the mean over calibration seeds of (alpha-hat - paper alpha)^2; T': of
    (gamma_1 - paper gamma_1)^2 + (gamma_2 - paper gamma_2)^2, gamma_1 being its alpha-hat with T1.
    Only the full fine-tuning rows (method) are used.
    """
    rows = cal[cal["method"] == method]
    out = {}
    for role, group in rows.groupby("role"):
        key = ["sent", "topic", "share"]
        if role == "T'":
            score = group.assign(s=(group.alpha - paper_gamma[0]) ** 2 + (group.gamma_2 - paper_gamma[1]) ** 2)
        else:
            score = group.assign(s=(group.alpha - paper_alpha[role]) ** 2)
        best = score.groupby(key).s.mean().idxmin()
        out[role] = (int(best[0]), int(best[1]), round(float(best[2]), 3))
    return out
