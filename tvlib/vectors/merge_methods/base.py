"""What a merge method is (Method) and what its trim is given (TrimCall)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class TrimCall:
    """One task vector's delta of one tensor, with what its trim may need."""

    recipe: Any  # the Recipe
    i: int  # the vector's index
    key: str
    density: float | None
    options: Mapping[str, float]  # this vector's other parameters at this tensor (gamma, epsilon)
    state: Any  # the MergeState: global thresholds, DARE masks, scratch buffers
    inplace: bool  # the delta may be overwritten


@dataclass(frozen=True)
class Method:
    """A merge method.

    trim: (delta, TrimCall) -> trimmed delta, or None (no trim); combine: "sum" or "ties" (the
    trimmed deltas, weighted); or merge: (tensors, base, params) -> the merged tensor, for methods of
    whole tensors (then `base` says whether a base is "required" or "none"). kind: the trim's family
    (the engine's memory estimate and the dry-run's options). densities: whether it takes a density per
    vector. model_options / shared_options: its other parameters and their defaults. mergekit: the
    options a config in mergekit's layout gets when it does not set them (mergekit's defaults).
    """

    name: str
    trim: Callable[[Tensor, TrimCall], Tensor] | None = None
    combine: str = "sum"
    merge: Callable[..., Tensor] | None = None
    base: str = "required"
    kind: str | None = None
    densities: bool = False
    model_options: Mapping[str, float] = field(default_factory=dict)
    shared_options: Mapping[str, float] = field(default_factory=dict)
    mergekit: Mapping[str, Any] | None = None
    summary: str = ""
    keep: Callable[[Tensor, TrimCall], Tensor] | None = None  # a random drop's keep mask (pieces: its L1 norms)
    rows: bool = False  # the trim works row by row: pieces of a matrix must be whole rows
    reuse_keep: bool = False  # its keep masks are costly (a sort per row): the L1 pass's masks are kept for the merge
    pieces: bool | Callable[[Any], bool] = False  # a whole-tensor merge that can run on pieces (given stats)
    stats: Callable[..., list[float]] | None = None  # (tensors, base, params, recipe) -> sums over a piece

    @property
    def whole(self) -> bool:
        """True for methods of whole tensors (no delta, no trim)."""
        return self.merge is not None
