"""Low rank: the best rank-r approximation (truncated SVD) of each matrix delta; sum."""

from torch import Tensor

from ..kernels import low_rank_factors
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    rank = c.recipe.rank
    if d.ndim == 2 and rank < min(d.shape):
        B, A = low_rank_factors(d, rank)
        return B @ A
    return d


METHOD = Method("low_rank", trim=trim, kind="low_rank", summary="rank-r SVD of each matrix; sum")
