"""One interface for every merge method, tensor by tensor: what both the in-memory API
(methods.merge_vectors) and the streaming engine (engine.merge_checkpoints) run.

A Recipe names a method and its options; `merge_tensor` merges one tensor of n task vectors, fed one
delta at a time, so nothing holds more than a few tensors. Methods (each a trim of every task vector,
then a combination):

- task_arithmetic: no trim; sum_i w_i tau_i.
- magnitude: top-k magnitudes (density; scope global or tensor); sum.
- ties: top-k magnitudes; TIES sign election and mean of the agreeing entries (normalize).
- dare: random drop (keep probability density) and rescale; sum.
- dare_ties: random drop and rescale; TIES election and mean.
- rows: keep the fraction density of each matrix's rows by norm (Corollary 2); sum.
- low_rank: best rank-r approximation of each matrix; sum.

and the result is lam * combination. Parameters (weight, density, lam) may vary per tensor: a float, or
a list of (filter, value) pairs where the first filter that is a substring of the key wins (None or
"*" matches every key), as in mergekit's configs.

Top-k scope is explicit: "global" ranks all entries of a task vector together (one threshold per
vector, found exactly in 2 streaming passes by radix select), "tensor" ranks each tensor alone.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .kernels import (
    NORMALIZE,
    ROUNDING,
    KthLargest,
    Scratch,
    TiesSum,
    count_kept,
    dare_mask,
    dare_tensor,
    fraction,
    low_rank_factors,
    row_mask,
    top_mask,
    topk_tensor,
)

__all__ = [
    "ALIASES",
    "MERGE_METHODS",
    "MergeState",
    "Recipe",
    "find_thresholds",
    "merge_tensor",
    "seeded_masks",
    "value_at",
]

Param = float | Sequence[tuple[str | None, float]]

TRIMS = {"task_arithmetic": None, "magnitude": "magnitude", "ties": "magnitude", "dare": "dare",
         "dare_ties": "dare", "rows": "rows", "low_rank": "low_rank"}
MERGE_METHODS = tuple(TRIMS)
ALIASES = {"sum": "task_arithmetic", "linear_task_arithmetic": "task_arithmetic", "topk": "magnitude",
           "dare_linear": "dare", "low-rank": "low_rank"}
RESCALE = ("entry", "l1", "none")
SCOPES = ("global", "tensor")


def value_at(param: Param, key: str, name: str = "parameter") -> float:
    """The value of a per-tensor parameter for `key`: the first (filter, value) whose filter is in the key."""
    if isinstance(param, (int, float)) and not isinstance(param, bool):
        return float(param)
    for flt, value in param:
        if flt is None or flt == "*" or flt in key:
            return float(value)
    raise ValueError(f"{name}: no filter matches tensor {key!r} (add an entry without a filter as the default)")


def _scalar_param(param: Param) -> bool:
    return isinstance(param, (int, float)) and not isinstance(param, bool)


def _check_param(param: Param, name: str, *, frac: bool = False) -> Param:
    if _scalar_param(param):
        pairs = True
    else:
        pairs = isinstance(param, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in param)
    if not pairs:
        raise ValueError(f"{name}={param!r}: expected a number or a list of (filter, value) pairs")
    values = [param] if _scalar_param(param) else [v for _, v in param]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name}={param!r}: expected finite numbers")
        if frac:
            fraction(v, name)
    return param if _scalar_param(param) else tuple((f, float(v)) for f, v in param)


@dataclass(frozen=True)
class Recipe:
    """A merge method and its options for n task vectors (see the module docstring for the methods)."""

    method: str
    weights: Sequence[Param]
    densities: Sequence[Param] | None = None
    lam: Param = 1.0
    normalize: str | None = None  # ties, dare_ties: "count" (default) | "weights" | "none"; others: "none" | "weights"
    scope: str = "global"  # magnitude, ties: "global" | "tensor"
    rescale: str = "entry"  # dare, dare_ties: "entry" | "l1" | "none"
    rounding: str = "nearest"  # k = floor(density n + 1/2) or floor(density n)
    rank: int | None = None  # low_rank
    seed: int = 0  # dare, dare_ties: masks from (seed, vector, key)
    include: Sequence[str] = ("*",)  # glob patterns of the keys merged; others keep the base's value
    exclude: Sequence[str] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        method = ALIASES.get(self.method, self.method)
        if method not in TRIMS:
            raise ValueError(f"method={self.method!r}: expected one of {MERGE_METHODS}")
        object.__setattr__(self, "method", method)
        n = len(self.weights)
        if n == 0:
            raise ValueError("no task vectors: expected at least one weight")
        object.__setattr__(self, "weights", tuple(_check_param(w, f"weights[{i}]") for i, w in enumerate(self.weights)))
        object.__setattr__(self, "lam", _check_param(self.lam, "lambda"))
        if self.trim in ("magnitude", "dare", "rows"):
            if self.densities is None:
                raise ValueError(f"method={method!r} needs a density for every task vector")
            if len(self.densities) != n:
                raise ValueError(f"got {len(self.densities)} densities for {n} task vectors: expected one per vector")
            dens = tuple(_check_param(d, f"densities[{i}]", frac=True) for i, d in enumerate(self.densities))
            object.__setattr__(self, "densities", dens)
        if self.normalize is None:
            object.__setattr__(self, "normalize", "count" if self.combine == "ties" else "none")
        allowed = NORMALIZE if self.combine == "ties" else ("none", "weights")
        if self.normalize not in allowed:
            raise ValueError(f"normalize={self.normalize!r} for {method}: expected one of {allowed}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r}: expected 'global' (rank all entries together) or 'tensor' (each tensor alone)")
        if self.rescale not in RESCALE:
            raise ValueError(f"rescale={self.rescale!r}: expected one of {RESCALE}")
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding={self.rounding!r}: expected one of {ROUNDING}")
        if self.trim == "dare" and any(d == 0 for dens in self.densities for d in
                                       ([dens] if _scalar_param(dens) else [v for _, v in dens])):
            raise ValueError("DARE with density 0 drops everything and cannot rescale: expected density > 0")
        if self.trim == "low_rank" and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank={self.rank!r}: low_rank needs an int rank >= 1")
        if self.is_global and not all(_scalar_param(d) for d in self.densities):
            raise ValueError("a density per tensor (filters) needs scope='tensor': a global top-k has one density per vector")

    @property
    def trim(self) -> str | None:
        return TRIMS[self.method]

    @property
    def combine(self) -> str:
        return "ties" if self.method in ("ties", "dare_ties") else "sum"

    @property
    def elementwise(self) -> bool:
        """True when each entry is merged from the same entry of the inputs alone (given global
        thresholds), so a tensor can be streamed in chunks of its flattening."""
        return self.trim is None or self.is_global

    @property
    def is_global(self) -> bool:
        """True when the method needs global top-k thresholds (extra streaming passes)."""
        return self.trim == "magnitude" and self.scope == "global"

    def selects(self, key: str) -> bool:
        """Whether `key` is merged (matched by include, not by exclude)."""
        return any(fnmatch.fnmatchcase(key, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(key, p) for p in self.exclude)


MaskFn = Callable[[int, str, Tensor, float], Tensor]  # (vector index, key, delta, drop probability) -> keep


def seeded_masks(seed: int) -> MaskFn:
    """DARE keep-masks drawn from a generator seeded by (seed, vector index, key): independent of order."""
    def masks(i: int, key: str, delta: Tensor, p: float) -> Tensor:
        gen = torch.Generator().manual_seed((seed * 1_000_003 + i * 7919 + zlib.crc32(key.encode())) % (2**63))
        return dare_mask(delta.shape, p, gen)
    return masks


@dataclass
class MergeState:
    """What merge_tensor needs beyond one tensor: global thresholds [threshold, room] per vector and DARE masks."""

    thresholds: list[list] | None = None
    masks: MaskFn | None = None
    scratch: Scratch | None = None


def find_thresholds(recipe: Recipe, keys: Sequence[str], numel: dict[str, int],
                    deltas: Callable[[str], Iterable[Tensor]], dtype: torch.dtype = torch.float32,
                    scratch: Scratch | None = None, vectors: int | None = None) -> list[list]:
    """The global top-k threshold and tie room of every vector, by radix-select passes over deltas(key).

    deltas(key) yields the delta of each vector for that key, in order (or, with `vectors` = n, the
    chunks of vector 0, ..., n-1 for each chunk of the key in turn); keys are visited in the same order
    in every pass (and must be in the final merge).
    """
    n_all = sum(numel[k] for k in keys)
    sels = [KthLargest(count_kept(float(d), n_all, recipe.rounding), n_all, dtype) for d in recipe.densities]
    while not all(s.done for s in sels):
        for key in keys:
            for j, d in enumerate(deltas(key)):
                s = sels[j % len(sels)] if vectors else sels[j]
                if not s.done:
                    s.feed(d.abs() if scratch is None else torch.abs(d, out=scratch.take("abs", d.shape, d.dtype)),
                           scratch)
        for s in sels:
            s.end_pass()
    return [[s.threshold, s.room] for s in sels]


def _trim(recipe: Recipe, i: int, key: str, d: Tensor, state: MergeState, inplace: bool = False) -> Tensor:
    trim = recipe.trim
    if trim is None:
        return d
    if trim == "magnitude":
        if recipe.is_global:
            thr, sc = state.thresholds[i], state.scratch
            mag = d.abs() if sc is None else torch.abs(d, out=sc.take("abs", d.shape, d.dtype))
            mask, thr[1] = top_mask(mag, thr[0], thr[1], None if sc is None else sc.take("mask", d.shape, torch.bool))
            return d.mul_(mask) if inplace else d * mask
        return topk_tensor(d, value_at(recipe.densities[i], key, "density"), recipe.rounding, state.scratch, inplace)
    if trim == "dare":
        p = 1.0 - value_at(recipe.densities[i], key, "density")
        keep = state.masks(i, key, d, p)
        return dare_tensor(d, keep, p, recipe.rescale)
    if trim == "rows":
        if d.ndim < 2:
            return d
        return d * row_mask(d, keep=value_at(recipe.densities[i], key, "density")).unsqueeze(-1)
    if trim == "low_rank":
        if d.ndim == 2 and recipe.rank < min(d.shape):
            B, A = low_rank_factors(d, recipe.rank)
            return B @ A
        return d
    raise AssertionError(trim)


def merge_tensor(recipe: Recipe, key: str, deltas: Iterable[Tensor], state: MergeState, *,
                 inplace: bool = False) -> Tensor:
    """lam * the merged delta of one tensor, from the deltas of the n vectors (yielded one at a time).

    inplace=True lets it overwrite the yielded deltas (the streaming engine's fresh tensors).
    """
    ties = acc = None
    total_w = 0.0
    for i, d in enumerate(deltas):
        w = value_at(recipe.weights[i], key, "weight")
        t = _trim(recipe, i, key, d, state, inplace)
        if recipe.combine == "ties":
            if ties is None:
                ties = TiesSum(t, recipe.normalize, state.scratch)
            ties.add(t.mul_(w) if inplace else w * t, w)
        else:
            t = t.mul_(w) if inplace else w * t
            acc = t if acc is None else acc.add_(t)
            total_w += w
        del d, t
    lam = value_at(recipe.lam, key, "lambda")
    if ties is not None:
        return ties.result(lam)
    if recipe.normalize == "weights" and abs(total_w) >= 1e-8:  # mergekit's normalize for task arithmetic
        acc.div_(total_w)
    return acc if lam == 1.0 else acc.mul_(lam)
