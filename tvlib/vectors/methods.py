"""Merge methods on in-memory task vectors: row-norm pruning (Corollary 2), magnitude top-k, TIES, DARE,
DARE-TIES, and merge_vectors, the one entry point for all of them.

Every function takes and returns TaskVector objects, so it works on the toy model and on Hugging Face
state dicts alike, and runs the per-tensor code of tvlib.vectors.recipe / kernels that the streaming
engine runs on checkpoints. Conventions:

- Rows: a row u_i of a delta is delta[..., i, :] (row i of a Linear weight = output unit i; row i of the
  toy model's V = neuron i). Deltas with more than 2 dims are stacks of matrices over the last two.
- Sizes: a fraction `density` of n entries keeps k = floor(density * n + 1/2) of them (rounding="floor":
  floor(density * n), mergekit's); ties at the k-th largest magnitude are broken by position (keys in
  sorted order, then row-major), so exactly k are kept, the same in memory and streaming from checkpoints.
- Scope of top-k: "global" ranks all entries of a task vector together, as the TIES reference code
  does (it flattens the whole model); "tensor" ranks each tensor on its own, as mergekit does.
  Both magnitude_prune and ties_merge default to "global".
- TIES (Yadav et al. 2023): trim each vector to its top-k, elect per entry the sign of the sum of the
  weighted trimmed values, average the entries that agree with it (zeros excluded), scale by lam. Where
  they cancel exactly the elected sign is 0 and the merged entry is 0, as in the paper's algorithm
  (mergekit elects +). normalize="count" divides by the number of agreeing vectors (the paper's
  disjoint mean), "weights" by the sum of their absolute weights (mergekit's when weights are positive).
- DARE (Yu et al. 2024): drop each entry with probability p, rescale the kept ones by 1/(1 - p)
  (rescale="entry"), or the whole tensor to its former L1 norm (rescale="l1", mergekit's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .kernels import dare_mask, fraction, row_mask
from .recipe import (
    MERGE_METHODS,
    MaskFn,
    MergeState,
    Recipe,
    find_thresholds,
    merge_tensor,
)
from .statedict import diff_keys, mismatch
from .task_vector import TaskVector

__all__ = [
    "MERGE_METHODS",
    "METHODS",
    "dare",
    "dare_ties",
    "density",
    "magnitude_prune",
    "merge_vectors",
    "prune_rows",
    "run_recipe",
    "sparsify",
    "ties_merge",
]

METHODS = ("sum", "rows", "topk", "ties", "dare")  # the methods of sparsify (the toy experiments)


def density(tv: TaskVector) -> float:
    """Fraction of the task vector's entries that are non-zero."""
    n = tv.numel()
    if n == 0:
        raise ValueError("the task vector has no entries: density is undefined")
    return sum(int(torch.count_nonzero(tv.deltas[k])) for k in tv) / n


def _check_vectors(vectors: Sequence[TaskVector], weights: Sequence[float] | None) -> tuple[list[TaskVector], list[float]]:
    vectors = list(vectors)
    if not vectors:
        raise ValueError("vectors is empty: expected at least one TaskVector")
    for i, v in enumerate(vectors):
        if not isinstance(v, TaskVector):
            raise TypeError(f"vectors[{i}] is a {type(v).__name__}: expected a TaskVector")
        diff = diff_keys(vectors[0]._meta(), v._meta(), ("vectors[0]", f"vectors[{i}]"))
        if diff:
            raise mismatch(diff, ("vectors[0]", f"vectors[{i}]"))
    if weights is None:
        weights = [1.0] * len(vectors)
    weights = list(weights)
    if len(weights) != len(vectors):
        raise ValueError(f"got {len(weights)} weights for {len(vectors)} vectors: expected one per vector")
    return vectors, weights


