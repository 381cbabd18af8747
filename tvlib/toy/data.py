"""Tasks of Definition 2: a discriminative pattern, orthonormal irrelevant patterns, P tokens.

A sample of task T is a sequence of P unit tokens drawn from {+mu, -mu, v_1, ..., v_M}.
Its label y = +-1 is the sign carried by the majority of the mu-tokens: y*mu appears with
average fraction delta_star, -y*mu with average fraction delta_hash (always fewer times),
and each irrelevant pattern v_j with fraction (1 - delta_star - delta_hash) / M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "Task",
    "orthonormal_patterns",
    "task_pair",
    "out_of_domain_tasks",
    "stack_tasks",
]


def _check_fractions(delta_star: float, delta_hash: float) -> None:
    if not (0.0 < delta_star <= 1.0) or not (0.0 <= delta_hash < 1.0):
        raise ValueError(
            f"delta_star={delta_star} and delta_hash={delta_hash} must be fractions: "
            "expected 0 < delta_star <= 1 and 0 <= delta_hash < 1"
        )
    if delta_star <= delta_hash:
        raise ValueError(
            f"delta_star={delta_star} must exceed delta_hash={delta_hash}: the label is the "
            "majority sign, so label-relevant tokens must be more frequent than confusion tokens"
        )
    if delta_star + delta_hash > 1.0:
        raise ValueError(
            f"delta_star + delta_hash = {delta_star + delta_hash:.4g} exceeds 1: "
            "they are fractions of the same P tokens"
        )


def orthonormal_patterns(d: int, n: int, generator: torch.Generator) -> Tensor:
    """Return n random orthonormal vectors in R^d as the rows of an (n, d) tensor."""
    if n > d:
        raise ValueError(
            f"cannot draw {n} orthonormal patterns in dimension d={d}: expected d >= {n}"
        )
    g = torch.randn(d, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r))  # unique, uniformly distributed (Haar) frame
    return q.T.contiguous().to(torch.float32)


@dataclass(frozen=True)
class Task:
    """A task of Definition 2; with a leading replica dimension it is a stack of R tasks.

    mu: (d,) or (R, d) discriminative pattern(s); irrelevant: (M, d) or (R, M, d) patterns.
    """

    mu: Tensor
    irrelevant: Tensor
    P: int
    delta_star: float
    delta_hash: float

    def __post_init__(self) -> None:
        _check_fractions(self.delta_star, self.delta_hash)
        if self.P < 1:
            raise ValueError(f"P={self.P} tokens per sample: expected P >= 1")
        if self.mu.shape[-1] != self.irrelevant.shape[-1]:
            raise ValueError(
                f"mu has dimension {self.mu.shape[-1]} but the irrelevant patterns have "
                f"{self.irrelevant.shape[-1]}: expected the same d"
            )
        if self.irrelevant.ndim != self.mu.ndim + 1:
            raise ValueError(
                f"mu has shape {tuple(self.mu.shape)} and irrelevant {tuple(self.irrelevant.shape)}: "
                "expected (d,) with (M, d), or (R, d) with (R, M, d)"
            )

    @property
    def d(self) -> int:
        return int(self.mu.shape[-1])

    @property
    def M(self) -> int:
        return int(self.irrelevant.shape[-2])

    @property
    def replicas(self) -> int | None:
        """Number of stacked tasks, or None for a single task."""
        return None if self.mu.ndim == 1 else int(self.mu.shape[0])

    def basis(self) -> Tensor:
        """An orthonormal basis of R^d as rows: mu, then v_1..v_M, then a completion (single task only)."""
        if self.replicas is not None:
            raise ValueError("basis() needs a single task, not a stack of tasks")
        known = torch.cat([self.mu[None], self.irrelevant]).double()
        evals, evecs = torch.linalg.eigh(torch.eye(self.d, dtype=torch.float64) - known.T @ known)
        rest = evecs[:, evals > 0.5].T  # the orthogonal complement of the patterns
        return torch.cat([known, rest]).float()

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw n labelled sequences: X of shape ([R,] n, P, d) and y of shape ([R,] n) in {-1, +1}.

        Token types are drawn i.i.d. per position with probabilities (delta_star, delta_hash,
        rest/M, ...), conditioned on the sample having more y*mu than -y*mu tokens.
        """
        if n < 1:
            raise ValueError(f"n={n} samples: expected n >= 1")
        R = self.replicas or 1
        types = _draw_types(R * n, self.P, self.M, self.delta_star, self.delta_hash, generator)
        types = types.view(R, n, self.P)
        y = torch.randint(0, 2, (R, n), generator=generator).float() * 2 - 1
        mu = self.mu.reshape(R, 1, self.d)
        irr = self.irrelevant.reshape(R, self.M, self.d)
        # dictionary per replica: row 0 = mu, rows 1..M = irrelevant patterns
        dictionary = torch.cat([mu, irr], dim=1)  # (R, M+1, d)
        index = torch.where(types < 2, 0, types - 1)  # (R, n, P)
        sign = torch.where(types == 0, y[..., None], torch.where(types == 1, -y[..., None], 1.0))
        rows = torch.arange(R).view(R, 1, 1)
        X = dictionary[rows, index] * sign[..., None]
        if self.replicas is None:
            return X[0], y[0]
        return X, y


