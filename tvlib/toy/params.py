"""Parameters of the toy-model chapters: the Setting plus each chapter's grids, checked together.

Each class mirrors one chapter's cell tagged `parameters` (tests/test_params.py checks that the
defaults agree); the chapter builds it with `Cls.from_cell(globals())`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..params import fraction, integer, number_list, positive, subset
from ..vectors.device import resolve_device
from .setting import Setting

__all__ = ["lam_grid", "NegationParams"]


def lam_grid(lam_min: float, lam_max: float, lam_step: float) -> np.ndarray:
    """lam_min, lam_min + lam_step, ..., lam_max, rounded to 2 decimals (no -0.0)."""
    positive("lam_step", lam_step)
    if not lam_min <= lam_max:
        raise ValueError(f"lam_min={lam_min} > lam_max={lam_max}: expected lam_min <= lam_max")
    return np.round(np.arange(lam_min, lam_max + lam_step / 2, lam_step), 2) + 0.0


@dataclass(frozen=True)
class NegationParams(Setting):
    """Theorem 2: Psi0 + dPsi_T1 + lam dPsi_T2 over task correlations alpha <= ... and lam <= 0."""

    chapter: ClassVar[str | None] = "negation"

    alphas: tuple[float, ...] = (-1.0, -0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)
    curve_alphas: tuple[float, ...] = (-0.8, -0.4, 0.0, 0.4, 0.8)
    lam_min: float = -3.0
    lam_max: float = 3.0
    lam_step: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_eval: int = 400
    sample_seed: int = 0
    factor: float = 2.0
    forget_factor: float = 0.95
    acc_level: float = 0.95
    chance: float = 0.5
    device: str = "cpu"
    threads: int = 1

    def check(self) -> None:
        super().check()
        number_list("alphas", self.alphas, lo=-1.0, hi=1.0)
        number_list("curve_alphas", self.curve_alphas, lo=-1.0, hi=1.0)
        subset("curve_alphas", self.curve_alphas, "alphas", self.alphas)
        lam_grid(self.lam_min, self.lam_max, self.lam_step)
        for s in self.seeds:
            integer("seeds", s, lo=0)
        integer("n_eval", self.n_eval)
        integer("sample_seed", self.sample_seed, lo=0)
        integer("threads", self.threads)
        positive("factor", self.factor)
        for name in ("forget_factor", "acc_level", "chance"):
            fraction(name, getattr(self, name))
        resolve_device(self.device)

    @property
    def lams(self) -> np.ndarray:
        """The lambda grid."""
        return lam_grid(self.lam_min, self.lam_max, self.lam_step)
