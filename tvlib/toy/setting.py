"""The sizes and fine-tuning hyperparameters of the toy model used throughout the book, in one place."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..params import Params, integer, positive
from .data import _check_fractions

__all__ = ["Setting"]


@dataclass(frozen=True)
class Setting(Params):
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

    def check(self) -> None:
        for name in ("d", "M", "P", "m", "batch_size"):
            integer(name, getattr(self, name))
        integer("steps", self.steps)  # T >= 1: fine-tuning is the premise of every theorem
        positive("lr", self.lr)
        positive("v_std", self.v_std, zero=True)
        if self.M >= self.d:
            raise ValueError(f"M={self.M} irrelevant patterns in d={self.d} dimensions: expected M < d "
                             "(the patterns are orthonormal, and the task patterns need room too)")
        _check_fractions(self.delta_star, self.delta_hash)

    def setting(self) -> "Setting":
        """The Setting part of a chapter's parameters (a Setting subclass) as a plain Setting."""
        return Setting(**{f.name: getattr(self, f.name) for f in fields(Setting)})
