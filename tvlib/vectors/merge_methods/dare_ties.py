"""DARE-TIES: DARE's random drop and rescale of each vector, then TIES's sign election and mean."""

from . import dare
from .base import Method

METHOD = Method("dare_ties", trim=dare.trim, keep=dare.keep, combine="ties", kind="dare", densities=True,
                summary="random drop and rescale; elect signs; mean",
                mergekit={"normalize": "none", "rescale": "l1", "zero_sum": "plus"})
