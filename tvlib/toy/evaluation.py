"""Generalization error (expected hinge loss) and accuracy of the toy model on fresh samples of a task."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..metrics import hinge
from .data import Task

__all__ = ["evaluate"]


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
