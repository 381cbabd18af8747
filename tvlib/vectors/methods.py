"""Merging variants on task vectors: row-norm pruning (Corollary 2), magnitude top-k, TIES, DARE.

Every function takes and returns TaskVector objects, so it works on the toy model and on Hugging Face
state dicts alike. Conventions:
- Rows: a row u_i of a delta is delta[..., i, :] (row i of a Linear weight = output unit i; row i of the
  toy model's V = neuron i). Deltas with more than 2 dims are stacks of matrices over the last two.
- Sizes: a fraction `density` of n entries keeps k = floor(density * n + 1/2) of them; ties at the
  k-th largest magnitude are broken by position (key order, then row-major), so exactly k are kept.
- Scope of top-k: "global" ranks all entries of a task vector together, as the TIES reference code
  does (it flattens the whole model); "tensor" ranks each tensor on its own, as mergekit does.
  Both magnitude_prune and ties_merge default to "global".
- TIES (Yadav et al. 2023): trim each vector to its top-k, elect per entry the sign of the sum of the
  trimmed values, average the entries that agree with it (zeros excluded), scale by lam. Where the
  trimmed values cancel exactly the elected sign is 0 and the merged entry is 0, as in the paper's
  algorithm (the reference code instead falls back to the sign of the majority of entries).
- DARE (Yu et al. 2024): drop each entry with probability p, rescale the kept ones by 1/(1 - p).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor

from .task_vector import TaskVector, _diff, _mismatch

__all__ = [
    "density",
    "prune_rows",
    "magnitude_prune",
    "ties_merge",
    "dare",
    "sparsify",
    "merge_vectors",
    "METHODS",
]

METHODS = ("sum", "rows", "topk", "ties", "dare")


def _fraction(x: object, name: str, *, open_right: bool = False) -> float:
    """x as a float in [0, 1] (or [0, 1) when open_right), else a ValueError naming the parameter."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise ValueError(f"{name}={x!r}: expected a real number in [0, 1{')' if open_right else ']'}")
    v = float(x)
    if v < 0 or v > 1 or (open_right and v == 1):
        raise ValueError(f"{name}={v}: expected a fraction in [0, 1{')' if open_right else ']'}")
    return v


def _count(fraction: float, n: int) -> int:
    """k = floor(fraction * n + 1/2), the number of entries a fraction keeps."""
    return min(n, int(math.floor(fraction * n + 0.5)))


def _like(tv: TaskVector, deltas: dict[str, Tensor]) -> TaskVector:
    return TaskVector(deltas, aliases=tv.aliases, skipped=tv.skipped)


def _top_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of the k largest entries of a 1-D tensor; ties at the threshold go to the earlier index."""
    n = values.numel()
    if k >= n:
        return torch.ones_like(values, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(values, dtype=torch.bool)
    thr = torch.topk(values, k, sorted=False).values.min()
    above = values > thr
    tied = values == thr
    room = k - int(above.sum())
    return above | (tied & (torch.cumsum(tied.long(), 0) <= room))


def density(tv: TaskVector) -> float:
    """Fraction of the task vector's entries that are non-zero."""
    n = tv.numel()
    if n == 0:
        raise ValueError("the task vector has no entries: density is undefined")
    return sum(int(torch.count_nonzero(v)) for v in tv.deltas.values()) / n


def prune_rows(
    tv: TaskVector,
    *,
    keep: float | None = None,
    threshold: float | None = None,
    keys: Sequence[str] | None = None,
) -> TaskVector:
    """Zero the rows u_i with the smallest norms: keep a fraction `keep` of each matrix's rows, or those with ||u_i|| >= threshold.

    keys: the deltas to prune (default: every delta with 2 or more dims); others are returned unchanged.
    """
    if (keep is None) == (threshold is None):
        raise ValueError(f"keep={keep}, threshold={threshold}: expected exactly one of them")
    if keep is not None:
        keep = _fraction(keep, "keep")
    elif isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise ValueError(f"threshold={threshold!r}: expected a row norm >= 0")
    if keys is None:
        keys = [k for k, v in tv.deltas.items() if v.ndim >= 2]
    else:
        keys = list(keys)
        missing = [k for k in keys if k not in tv.deltas]
        if missing:
            raise ValueError(f"keys {missing} are not in the task vector: expected some of {tv.keys()}")
        flat = [k for k in keys if tv.deltas[k].ndim < 2]
        if flat:
            raise ValueError(f"keys {flat} name deltas with fewer than 2 dims: rows need a matrix")
    out = dict(tv.deltas)
    for k in keys:
        d = tv.deltas[k]
        norms = d.norm(dim=-1)  # (..., rows)
        if threshold is not None:
            mask = norms >= threshold
        else:
            rows = norms.shape[-1]
            flat_norms = norms.reshape(-1, rows)
            mask = torch.stack([_top_mask(r, _count(keep, rows)) for r in flat_norms]).view_as(norms)
        out[k] = d * mask.unsqueeze(-1)
    return _like(tv, out)


def magnitude_prune(tv: TaskVector, density: float, *, scope: str = "global") -> TaskVector:
    """Keep the fraction `density` of entries with the largest magnitudes, zero the rest (scope "global" or "tensor")."""
    frac = _fraction(density, "density")
    if scope == "tensor":
        out = {}
        for k, d in tv.deltas.items():
            flat = d.reshape(-1)
            out[k] = (flat * _top_mask(flat.abs(), _count(frac, flat.numel()))).view_as(d)
        return _like(tv, out)
    if scope != "global":
        raise ValueError(f"scope={scope!r}: expected 'global' (rank all entries together) or 'tensor' (each tensor alone)")
    keys = tv.keys()
    if not keys:
        return _like(tv, {})
    device = tv.deltas[keys[0]].device
    flat = torch.cat([tv.deltas[k].reshape(-1).to(device) for k in keys])
    mask = _top_mask(flat.abs(), _count(frac, flat.numel()))
    out, start = {}, 0
    for k in keys:
        d = tv.deltas[k]
        part = mask[start : start + d.numel()].view(d.shape).to(d.device)
        out[k] = d * part
        start += d.numel()
    return _like(tv, out)


def _check_vectors(vectors: Sequence[TaskVector], weights: Sequence[float] | None) -> tuple[list[TaskVector], list[float]]:
    vectors = list(vectors)
    if not vectors:
        raise ValueError("vectors is empty: expected at least one TaskVector")
    for i, v in enumerate(vectors):
        if not isinstance(v, TaskVector):
            raise TypeError(f"vectors[{i}] is a {type(v).__name__}: expected a TaskVector")
        diff = _diff(vectors[0].deltas, v.deltas, ("vectors[0]", f"vectors[{i}]"))
        if diff:
            raise _mismatch(diff, ("vectors[0]", f"vectors[{i}]"))
    if weights is None:
        weights = [1.0] * len(vectors)
    weights = [float(w) for w in weights]
    if len(weights) != len(vectors):
        raise ValueError(f"got {len(weights)} weights for {len(vectors)} vectors: expected one per vector")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights={weights}: expected finite numbers")
    return vectors, weights


def ties_merge(
    vectors: Sequence[TaskVector],
    *,
    density: float = 0.2,
    lam: float = 1.0,
    weights: Sequence[float] | None = None,
    scope: str = "global",
) -> TaskVector:
    """TIES-merging: lam * disjoint mean of the trimmed vectors weights_t * tau_t on the elected signs.

    density: fraction of each vector kept by the trim (the paper's k, default 20%); weights: per-vector
    coefficients applied before the sign election (default 1: the published method; -1 negates a task).
    """
    vectors, weights = _check_vectors(vectors, weights)
    lam = float(lam)
    if not math.isfinite(lam):
        raise ValueError(f"lam={lam}: expected a finite number")
    trimmed = [magnitude_prune(w * v, density, scope=scope) for w, v in zip(weights, vectors)]
    out = {}
    for k in vectors[0].keys():
        t = torch.stack([tv.deltas[k].to(vectors[0].deltas[k].device) for tv in trimmed])  # (n, ...)
        elected = torch.sign(t.sum(0))
        agree = (torch.sign(t) == elected) & (t != 0)
        count = agree.sum(0).clamp(min=1)
        out[k] = lam * (t * agree).sum(0) / count
    return _like(vectors[0], out)


def dare(tv: TaskVector, p: float, *, generator: torch.Generator, rescale: bool = True) -> TaskVector:
    """DARE: drop every entry independently with probability p and rescale the kept ones by 1/(1 - p).

    The Bernoulli draws come from `generator` (on its own device), key by key in the vector's order.
    """
    p = _fraction(p, "p", open_right=rescale)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator is a {type(generator).__name__}: expected a torch.Generator")
    scale = 1.0 / (1.0 - p) if rescale else 1.0
    out = {}
    for k, d in tv.deltas.items():
        keep = torch.rand(d.shape, generator=generator, device=generator.device) >= p
        out[k] = d * keep.to(d.device) * scale
    return _like(tv, out)


def sparsify(
    method: str,
    tv: TaskVector,
    level: float,
    *,
    generator: torch.Generator | None = None,
    row_keys: Sequence[str] | None = None,
    scope: str = "global",
) -> TaskVector:
    """One task vector sparsified by `method` keeping a fraction `level`: "rows" (prune_rows on row_keys),
    "topk" or "ties" (magnitude_prune, TIES's trim), "dare" (p = 1 - level, needs generator), "sum" (unchanged)."""
    level = _fraction(level, "level")
    if method == "sum":
        return tv
    if method == "rows":
        return prune_rows(tv, keep=level, keys=row_keys)
    if method in ("topk", "ties"):
        return magnitude_prune(tv, level, scope=scope)
    if method == "dare":
        if generator is None:
            raise ValueError("method='dare' draws random masks: expected a torch.Generator in generator")
        if level == 0:
            raise ValueError("method='dare' with level=0 drops everything and cannot rescale: expected level > 0")
        return dare(tv, 1.0 - level, generator=generator)
    raise ValueError(f"method={method!r}: expected one of {METHODS}")


def merge_vectors(
    method: str,
    vectors: Sequence[TaskVector],
    lams: Sequence[float],
    *,
    level: float = 1.0,
    generator: torch.Generator | None = None,
    row_keys: Sequence[str] | None = None,
    scope: str = "global",
) -> TaskVector:
    """sum_i lam_i tau_i with every tau_i sparsified by `method`, keeping a fraction `level`.

    method: "sum" (plain task arithmetic, level ignored), "rows" (prune_rows keep=level on row_keys),
    "topk" (magnitude_prune), "dare" (drop p = 1 - level, rescaled; needs generator) or "ties"
    (ties_merge with density=level, weights=lams, lam=1).
    """
    vectors, lams = _check_vectors(vectors, lams)
    if method == "ties":
        return ties_merge(vectors, density=_fraction(level, "level"), weights=lams, scope=scope)
    parts = [sparsify(method, v, level, generator=generator, row_keys=row_keys, scope=scope) for v in vectors]
    return sum(lam * v for lam, v in zip(lams, parts))
