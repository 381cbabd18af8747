"""One interface for every merge method, tensor by tensor: what both the in-memory API
(methods.merge_vectors) and the streaming engine (engine.merge_checkpoints) run.

A Recipe names a method (tvlib.vectors.merge_methods: one module per method) and its options;
`merge_tensor` resolves the parameters of one tensor once (Recipe.at) and hands the tensor's inputs to
the method, which calls the kernels: for the trim-and-combine methods (task_arithmetic, magnitude, ties,
dare, dare_ties, rows, low_rank, breadcrumbs, breadcrumbs_ties, della, della_linear) the deltas are fed
one at a time, so nothing holds more than a few tensors, and the result is lam * combination; the
methods of whole tensors (linear, slerp, model_stock) get every input tensor. Parameters (weight, density, lam) may vary per tensor: a float, or
a list of (filter, value) pairs where the first filter that is a substring of the key wins (None or
"*" matches every key), as in mergekit's configs. A value may be a gradient, a tuple of numbers
interpolated over the layers as mergekit does: layer i of L takes t = i / (L - 1) (t = 1 when L = 1),
tensors outside the layers t = 0, and the value at t is read off the piecewise-linear curve through
the numbers spaced evenly on [0, 1]. Recipe.at(key) resolves every parameter of one tensor once.

Top-k scope is explicit: "global" ranks all entries of a task vector together (one threshold per
vector, found exactly in 2 streaming passes by radix select), "tensor" ranks each tensor alone.
"""

from __future__ import annotations

import fnmatch
import math
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import merge_methods
from .merge_methods import TrimCall
from .kernels import (
    NORMALIZE,
    ROUNDING,
    ZERO_SUM,
    KthLargest,
    Scratch,
    TiesSum,
    count_kept,
    dare_mask,
    fraction,
)

__all__ = [
    "ALIASES",
    "MERGE_METHODS",
    "MergeState",
    "Recipe",
    "TensorParams",
    "find_thresholds",
    "layer_of",
    "merge_tensor",
    "merge_tensors",
    "seeded_masks",
    "value_at",
]

Value = float | Sequence[float]  # a number, or a gradient over the layers
Param = Value | Sequence[tuple[str | None, Value]]

MERGE_METHODS = tuple(merge_methods.METHODS)
ALIASES = merge_methods.ALIASES
RESCALE = ("entry", "l1", "none")
SCOPES = ("global", "tensor")
LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks|block)\.(\d+)\.")


def layer_of(key: str) -> int | None:
    """The index of the layer (transformer block) a tensor belongs to, from its name; None outside the layers."""
    m = LAYER.search(key)
    return int(m.group(1)) if m else None


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _gradient(v: object) -> bool:
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(_number(x) for x in v)


