"""DARE (Yu et al. 2024): drop each entry with probability p = 1 - density and rescale the kept ones
(rescale "entry": by 1/(1 - p); "l1": the tensor to its former L1 norm, mergekit's); sum (mergekit's
dare_linear)."""

from torch import Tensor

from ..kernels import dare_tensor
from .base import Method, TrimCall


def keep_mask(d: Tensor, c: TrimCall, p: float) -> Tensor:
    """The kept entries: the state's masks, told where the piece starts when the tensor comes in pieces."""
    offset = getattr(c.state, "offset", None)
    return c.state.masks(c.i, c.key, d, p) if offset is None else c.state.masks(c.i, c.key, d, p, offset)


def keep(d: Tensor, c: TrimCall) -> Tensor:
    return keep_mask(d, c, 1.0 - c.density)


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:  # mergekit: nothing dropped, nothing rescaled
        return d
    p = 1.0 - c.density
    keep = keep_mask(d, c, p)
    l1 = getattr(c.state, "l1", None)
    if c.recipe.rescale == "l1" and l1 is not None:  # a piece: the tensor's norms were gathered beforehand
        before, after = l1[c.i]
        out = d.mul_(keep) if c.inplace else d * keep
        return out if before < 1e-7 or after < 1e-7 else out.mul_(before / after)
    return dare_tensor(d, keep, p, c.recipe.rescale)


METHOD = Method("dare", trim=trim, keep=keep, kind="dare", densities=True, summary="random drop and rescale; sum",
                mergekit={"normalize": "none", "rescale": "l1"})
