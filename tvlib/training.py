"""Fine-tuning of Section 4: minibatch SGD on the hinge loss with fresh samples at every step."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from .data import Task
from .evaluation import hinge
from .model import OneLayerTransformer

__all__ = ["History", "finetune"]


@dataclass(frozen=True)
class History:
    """Per-step hinge loss and accuracy of each replica, shape (steps, R).

    Every step draws a fresh batch and records it before the update, so each entry is an
    unbiased estimate of the generalization error (resp. accuracy) of the model at that step.
    """

    loss: Tensor
    accuracy: Tensor


def finetune(
    model: OneLayerTransformer,
    task: Task,
    *,
    lr: float,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
) -> tuple[OneLayerTransformer, History]:
    """Return a fine-tuned copy of `model` (one SGD run per replica) and its training history.

    `task` is a single task, shared by all replicas, or a stack of exactly R tasks, one per replica.
    The fixed output layer a is never updated; `model` itself is left unchanged.
    """
    if lr <= 0 or batch_size < 1 or steps < 0:
        raise ValueError(
            f"lr={lr}, batch_size={batch_size}, steps={steps}: expected lr > 0, batch_size >= 1, steps >= 0"
        )
    R = model.replicas
    if task.replicas not in (None, R):
        raise ValueError(f"task stacks {task.replicas} tasks but the model has {R} replicas: expected 1 or {R}")
    if task.d != model.d:
        raise ValueError(f"task has d={task.d} but the model has d={model.d}")
    tuned = copy.deepcopy(model)
    params = [p for p in tuned.parameters() if p.requires_grad]
    loss_log = torch.empty(steps, R)
    acc_log = torch.empty(steps, R)
    for t in range(steps):
        X, y = task.sample(batch_size, generator)
        out = tuned(X)
        if y.ndim == 1:
            y = y.expand(R, -1)
        per_replica = hinge(out, y).mean(-1)  # (R,)
        # summing over replicas keeps their gradients independent: replica r's weights
        # only enter replica r's loss
        grads = torch.autograd.grad(per_replica.sum(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
            loss_log[t] = per_replica.detach()
            acc_log[t] = (torch.sign(out) == y).float().mean(-1)
    return tuned, History(loss=loss_log, accuracy=acc_log)