def run_recipe(recipe: Recipe, vectors: Sequence[TaskVector], *, generator: torch.Generator | None = None,
               masks: MaskFn | None = None) -> TaskVector:
    """The merged task vector of `recipe` on in-memory vectors, tensor by tensor (keys it does not select: 0).

    DARE masks: `masks(i, key, delta, p)` if given; else from `generator`, drawn key by key and, within a
    key, vector by vector; else from the recipe's seed, as the streaming engine draws them.
    """
    vectors, _ = _check_vectors(vectors, recipe.weights)
    if recipe.whole:
        raise ValueError(f"method={recipe.method!r} merges whole models, not task vectors: use merge_checkpoints")
    keys = vectors[0].keys()
    chosen = [k for k in keys if recipe.selects(k)]
    if recipe.is_global:  # a global top-k breaks ties in sorted key order, as the streaming engine does
        chosen = sorted(chosen)
    state = MergeState()
    if recipe.trim in ("dare", "della") and masks is not None:
        state.masks = masks
    elif recipe.trim in ("dare", "della"):
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator is a {type(generator).__name__}: expected a torch.Generator")
            state.masks = lambda i, key, delta, p: dare_mask(delta.shape, p, generator)
        else:
            from .recipe import seeded_masks

            state.masks = seeded_masks(recipe.seed)
    device = {k: vectors[0].deltas[k].device for k in chosen} if len(vectors) > 1 else {}

    def deltas(k: str):
        for v in vectors:
            d = v.deltas[k]
            yield d.to(device[k]) if device else d

    if recipe.is_global:
        shapes = vectors[0].shapes()
        dtype = torch.float64 if any(vectors[0].deltas[k].dtype == torch.float64 for k in chosen) else torch.float32
        state.thresholds = find_thresholds(recipe, chosen, {k: shapes[k].numel() for k in chosen}, deltas, dtype)
    out: dict[str, Tensor] = {}
    for k in chosen:
        out[k] = merge_tensor(recipe, k, deltas(k), state)
    out = {k: out[k] if k in out else torch.zeros_like(vectors[0].deltas[k]) for k in keys}
    aliases = {a: g for v in reversed(vectors) for a, g in v.aliases.items()}
    return TaskVector._make(out, {}, keys, aliases, vectors[0].skipped)


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
    import numbers

    if (keep is None) == (threshold is None):
        raise ValueError(f"keep={keep}, threshold={threshold}: expected exactly one of them")
    if keep is not None:
        keep = fraction(keep, "keep")
    elif isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise ValueError(f"threshold={threshold!r}: expected a row norm >= 0")
    shapes = tv.shapes()
    if keys is None:
        keys = [k for k, s in shapes.items() if len(s) >= 2]
    else:
        keys = list(keys)
        missing = [k for k in keys if k not in shapes]
        if missing:
            raise ValueError(f"keys {missing} are not in the task vector: expected some of {tv.keys()}")
        flat = [k for k in keys if len(shapes[k]) < 2]
        if flat:
            raise ValueError(f"keys {flat} name deltas with fewer than 2 dims: rows need a matrix")
    out = {k: tv.deltas[k] for k in tv}
    for k in keys:
        d = out[k]
        out[k] = d * row_mask(d, keep=keep, threshold=threshold).unsqueeze(-1)
    return TaskVector._make(out, {}, tv.keys(), tv.aliases, tv.skipped)


def magnitude_prune(tv: TaskVector, density: float, *, scope: str = "global", rounding: str = "nearest") -> TaskVector:
    """Keep the fraction `density` of entries with the largest magnitudes, zero the rest (scope "global" or "tensor")."""
    frac = fraction(density, "density")
    return run_recipe(Recipe("magnitude", [1.0], [frac], scope=scope, rounding=rounding), [tv])


