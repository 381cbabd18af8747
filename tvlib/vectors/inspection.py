"""`tvlib inspect BASE FT1 FT2 ...`: what the paper's theory needs to advise a merge, read from checkpoints.

For the task vectors tau_i = FT_i - BASE it streams the checkpoints tensor by tensor (one tensor of each at
a time) and reports, per layer and over the whole model: the norm of each vector, the cosine of every
pair (the proxy for the paper's task correlation alpha), each matrix's effective rank (exp of the entropy
of its normalised singular values) and its row concentration (the fraction of rows that hold 90 % of
its squared norm: small when a few rows carry the update, the situation of Corollary 2's row pruning).

From the overall cosines it prints the lambda ranges Theorems 1-2 suggest for Psi0 + tau_i + lambda tau_j.
This is guidance under the paper's assumptions, not a guarantee: a one-layer transformer on binary tasks
whose discriminative patterns have correlation alpha, here replaced by the cosine of the task vectors;
beta (the side-effect constant) and the Theta(.) constants are unknown, so the edges are approximate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .checkpoint import open_checkpoint, tied_embeddings
from .recipe import layer_of

__all__ = ["Inspection", "inspect_checkpoints", "lambda_guidance", "lambda_range", "relation"]

IRRELEVANT = 0.05  # |cosine| below this is read as alpha ~ 0 (irrelevant tasks)


@dataclass
class _Acc:
    """Sums over a group of tensors: squared norms, pairwise dot products, rank and row statistics."""

    sq: list[float]
    dots: dict[tuple[int, int], float] = field(default_factory=dict)
    ranks: list[list[float]] = field(default_factory=list)  # per vector: effective ranks of its matrices
    rows: list[list[float]] = field(default_factory=list)  # per vector: row concentrations

    @classmethod
    def new(cls, n: int) -> _Acc:
        return cls([0.0] * n, {(i, j): 0.0 for i in range(n) for j in range(i + 1, n)},
                   [[] for _ in range(n)], [[] for _ in range(n)])

    def cos(self, i: int, j: int) -> float:
        den = math.sqrt(self.sq[i] * self.sq[j])
        return self.dots[(i, j)] / den if den > 0 else float("nan")


@dataclass
class Inspection:
    """What inspect_checkpoints found: names, per-layer and overall statistics."""

    names: list[str]
    layers: dict[str, _Acc]
    total: _Acc

    def cosine(self, i: int, j: int) -> float:
        return self.total.cos(min(i, j), max(i, j))

    def report(self) -> str:
        n = len(self.names)
        lines = ["task vectors tau_i = FT_i - BASE:"]
        lines += [f"  tau_{i}: {name}" for i, name in enumerate(self.names)]
        pairs = list(self.total.dots)
        head = "  layer      " + "".join(f"  |tau_{i}|  " for i in range(n)) + "".join(
            f" cos({i},{j})" for i, j in pairs)
        lines += ["", "per layer (norms and cosines over the layer's tensors):", head]

        def row(label: str, acc: _Acc) -> str:
            return (f"  {label:10s} " + "".join(f"{math.sqrt(s):9.4g}  " for s in acc.sq)
                    + "".join(f"  {acc.cos(i, j):+7.3f}" for i, j in pairs))

        for label, acc in self.layers.items():
            lines.append(row(label, acc))
        lines.append(row("all", self.total))
        lines += ["", "matrices (median over the vector's 2-D tensors):"]
        for i in range(n):
            ranks, rows = self.total.ranks[i], self.total.rows[i]
            rank = f"effective rank {_median(ranks):.3g}" if ranks else "effective rank not computed"
            lines.append(f"  tau_{i}: {rank}; 90 % of the squared norm in {100 * _median(rows):.3g} % of the rows"
                         if rows else f"  tau_{i}: no matrices")
        lines += ["", "lambda ranges suggested by Theorems 1-2 (theory-based guidance; see the assumptions below):"]
        for i, j in pairs:
            for a, b in ((i, j), (j, i)):
                lines += [f"  {g}" for g in lambda_guidance(self.cosine(a, b), a, b)]
        lines += ["", "assumptions: the paper's one-layer transformer on binary tasks; its task correlation alpha is",
                  "read as the cosine of the task vectors (a proxy); beta, the side-effect constant, is unknown but",
                  "small, so each edge is approximate and |lambda| should stay moderate; the Theta(.) constants of",
                  f"Theorem 2 are unknown; |cosine| < {IRRELEVANT} is read as irrelevant tasks (alpha ~ 0)."]
        return "\n".join(lines)


def _median(xs: list[float]) -> float:
    return float(torch.tensor(xs).median()) if xs else float("nan")


def relation(alpha: float) -> str:
    """How the theory reads a task correlation: 'irrelevant' (|alpha| < IRRELEVANT), 'aligned' or 'contradictory'."""
    return "irrelevant" if abs(alpha) < IRRELEVANT else ("aligned" if alpha > 0 else "contradictory")


def lambda_range(alpha: float, goal: str) -> tuple[float, float] | None:
    """The lambda interval Theorems 1-2 suggest for Psi0 + tau_keep + lambda tau_other, beta and Theta(.) taken as 0.

    goal 'add' (learn other, keep keep): [1 - alpha, inf) for alpha >= 0 (1 for irrelevant tasks), None for
    contradictory ones (no lambda learns both); 'negate' (forget other, keep keep): (-inf, 0] for irrelevant
    tasks, [-1/alpha^2, 0] for contradictory ones, None for aligned ones (forgetting also degrades the other).
    """
    if goal not in ("add", "negate"):
        raise ValueError(f"goal={goal!r}: expected 'add' or 'negate'")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha={alpha}: expected a finite correlation")
    kind = relation(alpha)
    if goal == "add":
        return None if kind == "contradictory" else (1.0 - (alpha if kind == "aligned" else 0.0), math.inf)
    if kind == "aligned":
        return None
    return (-math.inf if kind == "irrelevant" else -1.0 / alpha ** 2, 0.0)


def lambda_guidance(alpha: float, keep: int, other: int) -> list[str]:
    """Theorems 1-2 for Psi0 + tau_keep + lambda tau_other, given the cosine alpha of the two vectors (lambda_range in words)."""
    name = f"Psi0 + tau_{keep} + lambda tau_{other} (cos {alpha:+.3f})"
    if not math.isfinite(alpha):
        return [f"{name}: a zero task vector, nothing to advise"]
    kind = relation(alpha)
    add, neg = lambda_range(alpha, "add"), lambda_range(alpha, "negate")
    add_text = ("no lambda learns both tasks" if add is None else
                f"lambda >= {'1 + beta, i.e. about 1' if kind == 'irrelevant' else f'1 - alpha + beta, about {add[0]:.2f}'}"
                " or a little more")
    if neg is None:
        neg_text = "forgetting an aligned task also degrades the other; only for small alpha"
    elif kind == "irrelevant":
        neg_text = "any lambda <= 0 with |lambda| moderate"
    else:
        neg_text = (f"-Theta(1/alpha^2) <= lambda <= ~0, i.e. down to about {neg[0]:.3g} (constant unknown); "
                    "slightly positive lambda only up to poly(eta delta)/|alpha|")
    alpha_sign = {"irrelevant": "alpha ~ 0", "aligned": "alpha > 0", "contradictory": "alpha < 0"}[kind]
    return [f"{name}: {kind} tasks ({alpha_sign})",
            f"    add tau_{other} (Theorem 1): {add_text}",
            f"    forget tau_{other}, keep tau_{keep} (Theorem 2): {neg_text}"]


def _effective_rank(d: torch.Tensor) -> float:
    s = torch.linalg.svdvals(d)
    total = float(s.sum())
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _row_concentration(d: torch.Tensor, share: float = 0.9) -> float:
    sq = d.pow(2).sum(dim=-1).reshape(-1)
    total = float(sq.sum())
    if total <= 0:
        return 0.0
    cum = torch.cumsum(torch.sort(sq, descending=True).values, 0)
    return (int(torch.searchsorted(cum, torch.tensor([share * total], dtype=cum.dtype))[0]) + 1) / sq.numel()


def inspect_checkpoints(base: str | os.PathLike, models: Sequence[str | os.PathLike], *,
                        svd_limit: int = 4096) -> Inspection:
    """Stream the task vectors of `models` over `base` and gather norms, cosines, effective ranks and row
    concentrations per layer and overall (effective ranks of matrices whose smaller side is <= svd_limit)."""
    if len(models) < 1:
        raise ValueError("expected at least one fine-tuned model besides the base")
    base_ck = open_checkpoint(base)
    cks = [open_checkpoint(m) for m in models]
    n = len(cks)
    tie = tied_embeddings(base_ck.config, base_ck.keys())
    layers: dict[str, _Acc] = {}
    total = _Acc.new(n)
    for k, info in base_ck.infos.items():
        if not info.dtype.is_floating_point or (tie and k == tie[1]):
            continue
        for i, ck in enumerate(cks):
            if k not in ck or ck.infos[k].shape != info.shape:
                raise ValueError(f"{k}: {info.shape} in the base, "
                                 f"{ck.infos[k].shape if k in ck else 'missing'} in model {i} ({ck.name})")
        b = base_ck.read(k).double()
        deltas = [ck.read(k).double() - b for ck in cks]
        i_layer = layer_of(k)
        label = f"layer {i_layer}" if i_layer is not None else "other"
        acc = layers.setdefault(label, _Acc.new(n))
        for i, d in enumerate(deltas):
            sq = float(d.pow(2).sum())
            acc.sq[i] += sq
            total.sq[i] += sq
            if d.ndim == 2 and min(d.shape) > 1:
                total.rows[i].append(_row_concentration(d))
                if min(d.shape) <= svd_limit:
                    total.ranks[i].append(_effective_rank(d.float()))
        for i, j in total.dots:
            dot = float((deltas[i] * deltas[j]).sum())
            acc.dots[(i, j)] += dot
            total.dots[(i, j)] += dot
    for ck in (base_ck, *cks):
        ck.close()
    ordered = dict(sorted(layers.items(), key=lambda t: (t[0] == "other", int(t[0].split()[1]) if t[0] != "other" else 0)))
    return Inspection([ck.name for ck in cks], ordered, total)
