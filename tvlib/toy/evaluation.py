"""Generalization error (expected hinge loss), accuracy, and the paper's task-correlation estimate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .data import Task

__all__ = ["hinge", "evaluate", "output_cosine"]


def hinge(out: Tensor, y: Tensor) -> Tensor:
    """Hinge loss max(0, 1 - y f) elementwise."""
    return torch.clamp(1.0 - y * out, min=0.0)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, *, n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Hinge generalization error and accuracy of every replica on n fresh samples of `task`.

    Returns {"error": (R,), "accuracy": (R,)} on the model's device; a sign of exactly 0 counts as wrong.
    """
    X, y = task.sample(n, generator)  # on the CPU, so a seed gives the same samples on any device
    weight = next(model.parameters(), None)
    if weight is not None:
        X, y = X.to(weight.device), y.to(weight.device)
    out = model(X)
    if y.ndim == 1:
        y = y.expand_as(out)
    return {"error": hinge(out, y).mean(-1), "accuracy": (torch.sign(out) == y).float().mean(-1)}


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
