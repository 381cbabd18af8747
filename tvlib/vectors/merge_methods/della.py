"""DELLA (Deep et al. 2024): MagPrune, a random drop whose keep probability grows with an entry's
magnitude rank within its row (density - epsilon to density + epsilon), then rescale; TIES's election
and mean (della) or a sum (della_linear). Masks come from the recipe's seed, as DARE's; a matrix may come
in pieces of whole rows (the ranks are within a row), an L1 rescale then from norms gathered beforehand."""

import torch
from torch import Tensor

from ..kernels import della_keep_probability, l1_rescale
from .base import Method, TrimCall
from .dare import keep_mask


def _probs(d: Tensor, c: TrimCall) -> Tensor:
    row_len = getattr(c.state, "row_len", None)
    rows = d.view(-1, row_len) if getattr(c.state, "offset", None) is not None and row_len else d
    return della_keep_probability(rows, c.density, c.options["epsilon"]).reshape(d.shape)


def keep(d: Tensor, c: TrimCall, probs: Tensor | None = None) -> Tensor:
    return keep_mask(d, c, 1 - (_probs(d, c) if probs is None else probs))


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:
        return d
    kept = getattr(c.state, "kept", None)  # the masks the L1 pass drew for this tensor, if it did
    mask = kept[c.i][c.state.offset:c.state.offset + d.numel()].view(d.shape) if kept and c.i in kept else None
    probs = _probs(d, c) if mask is None or c.recipe.rescale == "entry" else None
    out = d * (keep(d, c, probs) if mask is None else mask)
    l1 = getattr(c.state, "l1", None)
    if c.recipe.rescale == "l1" and l1 is not None:  # a piece: the tensor's norms were gathered beforehand
        before, after = l1[c.i]
        return out if before < 1e-7 or after < 1e-7 else out.mul_(before / after)
    if c.recipe.rescale == "l1":
        return l1_rescale(out, d.abs().sum(dtype=torch.float64))
    if c.recipe.rescale == "entry":
        return out / probs
    return out


METHODS = (
    Method("della", trim=trim, keep=keep, rows=True, reuse_keep=True, combine="ties", kind="della", densities=True, model_options={"epsilon": 0.15},
           summary="magnitude-ranked random drop (MagPrune), rescale; elect signs; mean",
           mergekit={"normalize": "signed_weights", "rescale": "l1", "zero_sum": "plus"}),
    Method("della_linear", trim=trim, keep=keep, rows=True, reuse_keep=True, kind="della", densities=True, model_options={"epsilon": 0.15},
           summary="magnitude-ranked random drop (MagPrune), rescale; sum",
           mergekit={"normalize": "none", "rescale": "l1"}),
)
