"""Parameters of the image chapter (book/images.md), checked alone and together.

`ImagesParams` mirrors the chapter's cell tagged `parameters` (tests/test_params.py checks that the
defaults agree); the chapter builds it with `ImagesParams.from_cell(globals())`. The task
relations (t1, t2, ood) are the ones chosen by the calibration of tvlib.images.calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..params import Params, fraction, integer, positive, subset, table
from ..vectors.device import resolve_device

__all__ = ["RELATIONS", "OOD_ROLES", "lam_grid", "ImagesParams"]

#: the three task relations of Table 1, in the order the chapter shows them
RELATIONS = ("irrelevant", "aligned", "contradictory")
#: the roles of the out-of-domain triple of Table 2
OOD_ROLES = ("T1", "T2", "T'")


def lam_grid(lam_min: float, lam_max: float, lam_step: float) -> tuple[float, ...]:
    """lam_min, lam_min + lam_step, ..., lam_max, rounded to 2 decimals (no -0.0)."""
    positive("lam_step", lam_step)
    if not lam_min <= lam_max:
        raise ValueError(f"lam_min={lam_min} > lam_max={lam_max}: expected lam_min <= lam_max")
    grid = np.round(np.arange(lam_min, lam_max + lam_step / 2, lam_step), 2) + 0.0
    return tuple(float(v) for v in grid)


def _pair(name: str, value: Any) -> tuple[float, float]:
    """(r_o, r_e): two fractions of red digits."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name}={value!r}: expected a pair (r_o, r_e) of fractions of red digits")
    return fraction(f"{name}[0] (r_o)", value[0]), fraction(f"{name}[1] (r_e)", value[1])


def _pairs(name: str, value: Any, keys: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """{key: (r_o, r_e)} with exactly `keys`."""
    if not isinstance(value, dict) or set(value) != set(keys):
        got = sorted(value) if isinstance(value, dict) else value
        raise ValueError(f"{name}={got!r}: expected a dict with the keys {list(keys)}")
    return {k: _pair(f"{name}[{k!r}]", value[k]) for k in keys}


@dataclass(frozen=True)
class ImagesParams(Params):
    """Section 6's Colored-MNIST experiment, redone on colored 8x8 digits and a small ViT."""

    chapter: ClassVar[str | None] = "images"

    device: str = "cpu"
    threads: int = 1
    dtype: str = "float64"
    split_seed: int = 0
    test_fraction: float = 0.3
    patch_size: int = 4
    dim: int = 32
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 64
    pre_epochs: int = 2
    pre_lr: float = 3e-3
    pre_seed: int = 0
    head_seed: int = 0
    ft_epochs: int = 4
    ft_lr: float = 5e-4
    ft_loss: str = "hinge"
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)
    test_seed: int = 100
    probe_seed: int = 101
    t1: tuple[float, float] = (1.0, 0.05)
    t2: dict = field(default_factory=lambda: {"irrelevant": (0.5, 0.5), "aligned": (1.0, 0.1),
                                              "contradictory": (0.0, 1.0)})
    ood: dict = field(default_factory=lambda: {"T1": (0.0, 1.0), "T2": (1.0, 0.05), "T'": (0.05, 1.0)})
    lam_min: float = -2.0
    lam_max: float = 2.0
    lam_step: float = 0.2
    ood_min: float = -2.0
    ood_max: float = 3.0
    ood_step: float = 0.2
    heatmap_seeds: tuple[int, ...] = (0,)
    c: float = 0.2
    seeds_table: str = "images-seeds.csv"
    calibration_table: str = "images-calibration.csv"

    def check(self) -> None:
        resolve_device(self.device)
        integer("threads", self.threads)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: expected 'float32' or 'float64'")
        integer("split_seed", self.split_seed, lo=0)
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction}: expected a number strictly between 0 and 1")
        for name in ("patch_size", "dim", "depth", "heads", "mlp_dim", "pre_epochs", "ft_epochs", "batch_size"):
            integer(name, getattr(self, name))
        if 8 % self.patch_size or self.dim % self.heads:
            raise ValueError(f"patch_size={self.patch_size}, dim={self.dim}, heads={self.heads}: expected "
                             "patch_size to divide 8 and heads to divide dim")
        positive("pre_lr", self.pre_lr)
        positive("ft_lr", self.ft_lr)
        if self.ft_loss not in ("hinge", "cross_entropy"):
            raise ValueError(f"ft_loss={self.ft_loss!r}: expected 'hinge' or 'cross_entropy'")
        for name in ("pre_seed", "head_seed", "test_seed", "probe_seed"):
            integer(name, getattr(self, name), lo=0)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)}: expected a non-empty list of distinct seeds")
        for s in self.seeds:
            integer("seeds", s, lo=0)
        subset("heatmap_seeds", self.heatmap_seeds, "seeds", self.seeds)
        _pair("t1", self.t1)
        _pairs("t2", self.t2, RELATIONS)
        _pairs("ood", self.ood, OOD_ROLES)
        for name, grid, needs in (("lam", self.lams, (0.0, 1.0)), ("ood", self.ood_lams, (0.0,))):
            if not all(any(abs(g - v) < 1e-9 for g in grid) for v in needs):
                raise ValueError(f"{name}_min={getattr(self, name + '_min')}, {name}_max="
                                 f"{getattr(self, name + '_max')}, {name}_step={getattr(self, name + '_step')}: "
                                 f"expected a grid that contains {list(needs)}")
        if not min(self.lams) < 0:
            raise ValueError(f"lam_min={self.lam_min}: expected some lambda < 0 (negation, and the fit of beta)")
        if not 0.0 < self.c < 1.0:
            raise ValueError(f"c={self.c}: expected Theorem 3's constant in (0, 1)")
        table("seeds_table", self.seeds_table)
        table("calibration_table", self.calibration_table, optional=False)

    @property
    def lams(self) -> tuple[float, ...]:
        """The lambda grid of Figure 1 and Table 1."""
        return lam_grid(self.lam_min, self.lam_max, self.lam_step)

    @property
    def ood_lams(self) -> tuple[float, ...]:
        """The grid of lambda_1 and lambda_2 of Table 2 and Figure 2."""
        return lam_grid(self.ood_min, self.ood_max, self.ood_step)

    def model(self) -> dict[str, int]:
        """Keyword arguments of tvlib.images.vit.ViT (without n_classes and seed)."""
        return dict(patch_size=self.patch_size, dim=self.dim, depth=self.depth, heads=self.heads,
                    mlp_dim=self.mlp_dim)
