"""The toy-model experiments of Theorems 1-3: grids of task correlations, coefficients and seeds.

`arithmetic_sweep`: Psi = Psi0 + dPsi_T1 + lam dPsi_T2 over task correlations alpha and coefficients
lam (Theorems 1 and 2); `out_of_domain_sweep` / `evaluate_out_of_domain`: Psi0 + lam1 dPsi_T1 +
lam2 dPsi_T2 on out-of-domain targets T' (Theorem 3); `reevaluate_sweep`: the same grids with
modified task vectors (Corollaries 1 and 2). Built from the batched blocks of tvlib.toy.grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..metrics import output_cosine
from ..vectors.device import resolve_device
from .data import Task, task_pair
from .grid import (
    DEFAULT_MAX_BYTES,
    VectorGrid,
    bases_for_seeds,
    evaluate_merged,
    finetune_tasks,
)
from .setting import Setting
from .training import History

__all__ = [
    "ArithmeticSweep",
    "arithmetic_sweep",
    "reevaluate_sweep",
    "OutOfDomainSweep",
    "out_of_domain_sweep",
    "evaluate_out_of_domain",
]


@dataclass(frozen=True)
class ArithmeticSweep:
    """Results of Psi0 + dPsi_T1 + lam dPsi_T2 over alphas, lams and seeds.

    curves: one row per (alpha, seed, lam, task) with the merged model's hinge error and accuracy.
    references: one row per (alpha, seed, model, task) for model in {"base" (Psi0), "T1" (Psi*_T1),
    "T2" (Psi*_T2)} on the same evaluation samples.
    alpha_hat: one row per (alpha, seed): the cosine of the outputs of Psi*_T1 and Psi*_T2 on the
    evaluation inputs of both tasks (n of T1 and n of T2).
    """

    setting: Setting
    curves: pd.DataFrame
    references: pd.DataFrame
    alpha_hat: pd.DataFrame
    vectors: VectorGrid  # groups = seeds; task 0 = T1, task 1 + i = T2 for alphas[i]
    history: History


def _check_grid(name: str, values: Sequence[float], lo: float = -math.inf, hi: float = math.inf) -> list[float]:
    vals = [float(v) + 0.0 for v in np.asarray(values, dtype=float).reshape(-1)]  # + 0.0: no -0.0
    if not vals:
        raise ValueError(f"{name} is empty: expected at least one value")
    if not all(math.isfinite(v) and lo <= v <= hi for v in vals):
        raise ValueError(f"{name}={vals}: expected finite values in [{lo}, {hi}]")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{name}={vals} has repeated values: expected distinct values")
    return vals


def arithmetic_sweep(
    setting: Setting,
    alphas: Sequence[float],
    lams: Sequence[float],
    seeds: Sequence[int],
    *,
    n_eval: int = 1000,
    sample_seed: int = 0,
    batched: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device = "cpu",
) -> ArithmeticSweep:
    """Fine-tune T1 and T2(alpha) from Psi0(seed), then evaluate Psi0 + dPsi_T1 + lam dPsi_T2 on both tasks.

    Per seed: one Psi0 = OneLayerTransformer(**setting.model(), seed=seed) and the task pairs
    task_pair(alpha, seed=seed); their T1 does not depend on alpha, so T1 is fine-tuned once per seed
    and shared by all alphas. All fine-tunings run in one batched SGD call (seeds x (1 + alphas)
    replicas); sample streams come from `sample_seed`. Each (alpha, seed) is evaluated on n_eval
    fresh samples per task, the same for every lam. batched=False does the same as plain loops.
    """
    alphas = _check_grid("alphas", alphas, -1.0, 1.0)
    lams = _check_grid("lams", lams)
    seeds = [int(s) for s in _check_grid("seeds", seeds)]
    if n_eval < 1:
        raise ValueError(f"n_eval={n_eval}: expected at least one evaluation sample per task")
    device = resolve_device(device)
    pairs = {(s, a): task_pair(a, **setting.data(), seed=s) for s in seeds for a in alphas}
    task_rows = [[pairs[s, alphas[0]][0]] + [pairs[s, a][1] for a in alphas] for s in seeds]
    vectors, history = finetune_tasks(
        bases_for_seeds(setting, seeds),
        task_rows,
        **setting.training(),
        generator=torch.Generator().manual_seed(sample_seed),
        batched=batched,
        device=device,
    )
    return _evaluate_pairs(
        setting, vectors, history, pairs, alphas, lams, seeds,
        n_eval=n_eval, sample_seed=sample_seed, batched=batched, max_bytes=max_bytes, device=device,
    )


def _evaluate_pairs(
    setting: Setting,
    vectors: VectorGrid,
    history: History,
    pairs: dict[tuple[int, float], tuple[Task, Task]],
    alphas: list[float],
    lams: list[float],
    seeds: list[int],
    *,
    n_eval: int,
    sample_seed: int,
    batched: bool,
    max_bytes: int,
    device: torch.device,
) -> ArithmeticSweep:
    """The evaluation half of arithmetic_sweep: Psi0 + dPsi_T1 + lam dPsi_T2, Psi0, Psi*_T1, Psi*_T2 on both tasks."""
    A, S, L = len(alphas), len(seeds), len(lams)
    # evaluation groups (seed, alpha), seed-major, each with task vectors (T1, T2(alpha))
    groups = [i for i in range(S) for _ in range(A)]
    pair_index = [[0, 1 + j] for _ in range(S) for j in range(A)]
    per_pair = vectors.take(groups, pair_index)
    refs = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]  # Psi0, Psi*_T1, Psi*_T2
    coef = torch.tensor([(1.0, lam) for lam in lams] + refs)
    eval_tasks = [list(pairs[seeds[i], alphas[j]]) for i in range(S) for j in range(A)]
    ev = evaluate_merged(
        per_pair, coef, eval_tasks, n=n_eval, generator=torch.Generator().manual_seed(sample_seed + 1),
        max_bytes=max_bytes, batched=batched, device=device,
    )
    err = ev.error.view(S, A, L + 3, 2).numpy()
    acc = ev.accuracy.view(S, A, L + 3, 2).numpy()
    task_names = ["T1", "T2"]
    curves = pd.DataFrame(
        [
            (alphas[j], seeds[i], lams[c], task_names[e], float(err[i, j, c, e]), float(acc[i, j, c, e]))
            for j in range(A) for i in range(S) for c in range(L) for e in range(2)
        ],
        columns=["alpha", "seed", "lam", "task", "error", "accuracy"],
    )
    ref_names = ["base", "T1", "T2"]
    references = pd.DataFrame(
        [
            (alphas[j], seeds[i], ref_names[r], task_names[e], float(err[i, j, L + r, e]), float(acc[i, j, L + r, e]))
            for j in range(A) for i in range(S) for r in range(3) for e in range(2)
        ],
        columns=["alpha", "seed", "model", "task", "error", "accuracy"],
    )
    f1 = ev.outputs[:, L + 1].flatten(1)  # Psi*_T1 on the inputs of T1 and T2: (G, 2n)
    f2 = ev.outputs[:, L + 2].flatten(1)
    cos = output_cosine(f1, f2).view(S, A).numpy()
    alpha_hat = pd.DataFrame(
        [(alphas[j], seeds[i], float(cos[i, j])) for j in range(A) for i in range(S)],
        columns=["alpha", "seed", "alpha_hat"],
    )
    return ArithmeticSweep(setting, curves, references, alpha_hat, vectors, history)


# ---------------------------------------------------------------- re-evaluation and out-of-domain (Theorem 3)

def _first_seen(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def reevaluate_sweep(
    sweep: ArithmeticSweep,
    vectors: VectorGrid,
    *,
    n_eval: int = 1000,
    sample_seed: int = 0,
    batched: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device = "cpu",
) -> ArithmeticSweep:
    """The sweep's curves, references and alpha-hat recomputed with other task vectors (e.g. low-rank or pruned ones).

    `vectors` has the layout of sweep.vectors (groups = seeds; task 0 = T1, task 1 + i = T2(alphas[i])).
    With the n_eval and sample_seed the sweep was run with, the evaluation samples are the same ones,
    so the curves compare point by point.
    """
    alphas = _first_seen(sweep.curves["alpha"])
    seeds = _first_seen(sweep.curves["seed"])
    lams = _first_seen(sweep.curves["lam"])
    A, S = len(alphas), len(seeds)
    if (vectors.groups, vectors.tasks) != (S, 1 + A):
        raise ValueError(
            f"vectors has {vectors.groups} groups of {vectors.tasks} tasks: expected {S} (seeds) of {1 + A} (T1 and one T2 per alpha)"
        )
    if n_eval < 1:
        raise ValueError(f"n_eval={n_eval}: expected at least one evaluation sample per task")
    setting = sweep.setting
    pairs = {(s, a): task_pair(a, **setting.data(), seed=s) for s in seeds for a in alphas}
    return _evaluate_pairs(
        setting, vectors, sweep.history, pairs, alphas, lams, seeds,
        n_eval=n_eval, sample_seed=sample_seed, batched=batched, max_bytes=max_bytes, device=resolve_device(device),
    )


@dataclass(frozen=True)
class OutOfDomainSweep:
    """Psi0 + lam1 dPsi_T1 + lam2 dPsi_T2 on targets T'(gamma) over a (lam1, lam2) grid (Theorem 3).

    error, accuracy: (S, J, L1, L2) hinge error and accuracy on T'(gammas[j]) for seeds[i].
    references: one row per (gamma index j, seed, model) on T'(gammas[j]) for model in {"base" (Psi0),
    "T1" (Psi*_T1), "T2" (Psi*_T2), "target" (fine-tuned on T' directly)}.
    vectors: groups = seeds; task 0 = T1, task 1 = T2, task 2 + j = T'(gammas[j]).
    """

    setting: Setting
    gammas: list[tuple[float, float]]
    lams1: list[float]
    lams2: list[float]
    seeds: list[int]
    error: np.ndarray
    accuracy: np.ndarray
    references: pd.DataFrame
    vectors: VectorGrid
    history: History | None


def _check_gammas(gammas: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    out = []
    for gm in gammas:
        pair = tuple(float(x) for x in gm)
        if len(pair) != 2 or not all(math.isfinite(x) for x in pair) or pair[0] ** 2 + pair[1] ** 2 > 1 + 1e-9:
            raise ValueError(f"gamma={gm}: expected two finite numbers with gamma1^2 + gamma2^2 <= 1")
        out.append(pair)
    if not out:
        raise ValueError("gammas is empty: expected at least one (gamma1, gamma2)")
    return out


def evaluate_out_of_domain(
    setting: Setting,
    vectors: VectorGrid,
    gammas: Sequence[Sequence[float]],
    lams1: Sequence[float],
    lams2: Sequence[float],
    seeds: Sequence[int],
    *,
    n_eval: int = 500,
    sample_seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    history: History | None = None,
    device: str | torch.device = "cpu",
) -> OutOfDomainSweep:
    """Hinge error and accuracy on T'(gamma) of Psi0 + lam1 dPsi_T1 + lam2 dPsi_T2 for every grid point, gamma and seed.

    `vectors` has the layout of out_of_domain_sweep's (task 0 = T1, 1 = T2, 2 + j = T'(gammas[j])); the
    same n_eval and sample_seed give the same evaluation samples whatever the vectors.
    """
    from .data import out_of_domain_tasks

    gammas = _check_gammas(gammas)
    lams1, lams2 = _check_grid("lams1", lams1), _check_grid("lams2", lams2)
    seeds = [int(s) for s in _check_grid("seeds", seeds)]
    S, J, L1, L2 = len(seeds), len(gammas), len(lams1), len(lams2)
    if (vectors.groups, vectors.tasks) != (S, 2 + J):
        raise ValueError(
            f"vectors has {vectors.groups} groups of {vectors.tasks} tasks: expected {S} (seeds) of {2 + J} (T1, T2, one T' per gamma)"
        )
    if n_eval < 1:
        raise ValueError(f"n_eval={n_eval}: expected at least one evaluation sample")
    targets = {(s, j): out_of_domain_tasks(gm, **setting.data(), seed=s)[1] for s in seeds for j, gm in enumerate(gammas)}
    per_group = vectors.take([i for i in range(S) for _ in range(J)], [[0, 1, 2 + j] for _ in range(S) for j in range(J)])
    refs = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]  # Psi0, Psi*_T1, Psi*_T2, Psi*_T'
    coef = torch.tensor([(a, b, 0.0) for a in lams1 for b in lams2] + refs)
    ev = evaluate_merged(
        per_group, coef, [[targets[s, j]] for s in seeds for j in range(J)], n=n_eval,
        generator=torch.Generator().manual_seed(sample_seed + 1), max_bytes=max_bytes, device=device,
    )
    err = ev.error[..., 0].view(S, J, -1).numpy()
    acc = ev.accuracy[..., 0].view(S, J, -1).numpy()
    G = L1 * L2
    names = ["base", "T1", "T2", "target"]
    references = pd.DataFrame(
        [(j, *gammas[j], seeds[i], names[r], float(err[i, j, G + r]), float(acc[i, j, G + r]))
         for j in range(J) for i in range(S) for r in range(4)],
        columns=["gamma_index", "gamma1", "gamma2", "seed", "model", "error", "accuracy"],
    )
    return OutOfDomainSweep(
        setting, gammas, lams1, lams2, seeds,
        err[..., :G].reshape(S, J, L1, L2), acc[..., :G].reshape(S, J, L1, L2), references, vectors, history,
    )


def out_of_domain_sweep(
    setting: Setting,
    gammas: Sequence[Sequence[float]],
    lams1: Sequence[float],
    lams2: Sequence[float],
    seeds: Sequence[int],
    *,
    n_eval: int = 500,
    sample_seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device = "cpu",
) -> OutOfDomainSweep:
    """Fine-tune T1, T2 and every T'(gamma) from Psi0(seed) in one batched run, then evaluate_out_of_domain.

    Tasks come from out_of_domain_tasks(gamma, seed=seed): T1 and T2 (orthonormal mu1, mu2) are the
    same for every gamma of a seed and are fine-tuned once; each T' is fine-tuned too (the "fine-tune
    on T' directly" reference of the paper's Table 2).
    """
    from .data import out_of_domain_tasks

    gammas = _check_gammas(gammas)
    seeds = [int(s) for s in _check_grid("seeds", seeds)]
    rows = []
    for s in seeds:
        sources, _ = out_of_domain_tasks(gammas[0], **setting.data(), seed=s)
        rows.append(list(sources) + [out_of_domain_tasks(gm, **setting.data(), seed=s)[1] for gm in gammas])
    vectors, history = finetune_tasks(
        bases_for_seeds(setting, seeds), rows, **setting.training(),
        generator=torch.Generator().manual_seed(sample_seed), device=device,
    )
    return evaluate_out_of_domain(
        setting, vectors, gammas, lams1, lams2, seeds,
        n_eval=n_eval, sample_seed=sample_seed, max_bytes=max_bytes, history=history, device=device,
    )