def _draw_types(
    n: int, P: int, M: int, delta_star: float, delta_hash: float, generator: torch.Generator
) -> Tensor:
    """Token types per position (0: y*mu, 1: -y*mu, 2..M+1: v_j), rows with #0 > #1 only."""
    rest = 1.0 - delta_star - delta_hash
    probs = torch.tensor([delta_star, delta_hash] + [rest / M] * M, dtype=torch.float64)
    out = torch.empty(0, P, dtype=torch.long)
    # rejection sampling; acceptance is high for the usual delta_star > delta_hash, but
    # cap the rounds so a pathological setting fails loudly instead of looping
    for _ in range(1000):
        need = n - out.shape[0]
        if need <= 0:
            break
        draw = torch.multinomial(probs.expand(2 * need + 8, -1), P, replacement=True, generator=generator)
        ok = (draw == 0).sum(1) > (draw == 1).sum(1)
        out = torch.cat([out, draw[ok][:need]])
    else:
        raise RuntimeError(
            f"could not draw samples with more relevant than confusion tokens for "
            f"P={P}, delta_star={delta_star}, delta_hash={delta_hash}: increase P or delta_star"
        )
    return out


def task_pair(
    alpha: float,
    *,
    d: int,
    M: int,
    P: int,
    delta_star: float,
    delta_hash: float,
    seed: int,
) -> tuple[Task, Task]:
    """Two tasks with mu2 = alpha*mu1 + sqrt(1-alpha^2)*mu_perp, sharing M irrelevant patterns."""
    if not -1.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} is a correlation of unit patterns: expected -1 <= alpha <= 1")
    if d < M + 2:
        raise ValueError(
            f"d={d} is too small for a task pair with M={M} irrelevant patterns: "
            f"mu1, mu_perp and the M patterns must be orthonormal, expected d >= M + 2 = {M + 2}"
        )
    basis = orthonormal_patterns(d, M + 2, torch.Generator().manual_seed(seed))
    mu1, mu_perp, irr = basis[0], basis[1], basis[2:]
    mu2 = alpha * mu1 + math.sqrt(max(0.0, 1.0 - alpha * alpha)) * mu_perp
    kw = dict(irrelevant=irr, P=P, delta_star=delta_star, delta_hash=delta_hash)
    return Task(mu=mu1, **kw), Task(mu=mu2, **kw)


def out_of_domain_tasks(
    gammas: Sequence[float],
    *,
    d: int,
    M: int,
    P: int,
    delta_star: float,
    delta_hash: float,
    seed: int,
) -> tuple[list[Task], Task]:
    """K tasks with orthonormal mu_i and a target with mu' = sum gamma_i mu_i + kappa mu'_perp.

    kappa = sqrt(1 - sum gamma_i^2), so mu' is a unit vector; sum gamma_i^2 must not exceed 1.
    """
    K = len(gammas)
    if K < 1:
        raise ValueError("gammas is empty: expected one coefficient per source task")
    g2 = sum(float(g) ** 2 for g in gammas)
    if g2 > 1.0 + 1e-9:
        raise ValueError(
            f"sum of gamma_i^2 = {g2:.4g} exceeds 1: mu' must be a unit vector; "
            "renormalise gammas (e.g. gammas / norm(gammas))"
        )
    if d < M + K + 1:
        raise ValueError(
            f"d={d} is too small for {K} task patterns, mu'_perp and M={M} irrelevant patterns: "
            f"expected d >= M + K + 1 = {M + K + 1}"
        )
    basis = orthonormal_patterns(d, M + K + 1, torch.Generator().manual_seed(seed))
    mus, perp, irr = basis[:K], basis[K], basis[K + 1 :]
    kappa = math.sqrt(max(0.0, 1.0 - g2))
    target_mu = sum(float(g) * mu for g, mu in zip(gammas, mus)) + kappa * perp
    kw = dict(irrelevant=irr, P=P, delta_star=delta_star, delta_hash=delta_hash)
    return [Task(mu=mu, **kw) for mu in mus], Task(mu=target_mu, **kw)


def stack_tasks(tasks: Sequence[Task]) -> Task:
    """Stack single tasks with equal P, delta_star, delta_hash into one task with a replica dimension."""
    if not tasks:
        raise ValueError("no tasks to stack")
    first = tasks[0]
    for i, t in enumerate(tasks):
        if t.replicas is not None:
            raise ValueError(f"tasks[{i}] is already a stack; expected single tasks")
        if (t.P, t.delta_star, t.delta_hash, t.d, t.M) != (
            first.P,
            first.delta_star,
            first.delta_hash,
            first.d,
            first.M,
        ):
            raise ValueError(
                f"tasks[{i}] has (P, delta_star, delta_hash, d, M) = "
                f"{(t.P, t.delta_star, t.delta_hash, t.d, t.M)}, expected those of tasks[0]: "
                f"{(first.P, first.delta_star, first.delta_hash, first.d, first.M)}"
            )
    return Task(
        mu=torch.stack([t.mu for t in tasks]),
        irrelevant=torch.stack([t.irrelevant for t in tasks]),
        P=first.P,
        delta_star=first.delta_star,
        delta_hash=first.delta_hash,
    )
