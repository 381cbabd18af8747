"""Task arithmetic over grids: fine-tune many tasks from shared bases, evaluate many merged models.

Two batched building blocks, reused by every chapter that merges task vectors:

- `finetune_tasks`: fine-tune K tasks from each of G bases Psi0_g in one SGD run (G*K replicas),
  returning the task vectors dPsi_{g,k} = Psi*_{g,k} - Psi0_g as a `TaskVectors`.
- `evaluate_merged`: evaluate Psi0_g + sum_k lam_k dPsi_{g,k} for a grid of coefficient vectors
  lam on fresh samples of the given tasks (hinge error, accuracy, raw outputs), in memory-bounded
  chunks of replicas.

`arithmetic_sweep` builds the experiment of Theorems 1 and 2 from them:
Psi = Psi0 + dPsi_T1 + lam dPsi_T2 for a grid of task correlations alpha and coefficients lam.

Every function takes a `device` ("cpu", "cuda", "auto", ...): fine-tuning and evaluation run
there; samples are drawn on the CPU and task vectors and results are returned on the CPU, so a
seed gives the same experiment on any device (up to the last bits of the arithmetic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .data import Task, stack_tasks, task_pair
from .evaluation import hinge, output_cosine
from .model import OneLayerTransformer
from .setting import Setting, resolve_device
from .training import History, finetune

__all__ = [
    "TaskVectors",
    "MergedEvaluation",
    "ArithmeticSweep",
    "bases_for_seeds",
    "finetune_tasks",
    "merged_outputs",
    "evaluate_merged",
    "arithmetic_sweep",
]

# activations per evaluation chunk; small chunks are also faster on CPU, where each large
# temporary is a fresh memory map that page-faults on first use
DEFAULT_MAX_BYTES = 2**25


@dataclass(frozen=True)
class TaskVectors:
    """G bases Psi0_g = (W0, V0, a) and K task vectors per base, dPsi_{g,k} = (dW, dV).

    Shapes: W0 (G, d, d), V0 (G, m, d), a (G, m), dW (G, K, d, d), dV (G, K, m, d).
    """

    W0: Tensor
    V0: Tensor
    a: Tensor
    dW: Tensor
    dV: Tensor

    def __post_init__(self) -> None:
        G, d = self.W0.shape[0], self.W0.shape[-1]
        m = self.V0.shape[1]
        K = self.dW.shape[1] if self.dW.ndim == 4 else -1
        expected = {"W0": (G, d, d), "V0": (G, m, d), "a": (G, m), "dW": (G, K, d, d), "dV": (G, K, m, d)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(
                    f"TaskVectors.{name} has shape {tuple(getattr(self, name).shape)}: expected {shape} "
                    f"(G={G} bases, K={K} tasks, d={d}, m={m})"
                )

    @property
    def groups(self) -> int:
        """Number of bases G."""
        return int(self.W0.shape[0])

    @property
    def tasks(self) -> int:
        """Number of task vectors per base K."""
        return int(self.dW.shape[1])

    def take(self, groups: Sequence[int] | Tensor, tasks: Sequence[Sequence[int]] | Tensor) -> "TaskVectors":
        """New groups: base groups[i] with its task vectors tasks[i] (a (G', K') index array)."""
        gi = torch.as_tensor(groups, dtype=torch.long).reshape(-1)
        ti = torch.as_tensor(tasks, dtype=torch.long)
        if ti.ndim != 2 or ti.shape[0] != gi.numel():
            raise ValueError(
                f"tasks has shape {tuple(ti.shape)}: expected ({gi.numel()}, K'), one row of task indices per group"
            )
        if gi.numel() and (gi.min() < 0 or gi.max() >= self.groups or ti.min() < 0 or ti.max() >= self.tasks):
            raise ValueError(f"index out of range: expected groups in [0, {self.groups}) and tasks in [0, {self.tasks})")
        rows = gi[:, None].expand_as(ti)
        return TaskVectors(self.W0[gi], self.V0[gi], self.a[gi], self.dW[rows, ti], self.dV[rows, ti])

    def parts(self) -> "TaskVectors":
        """2K vectors per base: the attention part (dW_k, 0) of every task vector, then its value part (0, dV_k)."""
        zW, zV = torch.zeros_like(self.dW), torch.zeros_like(self.dV)
        return TaskVectors(
            self.W0, self.V0, self.a, torch.cat([self.dW, zW], 1), torch.cat([zV, self.dV], 1)
        )

    def finetuned(self) -> OneLayerTransformer:
        """The G*K fine-tuned models Psi0_g + dPsi_{g,k}, replica g*K + k."""
        K = self.tasks
        W = self.W0.repeat_interleave(K, 0) + self.dW.flatten(0, 1)
        V = self.V0.repeat_interleave(K, 0) + self.dV.flatten(0, 1)
        return OneLayerTransformer.from_weights(W, V, self.a.repeat_interleave(K, 0))

    def merged(self, coefficients: Tensor) -> OneLayerTransformer:
        """Psi0_g + sum_k lam_{c,k} dPsi_{g,k} for every group g and coefficient row c, replica g*C + c."""
        coef = _coefficients(coefficients, self.groups, self.tasks)
        C = coef.shape[1]
        W = self.W0[:, None] + torch.einsum("gck,gkij->gcij", coef, self.dW)
        V = self.V0[:, None] + torch.einsum("gck,gkij->gcij", coef, self.dV)
        return OneLayerTransformer.from_weights(W.flatten(0, 1), V.flatten(0, 1), self.a.repeat_interleave(C, 0))


@dataclass(frozen=True)
class MergedEvaluation:
    """Hinge error and accuracy (G, C, E) of G*C merged models on E tasks, and the raw outputs (G, C, E, n)."""

    error: Tensor
    accuracy: Tensor
    outputs: Tensor
    y: Tensor  # labels (G, E, n) of the evaluation samples


def _coefficients(coefficients: Tensor | Sequence, G: int, K: int) -> Tensor:
    coef = torch.as_tensor(coefficients, dtype=torch.float32)
    if coef.ndim == 2:
        coef = coef.unsqueeze(0).expand(G, -1, -1)
    if coef.ndim != 3 or coef.shape[0] != G or coef.shape[2] != K:
        raise ValueError(
            f"coefficients have shape {tuple(coef.shape)}: expected (C, K={K}) shared by all groups "
            f"or (G={G}, C, K={K}) per group"
        )
    if not torch.isfinite(coef).all():
        raise ValueError("coefficients contain NaN or infinity: expected finite numbers")
    return coef


def bases_for_seeds(setting: Setting, seeds: Sequence[int]) -> OneLayerTransformer:
    """One replica per seed, replica i equal to OneLayerTransformer(**setting.model(), seed=seeds[i])."""
    if len(seeds) == 0:
        raise ValueError("seeds is empty: expected at least one seed")
    models = [OneLayerTransformer(**setting.model(), seed=int(s)) for s in seeds]
    return OneLayerTransformer.from_weights(
        torch.cat([b.W.detach() for b in models]),
        torch.cat([b.V.detach() for b in models]),
        torch.cat([b.a for b in models]),
    )


def _replica_seeds(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(0, 2**62, (n,), generator=generator).tolist()


def finetune_tasks(
    bases: OneLayerTransformer,
    tasks: Sequence[Sequence[Task]],
    *,
    lr: float,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
    batched: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[TaskVectors, History]:
    """Fine-tune tasks[g][k] from base replica g for all g, k; return the task vectors and the SGD history.

    `bases` has G replicas (merged form) and `tasks` G rows of K single tasks. batched=True runs all
    G*K fine-tunings as one batched SGD run (one sample stream from `generator`); batched=False runs
    them one after another, each with its own stream seeded from `generator` (same distribution,
    different samples). History columns are ordered g*K + k.
    """
    if bases.factored:
        raise ValueError("bases is a factored model: expected the merged (W, V) form, e.g. bases.to_merged()")
    G = bases.replicas
    if len(tasks) != G:
        raise ValueError(f"tasks has {len(tasks)} rows but bases has {G} replicas: expected one row of tasks per base")
    K = len(tasks[0]) if G else 0
    if K == 0 or any(len(row) != K for row in tasks):
        raise ValueError(f"tasks rows have lengths {[len(r) for r in tasks]}: expected the same K >= 1 tasks per base")
    flat = [t for row in tasks for t in row]
    device = resolve_device(device)
    if batched:
        tuned, history = finetune(
            bases.replicate(K).to(device), stack_tasks(flat), lr=lr, batch_size=batch_size, steps=steps,
            generator=generator,
        )
        W, V = tuned.W.detach().cpu(), tuned.V.detach().cpu()
    else:
        Ws, Vs, losses, accs = [], [], [], []
        for i, seed in enumerate(_replica_seeds(generator, G * K)):
            one, hist = finetune(
                bases.select(i // K).to(device), flat[i], lr=lr, batch_size=batch_size, steps=steps,
                generator=torch.Generator().manual_seed(seed),
            )
            Ws.append(one.W.detach().cpu())
            Vs.append(one.V.detach().cpu())
            losses.append(hist.loss)
            accs.append(hist.accuracy)
        W, V = torch.cat(Ws), torch.cat(Vs)
        history = History(loss=torch.cat(losses, 1), accuracy=torch.cat(accs, 1))
    W0, V0 = bases.W.detach().cpu(), bases.V.detach().cpu()
    d, m = bases.d, bases.m
    vectors = TaskVectors(
        W0=W0.clone(),
        V0=V0.clone(),
        a=bases.a.cpu().clone(),
        dW=W.view(G, K, d, d) - W0[:, None],
        dV=V.view(G, K, m, d) - V0[:, None],
    )
    return vectors, history


def _bytes_per_replica(n: int, P: int, d: int, m: int) -> int:
    # float32 activations kept for one forward pass: inputs, mixed tokens, scores and attention,
    # pre-activations and ReLU outputs, with a factor 2 for temporaries
    return 4 * 2 * n * P * (2 * d + 2 * P + 2 * m)


@torch.no_grad()
def merged_outputs(
    vectors: TaskVectors,
    coefficients: Tensor | Sequence,
    X: Tensor,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    batched: bool = True,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Outputs (G, C, n) of Psi0_g + sum_k lam_{c,k} dPsi_{g,k} on group g's inputs X[g] ((G, n, P, d) or shared (n, P, d)).

    Evaluated on `device` in chunks of replicas whose activations stay below about `max_bytes`;
    batched=False evaluates one merged model at a time (same numbers up to rounding). Returns CPU outputs.
    """
    G, K = vectors.groups, vectors.tasks
    coef = _coefficients(coefficients, G, K)
    C = coef.shape[1]
    d, m = vectors.W0.shape[-1], vectors.V0.shape[1]
    if X.ndim == 3:
        X = X.unsqueeze(0).expand(G, *X.shape)
    if X.ndim != 4 or X.shape[0] != G or X.shape[-1] != d:
        raise ValueError(f"X has shape {tuple(X.shape)}: expected (n, P, d) or (G={G}, n, P, d) with d={d}")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes}: expected a positive number of bytes")
    n, P = X.shape[1], X.shape[2]
    device = resolve_device(device)
    chunk = 1 if not batched else max(1, int(max_bytes // _bytes_per_replica(n, P, d, m)))
    X = X.to(device)
    out = torch.empty(G * C, n)
    for start in range(0, G * C, chunk):
        r = torch.arange(start, min(start + chunk, G * C))
        g, c = r // C, r % C
        lam = coef[g, c].to(device)  # (R, K)
        W = vectors.W0[g].to(device) + torch.einsum("rk,rkij->rij", lam, vectors.dW[g].to(device))
        V = vectors.V0[g].to(device) + torch.einsum("rk,rkij->rij", lam, vectors.dV[g].to(device))
        model = OneLayerTransformer.from_weights(W, V, vectors.a[g].to(device))
        out[r] = model(X[g.to(device)]).cpu()
    return out.view(G, C, n)


def evaluate_merged(
    vectors: TaskVectors,
    coefficients: Tensor | Sequence,
    tasks: Sequence[Sequence[Task]],
    *,
    n: int,
    generator: torch.Generator,
    max_bytes: int = DEFAULT_MAX_BYTES,
    batched: bool = True,
    device: str | torch.device = "cpu",
) -> MergedEvaluation:
    """Hinge error and accuracy of Psi0_g + sum_k lam_{c,k} dPsi_{g,k} on n fresh samples of each tasks[g][e].

    The same samples of tasks[g][e] serve every coefficient row c, so results are smooth in lam.
    `tasks` has G rows of E single tasks; a sign of exactly 0 counts as wrong (as in evaluate).
    """
    G = vectors.groups
    if len(tasks) != G:
        raise ValueError(f"tasks has {len(tasks)} rows but there are {G} groups: expected one row of tasks per group")
    E = len(tasks[0]) if G else 0
    if E == 0 or any(len(row) != E for row in tasks):
        raise ValueError(f"tasks rows have lengths {[len(r) for r in tasks]}: expected the same E >= 1 tasks per group")
    if n < 1:
        raise ValueError(f"n={n} evaluation samples: expected n >= 1")
    X, y = stack_tasks([t for row in tasks for t in row]).sample(n, generator)  # (G*E, n, P, d), (G*E, n)
    X = X.view(G, E * n, *X.shape[2:])
    y = y.view(G, E, n)
    out = merged_outputs(vectors, coefficients, X, max_bytes=max_bytes, batched=batched, device=device)
    out = out.view(G, -1, E, n)
    yy = y[:, None]
    return MergedEvaluation(
        error=hinge(out, yy).mean(-1),
        accuracy=(torch.sign(out) == yy).float().mean(-1),
        outputs=out,
        y=y,
    )


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
    vectors: TaskVectors  # groups = seeds; task 0 = T1, task 1 + i = T2 for alphas[i]
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
    vectors: TaskVectors,
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

__all__ += ["reevaluate_sweep", "OutOfDomainSweep", "out_of_domain_sweep", "evaluate_out_of_domain"]


def _first_seen(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def reevaluate_sweep(
    sweep: ArithmeticSweep,
    vectors: TaskVectors,
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
    vectors: TaskVectors
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
    vectors: TaskVectors,
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
