"""Fine-tuning of Section 4: minibatch SGD on the hinge loss with fresh samples at every step."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from ..metrics import hinge
from .data import Task
from .model import OneLayerTransformer

__all__ = ["History", "finetune", "steps_to_reach"]


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
    lr: float | Tensor,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
) -> tuple[OneLayerTransformer, History]:
    """Return a fine-tuned copy of `model` (one SGD run per replica) and its training history.

    `task` is a single task, shared by all replicas, or a stack of exactly R tasks, one per replica.
    `lr` is one step size for all replicas or a tensor of R step sizes, one per replica.
    The fixed output layer a is never updated; `model` itself is left unchanged.
    Training runs on the model's device; samples are drawn on the CPU (`generator` is a CPU
    generator), so a seed gives the same sample stream on any device.
    """
    R = model.replicas
    lrs = torch.as_tensor(lr, dtype=torch.float32).reshape(-1)
    if lrs.numel() not in (1, R) or (lrs <= 0).any() or batch_size < 1 or steps < 0:
        raise ValueError(
            f"lr={lr}, batch_size={batch_size}, steps={steps}: expected lr > 0 (a number or {R} numbers), "
            "batch_size >= 1, steps >= 0"
        )
    lrs = lrs.expand(R)
    if task.replicas not in (None, R):
        raise ValueError(f"task stacks {task.replicas} tasks but the model has {R} replicas: expected 1 or {R}")
    if task.d != model.d:
        raise ValueError(f"task has d={task.d} but the model has d={model.d}")
    tuned = copy.deepcopy(model)
    params = [p for p in tuned.parameters() if p.requires_grad]
    device = tuned.a.device
    lrs = lrs.to(device)
    loss_log = torch.empty(steps, R, device=device)
    acc_log = torch.empty(steps, R, device=device)
    for t in range(steps):
        X, y = task.sample(batch_size, generator)
        X, y = X.to(device), y.to(device)
        out = tuned(X)
        if y.ndim == 1:
            y = y.expand(R, -1)
        per_replica = hinge(out, y).mean(-1)  # (R,)
        # summing over replicas keeps their gradients independent: replica r's weights
        # only enter replica r's loss
        grads = torch.autograd.grad(per_replica.sum(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lrs.view(R, *[1] * (p.ndim - 1)) * g)
            loss_log[t] = per_replica.detach()
            acc_log[t] = (torch.sign(out) == y).float().mean(-1)
    return tuned, History(loss=loss_log.cpu(), accuracy=acc_log.cpu())


def steps_to_reach(loss: Tensor, level: float, window: int = 10) -> Tensor:
    """First step at which the `window`-step moving average of each column of `loss` is below `level`.

    `loss` is (steps, R) as in History.loss; returns R step counts (float), NaN where never reached.
    """
    if loss.ndim != 2 or window < 1 or window > loss.shape[0]:
        raise ValueError(f"loss of shape {tuple(loss.shape)} with window={window}: expected (steps, R), 1 <= window <= steps")
    avg = loss.T.unfold(1, window, 1).mean(-1)  # (R, steps - window + 1)
    below = avg < level
    first = below.float().argmax(1).float() + window
    return torch.where(below.any(1), first, torch.tensor(float("nan")))
