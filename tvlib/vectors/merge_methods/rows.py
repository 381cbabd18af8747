"""Row-norm pruning (the paper's Corollary 2): keep the fraction `density` of each matrix's rows with the
largest norms; sum. Vectors (biases, norms) are kept whole."""

from torch import Tensor

from ..kernels import row_mask
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if d.ndim < 2:
        return d
    return d * row_mask(d, keep=c.density).unsqueeze(-1)


METHOD = Method("rows", trim=trim, kind="rows", densities=True, summary="top rows by norm of each matrix; sum")