def ties_merge(
    vectors: Sequence[TaskVector],
    *,
    density: float = 0.2,
    lam: float = 1.0,
    weights: Sequence[float] | None = None,
    scope: str = "global",
    normalize: str = "count",
    rounding: str = "nearest",
) -> TaskVector:
    """TIES-merging: lam * disjoint mean of the trimmed vectors weights_t * tau_t on the elected signs.

    density: fraction of each vector kept by the trim (the paper's k, default 20%); weights: per-vector
    coefficients applied before the sign election (default 1: the published method; -1 negates a task);
    normalize: "count" (the paper's mean), "weights" (divide by the agreeing absolute weights) or "none".
    """
    vectors, weights = _check_vectors(vectors, weights)
    frac = fraction(density, "density")
    recipe = Recipe("ties", weights, [frac] * len(vectors), lam=lam, scope=scope, normalize=normalize, rounding=rounding)
    return run_recipe(recipe, vectors)


def dare(tv: TaskVector, p: float, *, generator: torch.Generator, rescale: bool | str = True) -> TaskVector:
    """DARE: drop every entry independently with probability p and rescale the kept ones by 1/(1 - p).

    The Bernoulli draws come from `generator` (on its own device), key by key in the vector's order.
    rescale: True or "entry" (per entry, unbiased), "l1" (match each tensor's L1 norm, mergekit's), False or "none".
    """
    mode = {True: "entry", False: "none"}.get(rescale, rescale) if isinstance(rescale, bool) else rescale
    p = fraction(p, "p", open_right=mode != "none")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator is a {type(generator).__name__}: expected a torch.Generator")
    recipe = Recipe("dare", [1.0], [1.0 - p], rescale=mode) if p < 1 else None
    if recipe is None:  # p = 1 without rescaling: everything dropped
        return TaskVector._make({k: torch.zeros_like(tv.deltas[k]) for k in tv}, {}, tv.keys(), tv.aliases, tv.skipped)
    return run_recipe(recipe, [tv], generator=generator)


def dare_ties(
    vectors: Sequence[TaskVector],
    p: float,
    *,
    generator: torch.Generator,
    lam: float = 1.0,
    weights: Sequence[float] | None = None,
    normalize: str = "count",
    rescale: str = "entry",
) -> TaskVector:
    """DARE-TIES: DARE (drop with probability p, rescale) on each vector, then TIES's sign election and mean."""
    vectors, weights = _check_vectors(vectors, weights)
    p = fraction(p, "p", open_right=True)
    recipe = Recipe("dare_ties", weights, [1.0 - p] * len(vectors), lam=lam, normalize=normalize, rescale=rescale)
    return run_recipe(recipe, vectors, generator=generator)


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
    level = fraction(level, "level")
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
    **options,
) -> TaskVector:
    """sum_i lam_i tau_i with every tau_i trimmed by `method` (keeping a fraction `level`), or TIES on them.

    method: one of MERGE_METHODS ("task_arithmetic", "magnitude", "ties", "dare", "dare_ties", "rows",
    "low_rank") or the short names "sum", "topk"; lams are the per-vector weights; level the density
    (for "rows" the fraction of rows kept, on row_keys). options go to Recipe (normalize, rescale,
    rounding, rank, lam, include, exclude). DARE masks come from `generator` (needed).
    """
    vectors, lams = _check_vectors(vectors, lams)
    name = {"sum": "task_arithmetic", "topk": "magnitude"}.get(method, method)
    if name not in MERGE_METHODS:
        raise ValueError(f"method={method!r}: expected one of {MERGE_METHODS} (or 'sum', 'topk')")
    if name in ("dare", "dare_ties") and generator is None:
        raise ValueError(f"method={method!r} draws random masks: expected a torch.Generator in generator")
    level = fraction(level, "level")
    if name == "rows":
        vectors = [prune_rows(v, keep=level, keys=row_keys) for v in vectors]
        name = "task_arithmetic"
    densities = [level] * len(vectors) if name in ("magnitude", "ties", "dare", "dare_ties") else None
    recipe = Recipe(name, lams, densities, scope=scope, **options)
    return run_recipe(recipe, vectors, generator=generator)
