"""The steps of the image experiment shared by the chapter, the calibration and the tests.

`pretrain` builds Psi0 (a ViT pre-trained on digit identity, with the fixed parity head),
`finetune` the task vectors of named color-parity tasks (all trainings batched), `neutral_probe`
the images on which alpha-hat is measured, and `probe_signs` / `paired_alpha` alpha-hat from the
fine-tuned models' outputs. Every function takes the chapter's ImagesParams.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from ..vectors.task_vector import TaskVector
from .data import ColorParityTask, DigitSplit, digit_splits, pretraining_data
from .params import ImagesParams
from .vit import ViT, accuracy, finetune_vits, logits, train, with_parity_head

__all__ = ["numerics", "splits", "pretrain", "finetune", "neutral_probe", "probe_signs", "paired_alpha"]


@contextmanager
def numerics(p: ImagesParams) -> Iterator[None]:
    """Run with p's default dtype and thread count, restoring both afterwards."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(getattr(torch, p.dtype))
    torch.set_num_threads(p.threads)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def splits(p: ImagesParams) -> tuple[DigitSplit, DigitSplit]:
    """The fixed stratified train/test split of the 1797 digits."""
    return digit_splits(test_fraction=p.test_fraction, seed=p.split_seed)


def pretrain(p: ImagesParams, train_split: DigitSplit, test_split: DigitSplit) -> tuple[ViT, float]:
    """Psi0 for p.pre_seed: a ViT trained on digit identity, given the fixed parity head; and its digit accuracy."""
    X, y = pretraining_data(train_split, seed=p.pre_seed)
    model = ViT(**p.model(), n_classes=10, seed=p.pre_seed)
    pre, _ = train(model, X, y, epochs=p.pre_epochs, batch_size=p.batch_size, lr=p.pre_lr,
                   seed=p.pre_seed, device=p.device)
    acc = accuracy(pre, *pretraining_data(test_split, seed=p.pre_seed + 1))
    return with_parity_head(pre, seed=p.head_seed), acc


def finetune(p: ImagesParams, psi0: ViT, tasks: Mapping[str, ColorParityTask],
             train_split: DigitSplit) -> dict[str, list[TaskVector]]:
    """Task vectors {name: [one per seed of p.seeds]}, every (task, seed) trained together."""
    names = list(tasks)
    vectors = finetune_vits(psi0, [tasks[n] for n in names], train_split, seeds=p.seeds, epochs=p.ft_epochs,
                            batch_size=p.batch_size, lr=p.ft_lr, loss=p.ft_loss, device=p.device)
    return dict(zip(names, vectors))


def neutral_probe(p: ImagesParams, test_split: DigitSplit) -> Tensor:
    """The test digits painted with r_o = r_e = 0.5: color and parity independent."""
    return ColorParityTask(0.5, 0.5).data(test_split, seed=p.probe_seed)[0]


def probe_signs(psi0: ViT, vectors: Mapping[str, list[TaskVector]], X: Tensor) -> dict[str, np.ndarray]:
    """sign(f_1 - f_0) of every fine-tuned model on images X: {name: (seeds, n)}.

    With the fixed antisymmetric head the two logits are (-a.h, a.h), so the per-image cosine of
    two models' logit vectors is the product of these signs, and alpha-hat their mean.
    """
    base = psi0.state_dict()
    out = {}
    for name, vs in vectors.items():
        gaps = [logits(psi0, X, state_dict=v.apply_to(base)) for v in vs]
        out[name] = np.stack([np.sign((g[:, 1] - g[:, 0]).numpy()) for g in gaps])
    return out


def paired_alpha(signs: Mapping[str, np.ndarray], a: str, b: str) -> np.ndarray:
    """alpha-hat of tasks a and b per seed (seed s of a paired with seed s of b), shape (seeds,)."""
    return (signs[a] * signs[b]).mean(-1)
