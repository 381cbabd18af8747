"""Colored digits with parity labels: the book's offline stand-in for the paper's Colored-MNIST.

The images are scikit-learn's 1797 handwritten 8x8 digits (shipped inside the package, so nothing is
downloaded). A digit is painted red (its gray levels in channel 0) or green (channel 1) of a 3x8x8
image; the label is its parity (1 = odd, 0 = even). A task fixes r_o and r_e, the fractions of red
among odd and among even digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DigitSplit", "ColorParityTask", "load_digit_images", "digit_splits", "colorize", "paint", "pretraining_data"]


@dataclass(frozen=True)
class DigitSplit:
    """Gray digit images (n, 8, 8) in [0, 1] and their digits (n,) 0..9."""

    images: Tensor
    digits: Tensor

    def __len__(self) -> int:
        return len(self.digits)

    @property
    def parity(self) -> Tensor:
        """Parity labels: 1 for odd digits, 0 for even ones."""
        return self.digits % 2


def load_digit_images() -> DigitSplit:
    """All 1797 handwritten digits of scikit-learn, gray levels scaled from 0..16 to [0, 1] (default dtype)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the image experiment needs scikit-learn: pip install scikit-learn") from err
    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.get_default_dtype()) / 16.0
    return DigitSplit(images=images, digits=torch.as_tensor(data.target, dtype=torch.long))


def digit_splits(*, test_fraction: float = 0.3, seed: int = 0) -> tuple[DigitSplit, DigitSplit]:
    """Fixed train/test split of the digits, stratified by digit (the same share of every digit in test)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: expected a number strictly between 0 and 1")
    full = load_digit_images()
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = torch.nonzero(full.digits == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(test_fraction * len(idx))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    train = torch.cat(train_idx).sort().values
    test = torch.cat(test_idx).sort().values
    return (
        DigitSplit(full.images[train], full.digits[train]),
        DigitSplit(full.images[test], full.digits[test]),
    )


def colorize(images: Tensor, red: Tensor) -> Tensor:
    """3x8x8 color images: the digit in channel 0 where `red` is true, in channel 1 (green) elsewhere."""
    if red.shape != images.shape[:1] or red.dtype != torch.bool:
        raise ValueError(f"red must be a bool tensor of shape {tuple(images.shape[:1])}; got {red.dtype} {tuple(red.shape)}")
    out = torch.zeros(len(images), 3, *images.shape[1:], dtype=images.dtype)
    out[:, 0] = images * red.view(-1, 1, 1)
    out[:, 1] = images * (~red).view(-1, 1, 1)
    return out


def _check_fraction(name: str, r: float) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"{name}={r!r}: expected a fraction of red digits in [0, 1]")
    return float(r)


def paint(groups: Tensor, fractions: dict[int, float], *, generator: torch.Generator) -> Tensor:
    """Red mask with exactly round(r * size) red members in every group g (fractions[g] = r), placed at random."""
    red = torch.zeros(len(groups), dtype=torch.bool)
    for group, r in fractions.items():
        idx = torch.nonzero(groups == group).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        red[idx[: round(r * len(idx))]] = True
    return red


@dataclass(frozen=True)
class ColorParityTask:
    """Digit parity (1 = odd) with a fraction r_o of the odd and r_e of the even digits painted red."""

    r_o: float
    r_e: float
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_o", _check_fraction("r_o", self.r_o))
        object.__setattr__(self, "r_e", _check_fraction("r_e", self.r_e))

    @property
    def color_correlation(self) -> float:
        """r_o - r_e: how much more often odd digits are red than even ones (1: red means odd, -1: green does)."""
        return self.r_o - self.r_e

    def data(self, split: DigitSplit, *, seed: int) -> tuple[Tensor, Tensor]:
        """The split's images painted for this task, (n, 3, 8, 8), and their parity labels (n,)."""
        red = paint(split.parity, {1: self.r_o, 0: self.r_e}, generator=torch.Generator().manual_seed(seed))
        return colorize(split.images, red), split.parity.clone()


def pretraining_data(split: DigitSplit, *, seed: int, r: float = 0.5) -> tuple[Tensor, Tensor]:
    """The split painted with a fraction r of every digit red, labelled by digit identity (10 classes)."""
    r = _check_fraction("r", r)
    red = paint(split.digits, {d: r for d in range(10)}, generator=torch.Generator().manual_seed(seed))
    return colorize(split.images, red), split.digits.clone()

