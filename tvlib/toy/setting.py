"""The sizes and fine-tuning hyperparameters used throughout the book, in one place, and the device rule."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

__all__ = ["Setting", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> this process's GPU if one is available (its LOCAL_RANK under torchrun), else the CPU.

    "cpu", "cuda" and "cuda:N" (or a torch.device) are taken as they are; asking for a GPU that
    is not there is an error, not a silent fall-back to the CPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but no CUDA GPU is available: expected 'cpu' or 'auto'")
        index = int(os.environ.get("LOCAL_RANK", 0)) if device == "cuda" else device.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: expected cuda:N with N < {torch.cuda.device_count()}")
        return torch.device("cuda", int(index))
    raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class Setting:
    """Sizes of the data and model (Def. 2, eq. 4) and the SGD hyperparameters of Section 4.

    The paper fixes none of these numbers; the defaults are small enough for a 2-core CPU
    and large enough that fine-tuning reaches a small hinge error in a few hundred steps.
    """

    d: int = 24  # token dimension
    M: int = 20  # irrelevant patterns, M = Theta(d)
    P: int = 16  # tokens per sample
    m: int = 64  # hidden neurons
    delta_star: float = 0.3  # average fraction of label-relevant tokens y*mu
    delta_hash: float = 0.1  # average fraction of confusion tokens -y*mu
    lr: float = 1.0  # SGD step eta
    batch_size: int = 64  # fresh samples per step B
    steps: int = 300  # SGD steps T
    v_std: float = 0.01  # std of the entries of V at Psi^(0); W^(0) = 0

    def data(self) -> dict[str, Any]:
        """Keyword arguments for tvlib.data task constructors."""
        return dict(d=self.d, M=self.M, P=self.P, delta_star=self.delta_star, delta_hash=self.delta_hash)

    def training(self) -> dict[str, Any]:
        """Keyword arguments for tvlib.training.finetune."""
        return dict(lr=self.lr, batch_size=self.batch_size, steps=self.steps)

    def model(self) -> dict[str, Any]:
        """Keyword arguments for tvlib.model.OneLayerTransformer."""
        return dict(d=self.d, m=self.m, v_std=self.v_std)

    def replace(self, **changes: Any) -> "Setting":
        return replace(self, **changes)

    def asdict(self) -> dict[str, Any]:
        return asdict(self)
