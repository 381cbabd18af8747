"""DARE (Yu et al. 2024): drop each entry with probability p = 1 - density and rescale the kept ones
(rescale "entry": by 1/(1 - p); "l1": the tensor to its former L1 norm, mergekit's); sum (mergekit's
dare_linear)."""

from torch import Tensor

from ..kernels import dare_tensor
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:  # mergekit: nothing dropped, nothing rescaled
        return d
    p = 1.0 - c.density
    keep = c.state.masks(c.i, c.key, d, p)
    return dare_tensor(d, keep, p, c.recipe.rescale)


METHOD = Method("dare", trim=trim, kind="dare", densities=True, summary="random drop and rescale; sum",
                mergekit={"normalize": "none", "rescale": "l1"})
