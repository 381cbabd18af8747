"""Choosing the colored-digit tasks so that their measured relations land near the paper's.

`measure` fine-tunes a family of candidate tasks (r_o, r_e) on several pre-trained Psi0 and
records alpha-hat of every pair of them, per pre-training seed (mean over the fine-tuning seeds).
`choose_relations` and `choose_ood` then pick, by a rule fixed in their docstrings, the T1 and the
three T2 of Table 1 and the triple (T1, T2, T') of Table 2. benchmarks/calibrate_images.py runs the
whole search and writes its table; the chapter reads it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .data import ColorParityTask
from .experiment import finetune, neutral_probe, numerics, pretrain, probe_signs, splits
from .params import ImagesParams

__all__ = ["CANDIDATES", "label", "measure", "alpha_matrix", "choose_relations", "choose_ood"]

#: candidate tasks (r_o, r_e): color independent of parity, symmetric (r_e = 1 - r_o), one-sided
CANDIDATES: tuple[tuple[float, float], ...] = (
    *((r, r) for r in (0.0, 0.5, 1.0)),
    *((r, round(1 - r, 2)) for r in (0.0, 0.05, 0.1, 0.15, 0.2, 0.8, 0.85, 0.9, 0.95, 1.0)),
    (1.0, 0.05), (1.0, 0.1), (0.95, 0.0), (0.9, 0.0), (0.0, 0.95), (0.0, 0.9), (0.05, 1.0), (0.1, 1.0),
)
#: the settings the search may also vary (columns of the table when it does)
KNOBS = ("pre_epochs",)


def label(task: tuple[float, float]) -> str:
    """'r_o/r_e', e.g. '0.85/0.15'."""
    return f"{task[0]:g}/{task[1]:g}"


def measure(p: ImagesParams, pre_seeds: Sequence[int],
            candidates: Sequence[tuple[float, float]] = CANDIDATES) -> pd.DataFrame:
    """alpha-hat of every ordered pair of candidates on the neutral probe, per pre-training seed.

    One row per (pre_seed, a, b) with a != b: alpha (mean over p.seeds of the seed-paired
    alpha-hat); per task a, its accuracy on the neutral probe (how much it reads shape) and on its
    own test images; per pre_seed, the digit accuracy of the pre-trained ViT; and p.pre_epochs.
    """
    rows = []
    with numerics(p):
        train_split, test_split = splits(p)
        probe = neutral_probe(p, test_split)
        parity = 2 * test_split.parity.numpy() - 1
        tasks = {label(c): ColorParityTask(*c) for c in candidates}
        for pre_seed in pre_seeds:
            q = p.replace(pre_seed=int(pre_seed))
            psi0, pre_acc = pretrain(q, train_split, test_split)
            vectors = finetune(q, psi0, tasks, train_split)
            signs = probe_signs(psi0, vectors, probe)
            shape = {a: float((signs[a] == parity).mean()) for a in tasks}
            own = {a: float((probe_signs(psi0, {a: vectors[a]}, t.data(test_split, seed=p.test_seed)[0])[a]
                             == parity).mean()) for a, t in tasks.items()}
            for a, b in itertools.permutations(tasks, 2):
                rows.append({"pre_epochs": p.pre_epochs, "pre_seed": int(pre_seed), "pre_acc": pre_acc, "a": a,
                             "b": b, "alpha": float((signs[a] * signs[b]).mean(-1).mean()),
                             "probe_acc_a": shape[a], "own_acc_a": own[a]})
    return pd.DataFrame(rows)


def alpha_matrix(table: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """{(a, b): alpha per pre-training seed, in the order of the sorted seeds}."""
    seeds = sorted(table["pre_seed"].unique())
    wide = table.pivot_table(index=["a", "b"], columns="pre_seed", values="alpha")[seeds]
    return {key: row.to_numpy() for key, row in wide.iterrows()}


def _r(name: str) -> tuple[float, float]:
    r_o, r_e = name.split("/")
    return float(r_o), float(r_e)


def _settings(table: pd.DataFrame) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """The table split by the knob columns it has: [({knob: value}, rows)]."""
    knobs = [k for k in KNOBS if k in table.columns]
    if not knobs:
        return [({}, table)]
    return [(dict(zip(knobs, key if isinstance(key, tuple) else (key,))), rows)
            for key, rows in table.groupby(knobs if len(knobs) > 1 else knobs[0])]


def choose_relations(table: pd.DataFrame, paper: Mapping[str, float]) -> dict[str, object]:
    """The best of _choose_relations over the settings of the knobs (e.g. pre_epochs) the table holds."""
    found = [{**knobs, **_choose_relations(rows, paper)} for knobs, rows in _settings(table)]
    return min(found, key=lambda f: f["score"])


def choose_ood(table: pd.DataFrame, paper_gamma: Sequence[float], **knobs: object) -> dict[str, object]:
    """_choose_ood on the rows of the given knob settings (e.g. pre_epochs=3), or on the whole table."""
    for k, v in knobs.items():
        table = table[table[k] == v]
    if table.empty:
        raise ValueError(f"no rows with {knobs}: expected settings the table holds")
    return {**knobs, **_choose_ood(table, paper_gamma)}


def _choose_relations(table: pd.DataFrame, paper: Mapping[str, float]) -> dict[str, object]:
    """T1 and the T2 of each relation whose alpha-hat is nearest the paper's, over pre-training seeds.

    Rule: minimise the sum over the three relations of the mean over pre-training seeds of
    (alpha-hat - paper)^2 (so both a biased mean and a large spread count against a choice), over
    T1 with r_o > r_e (red means odd) and T2 in the relation's family: irrelevant r_o = r_e (color
    says nothing about parity), aligned r_o > r_e and T2 != T1, contradictory r_o < r_e.
    Returns the choice, each relation's per-seed alpha-hat and the score.
    """
    mat = alpha_matrix(table)
    names = sorted({a for a, _ in mat})
    family = {"irrelevant": lambda t, t1: _r(t)[0] == _r(t)[1],
              "aligned": lambda t, t1: _r(t)[0] > _r(t)[1] and t != t1,
              "contradictory": lambda t, t1: _r(t)[0] < _r(t)[1]}
    best: dict[str, object] | None = None
    for t1 in (n for n in names if _r(n)[0] > _r(n)[1]):
        pick, score = {}, 0.0
        for rel, ok in family.items():
            cands = [(float(np.mean((mat[t1, t] - paper[rel]) ** 2)), t) for t in names if ok(t, t1)]
            if not cands:
                break
            s, t = min(cands)
            pick[rel], score = t, score + s
        else:
            if best is None or score < best["score"]:
                best = {"t1": t1, "t2": pick, "score": score,
                        "alpha": {rel: mat[t1, t] for rel, t in pick.items()}}
    if best is None:
        raise ValueError("no candidate T1 with r_o > r_e and T2 of every relation: widen the candidates")
    return best


def _choose_ood(table: pd.DataFrame, paper_gamma: Sequence[float]) -> dict[str, object]:
    """The triple (T1, T2, T') whose gamma-hat = (alpha-hat(T', T1), alpha-hat(T', T2)) is nearest the paper's.

    Rule: over triples of distinct candidates with gamma_1 > 0 > gamma_2 in every pre-training seed
    (the paper's signs), minimise the mean over seeds of |gamma-hat - paper_gamma|^2.
    """
    mat = alpha_matrix(table)
    names = sorted({a for a, _ in mat})
    g = np.asarray(paper_gamma, dtype=float)
    best: dict[str, object] | None = None
    for t, t1, t2 in itertools.permutations(names, 3):
        g1, g2 = mat[t, t1], mat[t, t2]
        if not ((g1 > 0).all() and (g2 < 0).all()):
            continue
        score = float(np.mean((g1 - g[0]) ** 2 + (g2 - g[1]) ** 2))
        if best is None or score < best["score"]:
            best = {"T1": t1, "T2": t2, "T'": t, "score": score, "gamma": np.stack([g1, g2])}
    if best is None:
        raise ValueError("no triple has gamma_1 > 0 > gamma_2 in every seed: widen the candidates")
    return best