def interpolate(values: Sequence[float], t: float) -> float:
    """mergekit's gradient: the value at t in [0, 1] on the piecewise-linear curve through `values`."""
    scaled = t * (len(values) - 1)
    i0 = int(scaled)
    i1 = min(len(values) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * float(values[i0]) + frac * float(values[i1])


def value_at(param: Param, key: str, name: str = "parameter", t: float = 0.0) -> float:
    """The value of a per-tensor parameter for `key`: the first (filter, value) whose filter is in the key;
    a gradient is read at t (the key's position in the layers, Recipe.t)."""
    if _number(param):
        return float(param)
    if _gradient(param):
        return interpolate(param, t)
    for flt, value in param:
        if flt is None or flt == "*" or flt in key:
            return interpolate(value, t) if _gradient(value) else float(value)
    raise ValueError(f"{name}: no filter matches tensor {key!r} (add an entry without a filter as the default)")


def _scalar_param(param: Param) -> bool:
    return _number(param)


def _check_param(param: Param, name: str, *, frac: bool = False) -> Param:
    if _number(param) or _gradient(param):
        entries = [(None, param)]
    elif isinstance(param, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in param):
        entries = list(param)
    else:
        raise ValueError(f"{name}={param!r}: expected a number, a gradient (list of numbers) or a list of "
                         "(filter, value) pairs")
    for _, v in entries:
        for x in (v if _gradient(v) else [v]):
            if not _number(x) or not math.isfinite(x):
                raise ValueError(f"{name}={param!r}: expected finite numbers")
            if frac:
                fraction(x, name)
    if _number(param):
        return param
    if _gradient(param):
        return tuple(float(x) for x in param)
    return tuple((f, tuple(float(x) for x in v) if _gradient(v) else float(v)) for f, v in entries)


@dataclass(frozen=True)
class TensorParams:
    """Every parameter of a recipe resolved for one tensor: what the per-tensor code reads."""

    weights: tuple[float, ...]
    densities: tuple[float, ...] | None
    lam: float
    options: dict = field(default_factory=dict)  # name -> a float per vector (model options) or one float


@dataclass(frozen=True)
class Recipe:
    """A merge method and its options for n task vectors (see the module docstring for the methods)."""

    method: str
    weights: Sequence[Param]
    densities: Sequence[Param] | None = None
    lam: Param = 1.0
    normalize: str | None = None  # ties, dare_ties: "count" (default) | "weights" | "signed_weights" | "none";
    # others: "none" (default) | "weights" | "signed_weights" (both: divide by the sum of the signed weights)
    scope: str = "global"  # magnitude, ties: "global" | "tensor"
    rescale: str | None = None  # dare, dare_ties: "entry" (default) | "l1" | "none"; magnitude, ties: "none" | "l1"
    rounding: str = "nearest"  # k = floor(density n + 1/2), floor(density n) or max(1, floor(density n))
    rank: int | None = None  # low_rank
    seed: int = 0  # dare, dare_ties: masks from (seed, vector, key)
    include: Sequence[str] = ("*",)  # glob patterns of the keys merged; others keep the base's value
    exclude: Sequence[str] = ()
    zero_sum: str = "drop"  # ties, dare_ties: where the weighted sum is exactly 0, "drop" or "plus" (mergekit)
    layers: int | None = None  # the number of layers, for gradient parameters (found from the checkpoint)
    options: dict = field(default_factory=dict)  # the method's other parameters: a list per vector for its
    # model options (breadcrumbs' gamma, della's epsilon), one Param for its shared ones (slerp's t)

    def __post_init__(self) -> None:
        impl = merge_methods.get(self.method)
        object.__setattr__(self, "method", impl.name)
        method = impl.name
        n = len(self.weights)
        if n == 0:
            raise ValueError("no task vectors: expected at least one weight")
        object.__setattr__(self, "weights", tuple(_check_param(w, f"weights[{i}]") for i, w in enumerate(self.weights)))
        object.__setattr__(self, "lam", _check_param(self.lam, "lambda"))
        known = {**impl.model_options, **impl.shared_options}
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ValueError(f"options {unknown} for {method}: expected some of {sorted(known)}")
        opts = {}
        for name, default in known.items():
            value = self.options.get(name, default)
            if name in impl.model_options:  # a list: one Param per vector; anything else: the same for all
                value = list(value) if isinstance(value, list) else [value] * n
                if len(value) != n:
                    raise ValueError(f"{name}: got {len(value)} values for {n} vectors: expected one per vector")
                value = tuple(_check_param(v, f"{name}[{i}]") for i, v in enumerate(value))
            elif not isinstance(value, bool):
                value = _check_param(value, name)
            opts[name] = value
        object.__setattr__(self, "options", opts)
        if impl.densities:
            if self.densities is None:
                raise ValueError(f"method={method!r} needs a density for every task vector")
            if len(self.densities) != n:
                raise ValueError(f"got {len(self.densities)} densities for {n} task vectors: expected one per vector")
            dens = tuple(_check_param(d, f"densities[{i}]", frac=True) for i, d in enumerate(self.densities))
            object.__setattr__(self, "densities", dens)
        if self.normalize is None:
            object.__setattr__(self, "normalize", "count" if self.combine == "ties" else
                               "weights" if method == "linear" else "none")
        allowed = NORMALIZE if self.combine == "ties" else ("none", "weights", "signed_weights")
        if self.normalize not in allowed:
            raise ValueError(f"normalize={self.normalize!r} for {method}: expected one of {allowed}")
        if self.rescale is None:
            object.__setattr__(self, "rescale", "entry" if self.trim in ("dare", "della") else "none")
        if self.zero_sum not in ZERO_SUM:
            raise ValueError(f"zero_sum={self.zero_sum!r}: expected one of {ZERO_SUM}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r}: expected 'global' (rank all entries together) or 'tensor' (each tensor alone)")
        if self.rescale not in RESCALE:
            raise ValueError(f"rescale={self.rescale!r}: expected one of {RESCALE}")
        if self.rescale == "entry" and self.trim not in ("dare", "della"):
            raise ValueError(f"rescale='entry' (1/keep probability per kept entry) is for random drops (dare, della): "
                             f"{method} takes 'l1' or 'none'")
        if self.rescale == "l1" and self.trim not in ("dare", "magnitude", "della", "breadcrumbs"):
            raise ValueError(f"rescale='l1' rescales what a trim drops: {method} drops nothing")
        if self.rescale == "l1" and self.is_global:
            raise ValueError("rescale='l1' rescales each tensor: it needs scope='tensor'")
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding={self.rounding!r}: expected one of {ROUNDING}")
        if self.trim in ("dare", "della") and any(d == 0 for dens in self.densities for d in
                                       ([dens] if _scalar_param(dens) else [v for _, v in dens])):
            raise ValueError("DARE with density 0 drops everything and cannot rescale: expected density > 0")
        if self.trim == "low_rank" and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank={self.rank!r}: low_rank needs an int rank >= 1")
        if self.is_global and not all(_scalar_param(d) for d in self.densities):
            raise ValueError("a density per tensor (filters) needs scope='tensor': a global top-k has one density per vector")

    @property
    def gradients(self) -> bool:
        """True when a parameter is a gradient over the layers (so the number of layers is needed)."""
        params = [*self.weights, *(self.densities or ()), self.lam]
        for name, value in self.options.items():
            if name in self.impl.model_options:
                params += list(value)
            elif not isinstance(value, bool):
                params.append(value)
        return any(_gradient(p) or (not _number(p) and any(_gradient(v) for _, v in p)) for p in params)

    def t(self, key: str) -> float:
        """The key's position in the layers for gradients: i / (L - 1) for layer i of L (1 when L = 1), 0 outside."""
        i = layer_of(key)
        if i is None or not self.gradients:
            return 0.0
        if self.layers is None:
            raise ValueError("gradient parameters need the number of layers (Recipe.layers)")
        return i / (self.layers - 1) if self.layers > 1 else 1.0

    def at(self, key: str) -> TensorParams:
        """Every parameter resolved for the tensor `key` (ValueError naming the key if a filter list has no match)."""
        t = self.t(key)
        weights = tuple(value_at(w, key, f"weights[{i}]", t) for i, w in enumerate(self.weights))
        dens = None if self.densities is None else tuple(
            value_at(d, key, f"densities[{i}]", t) for i, d in enumerate(self.densities))
        if dens is not None:
            for i, d in enumerate(dens):
                fraction(d, f"densities[{i}] at {key}")
        opts = {}
        for name, value in self.options.items():
            if isinstance(value, bool):
                opts[name] = value
            elif name in self.impl.model_options:
                opts[name] = tuple(value_at(v, key, f"{name}[{i}]", t) for i, v in enumerate(value))
            else:
                opts[name] = value_at(value, key, name, t)
        return TensorParams(weights, dens, value_at(self.lam, key, "lambda", t), opts)

    @property
    def impl(self) -> merge_methods.Method:
        """The method's implementation (its module in tvlib.vectors.merge_methods)."""
        return merge_methods.METHODS[self.method]

    @property
    def trim(self) -> str | None:
        """The trim's family: None, "magnitude", "dare", "rows", "low_rank", "breadcrumbs", "della"."""
        return self.impl.kind

    @property
    def combine(self) -> str:
        return self.impl.combine

    @property
    def whole(self) -> bool:
        """True for methods of whole tensors (linear, slerp, model_stock): they see tensors, not deltas."""
        return self.impl.whole

    @property
    def elementwise(self) -> bool:
        """True when each entry is merged from the same entry of the inputs alone (given global
        thresholds), so a tensor can be streamed in chunks of its flattening."""
        return (self.trim is None and not self.whole) or self.is_global or self.tensor_thresholds

    @property
    def in_pieces(self) -> bool:
        """True when the streaming engine can merge a tensor in pieces (with the engine's seeded masks)."""
        impl = self.impl
        whole = self.whole and (impl.pieces(self) if callable(impl.pieces) else impl.pieces)
        return self.elementwise or self.seeded_pieces or whole

    @property
    def seeded_pieces(self) -> bool:
        """True for the random drops (DARE, DELLA): with seeded masks (drawn per block of entries) they merge in
        pieces too (DELLA's of whole rows), an L1 rescale from norms gathered in one pass over the pieces before."""
        return self.impl.keep is not None

    @property
    def tensor_thresholds(self) -> bool:
        """True for a per-tensor top-k (or Breadcrumbs' band) without rescaling: each vector's thresholds in a
        tensor can be found by radix-select passes over pieces of it, and the merge is then elementwise."""
        return self.rescale == "none" and (
            (self.trim == "magnitude" and self.scope == "tensor") or self.trim == "breadcrumbs")

    @property
    def is_global(self) -> bool:
        """True when the method needs global top-k thresholds (extra streaming passes)."""
        return self.trim == "magnitude" and self.scope == "global"

    def selects(self, key: str) -> bool:
        """Whether `key` is merged (matched by include, not by exclude)."""
        return any(fnmatch.fnmatchcase(key, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(key, p) for p in self.exclude)


MaskFn = Callable[[int, str, Tensor, float], Tensor]  # (vector index, key, delta, drop probability) -> keep


MASK_BLOCK = 1 << 20  # entries per independently seeded block of a seeded mask


class seeded_masks:  # noqa: N801 (used as a function: seeded_masks(seed))
    """DARE keep-masks drawn block by block (MASK_BLOCK entries of the tensor's flattening) from generators
    seeded by (seed, vector index, key, block): independent of order, and the same whether a tensor is
    masked whole or in pieces (offset = the piece's first entry)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, i: int, key: str, delta: Tensor, p: float | Tensor, offset: int = 0) -> Tensor:
        n = delta.numel()
        base = self.seed * 1_000_003 + i * 7919 + zlib.crc32(key.encode())
        parts = []
        for b in range(offset // MASK_BLOCK, (offset + n - 1) // MASK_BLOCK + 1 if n else 0):
            gen = torch.Generator().manual_seed((base * 65_537 + b) % (2**63))
            u = torch.rand(MASK_BLOCK, generator=gen)
            lo, hi = max(offset, b * MASK_BLOCK) - b * MASK_BLOCK, min(offset + n, (b + 1) * MASK_BLOCK) - b * MASK_BLOCK
            parts.append(u[lo:hi])
        u = torch.cat(parts) if parts else torch.empty(0)
        p = p.reshape(-1) if isinstance(p, Tensor) else p
        return (u >= p).reshape(delta.shape)


@dataclass
class MergeState:
    """What merge_tensor needs beyond one tensor: global thresholds [threshold, room] per vector and DARE masks."""

    thresholds: list[list] | None = None
    masks: MaskFn | None = None
    scratch: Scratch | None = None
    offset: int | None = None  # the first entry of the piece being merged (None: whole tensors)
    row_len: int | None = None  # the length of a row of the tensor being merged (pieces of whole rows)
    bands: list | None = None  # Breadcrumbs in pieces: per vector the [threshold, room] of its upper and skipped top
    l1: list[tuple[float, float]] | None = None  # per vector: L1 norm of its delta before and after DARE's drop
    kept: dict | None = None  # DELLA in pieces: {vector: keep mask of the whole flattened tensor} from the L1 pass


def find_thresholds(recipe: Recipe, keys: Sequence[str], numel: dict[str, int],
                    deltas: Callable[[str], Iterable[Tensor]], dtype: torch.dtype = torch.float32,
                    scratch: Scratch | None = None, vectors: int | None = None,
                    densities: Sequence[float] | None = None, counts: Sequence[int] | None = None) -> list[list]:
    """The global top-k threshold and tie room of every vector, by radix-select passes over deltas(key).

    deltas(key) yields the delta of each vector for that key, in order (or, with `vectors` = n, the
    chunks of vector 0, ..., n-1 for each chunk of the key in turn); keys are visited in the same order
    in every pass (and must be in the final merge). densities: one per vector (default: the recipe's); for
    one key, Recipe.at(key).densities gives the per-tensor thresholds of a "tensor" scope.
    """
    n_all = sum(numel[k] for k in keys)
    dens = recipe.densities if densities is None else densities
    ks = counts if counts is not None else [count_kept(float(d), n_all, recipe.rounding) for d in dens]
    sels = [KthLargest(k, n_all, dtype) for k in ks]
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


def merge_tensor(recipe: Recipe, key: str, deltas: Iterable[Tensor], state: MergeState, *,
                 inplace: bool = False) -> Tensor:
    """lam * the merged delta of one tensor, from the deltas of the n vectors (yielded one at a time).

    inplace=True lets it overwrite the yielded deltas (the streaming engine's fresh tensors).
    """
    ties = acc = None
    total_w = 0.0
    params = recipe.at(key)
    impl = recipe.impl
    for i, d in enumerate(deltas):
        w = params.weights[i]
        if impl.trim is None:
            t = d
        else:
            opts = {name: params.options[name][i] for name in impl.model_options}
            call = TrimCall(recipe, i, key, None if params.densities is None else params.densities[i], opts, state,
                            inplace)
            t = impl.trim(d, call)
        if recipe.combine == "ties":
            if ties is None:
                ties = TiesSum(t, recipe.normalize, state.scratch, recipe.zero_sum)
            ties.add(t.mul_(w) if inplace else w * t, w)
        else:
            t = t.mul_(w) if inplace else w * t
            acc = t if acc is None else acc.add_(t)
            total_w += w
        del d, t
    lam = params.lam
    if ties is not None:
        return ties.result(lam)
    if recipe.normalize != "none" and abs(total_w) >= 1e-8:  # mergekit's normalize for task arithmetic
        acc.div_(total_w)
    return acc if lam == 1.0 else acc.mul_(lam)


def merge_tensors(recipe: Recipe, key: str, tensors: Sequence[Tensor], base: Tensor | None,
                  stats: list[float] | None = None) -> Tensor:
    """The merged tensor `key` (or a piece of it, given the whole tensor's stats) of a method of whole tensors
    (linear, slerp, model_stock), from the models' tensors and the base's (None for linear)."""
    return recipe.impl.merge(list(tensors), base, recipe.at(key), recipe, stats)
