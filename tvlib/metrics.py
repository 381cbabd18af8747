"""The paper's loss and its task-correlation estimate, for every experiment: hinge loss and alpha-hat."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["hinge", "output_cosine"]


def hinge(out: Tensor, y: Tensor) -> Tensor:
    """Hinge loss max(0, 1 - y f) elementwise."""
    return torch.clamp(1.0 - y * out, min=0.0)


def output_cosine(f1: Tensor, f2: Tensor, *, vector_outputs: bool = False) -> Tensor:
    """The paper's alpha-hat: cosine between two models' outputs on the same inputs.

    Scalar outputs (..., n), as in the one-layer model: the cosine of the two n-vectors of outputs
    (a per-input cosine of scalars would only be a sign). Vector outputs (..., n, k) with
    `vector_outputs=True`, as for the paper's classifiers: the mean over the n inputs of the
    per-input cosine.
    """
    if f1.shape != f2.shape:
        raise ValueError(f"outputs have shapes {tuple(f1.shape)} and {tuple(f2.shape)}: expected equal")
    if vector_outputs:
        if f1.ndim < 2:
            raise ValueError(f"vector outputs need shape (..., n, k); got {tuple(f1.shape)}")
        return nn.functional.cosine_similarity(f1, f2, dim=-1).mean(-1)
    return nn.functional.cosine_similarity(f1, f2, dim=-1)
