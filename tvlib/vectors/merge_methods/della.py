"""DELLA (Deep et al. 2024): MagPrune, a random drop whose keep probability grows with an entry's
magnitude rank within its row (density - epsilon to density + epsilon), then rescale; TIES's election
and mean (della) or a sum (della_linear). Masks come from the recipe's seed, as DARE's."""

from torch import Tensor

from ..kernels import della_keep_probability, l1_rescale
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:
        return d
    probs = della_keep_probability(d, c.density, c.options["epsilon"])
    keep = c.state.masks(c.i, c.key, d, 1 - probs)
    out = d * keep
    if c.recipe.rescale == "l1":
        return l1_rescale(out, d.abs().sum())
    if c.recipe.rescale == "entry":
        return out / probs
    return out


METHODS = (
    Method("della", trim=trim, combine="ties", kind="della", densities=True, model_options={"epsilon": 0.15},
           summary="magnitude-ranked random drop (MagPrune), rescale; elect signs; mean",
           mergekit={"normalize": "signed_weights", "rescale": "l1", "zero_sum": "plus"}),
    Method("della_linear", trim=trim, kind="della", densities=True, model_options={"epsilon": 0.15},
           summary="magnitude-ranked random drop (MagPrune), rescale; sum",
           mergekit={"normalize": "none", "rescale": "l1"}),
)
