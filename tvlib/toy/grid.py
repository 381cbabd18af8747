"""Batched task vectors of the toy model: fine-tune many tasks from shared bases, evaluate many merged models.

Two building blocks, reused by every toy-model experiment that merges task vectors:

- `finetune_tasks`: fine-tune K tasks from each of G bases Psi0_g in one SGD run (G*K replicas),
  returning the task vectors dPsi_{g,k} = Psi*_{g,k} - Psi0_g as a `VectorGrid`.
- `evaluate_merged`: evaluate Psi0_g + sum_k lam_k dPsi_{g,k} for a grid of coefficient vectors
  lam on fresh samples of the given tasks (hinge error, accuracy, raw outputs), in memory-bounded
  chunks of replicas.

The experiments built from them live in tvlib.toy.sweeps.

Every function takes a `device` ("cpu", "cuda", "auto", ...): fine-tuning and evaluation run
there; samples are drawn on the CPU and task vectors and results are returned on the CPU, so a
seed gives the same experiment on any device (up to the last bits of the arithmetic).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..metrics import hinge
from ..vectors.device import resolve_device
from .data import Task, stack_tasks
from .model import OneLayerTransformer
from .setting import Setting
from .training import History, finetune

__all__ = [
    "VectorGrid",
    "MergedEvaluation",
    "bases_for_seeds",
    "finetune_tasks",
    "merged_outputs",
    "evaluate_merged",
    "DEFAULT_MAX_BYTES",
]

# activations per evaluation chunk; small chunks are also faster on CPU, where each large
# temporary is a fresh memory map that page-faults on first use
DEFAULT_MAX_BYTES = 2**25


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory for the batched tensors instead of mapping fresh pages each time.

    A batched step allocates and frees tensors of several MB; by default glibc serves each from a
    fresh memory map (or trims the heap after it) and every page faults again on first use, which
    costs about a fifth of a sweep's CPU time. Raising the mmap threshold to its maximum (32 MB)
    and the trim threshold to 1 GB keeps such blocks in the heap. It changes where memory comes
    from, not what is computed (results are bit-identical), and applies once per process; returns
    False where the C library is not glibc (nothing is changed there).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) and bool(mallopt(M_TRIM_THRESHOLD, 2**30))


@dataclass(frozen=True)
class VectorGrid:
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
                    f"VectorGrid.{name} has shape {tuple(getattr(self, name).shape)}: expected {shape} "
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

    def take(self, groups: Sequence[int] | Tensor, tasks: Sequence[Sequence[int]] | Tensor) -> "VectorGrid":
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
        return VectorGrid(self.W0[gi], self.V0[gi], self.a[gi], self.dW[rows, ti], self.dV[rows, ti])

    def parts(self) -> "VectorGrid":
        """2K vectors per base: the attention part (dW_k, 0) of every task vector, then its value part (0, dV_k)."""
        zW, zV = torch.zeros_like(self.dW), torch.zeros_like(self.dV)
        return VectorGrid(
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
) -> tuple[VectorGrid, History]:
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
    keep_freed_memory()
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
    vectors = VectorGrid(
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
    vectors: VectorGrid,
    coefficients: Tensor | Sequence,
    X: Tensor,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    batched: bool = True,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Outputs (G, C, n) of Psi0_g + sum_k lam_{c,k} dPsi_{g,k}.

    Inputs X are (G, n, P, d), one set per group, or (n, P, d), shared.

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
    keep_freed_memory()
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
    vectors: VectorGrid,
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
