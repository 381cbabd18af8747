"""TIES (Yadav et al. 2023): top-k of each vector, then per entry the sign of the weighted sum is elected
and the agreeing weighted entries are averaged (normalize) and scaled by lam."""

from . import magnitude
from .base import Method

METHOD = Method("ties", trim=magnitude.trim, combine="ties", kind="magnitude", densities=True,
                summary="top-k; elect signs; mean of the agreeing entries",
                mergekit={"normalize": "signed_weights", "scope": "tensor", "rounding": "mergekit", "rescale": "none",
                          "zero_sum": "plus"})
