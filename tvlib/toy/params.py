"""Parameters of the toy-model chapters: the Setting plus each chapter's grids, checked together.

Each class mirrors one chapter's cell tagged `parameters` (tests/test_params.py checks that the
defaults agree); the chapter builds it with `Cls.from_cell(globals())`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..params import fraction, integer, number_list, positive, subset, table
from ..paper import OOD_GAMMA, OOD_LAM_GRID
from ..vectors.device import resolve_device
from .data import _check_fractions
from .setting import Setting

__all__ = ["lam_grid", "two_step_grid", "SettingParams", "FinetuningParams", "AdditionParams", "NegationParams", "OodParams", "LowRankParams", "SparseParams"]


def lam_grid(lam_min: float, lam_max: float, lam_step: float) -> np.ndarray:
    """lam_min, lam_min + lam_step, ..., lam_max, rounded to 2 decimals (no -0.0)."""
    positive("lam_step", lam_step)
    if not lam_min <= lam_max:
        raise ValueError(f"lam_min={lam_min} > lam_max={lam_max}: expected lam_min <= lam_max")
    return np.round(np.arange(lam_min, lam_max + lam_step / 2, lam_step), 2) + 0.0


def two_step_grid(lam_min: float, lam_fine_min: float, lam_max: float, coarse_step: float,
                  fine_step: float) -> np.ndarray:
    """A coarse grid from lam_min up to (not including) lam_fine_min, then a fine one up to lam_max."""
    if not lam_min <= lam_fine_min <= lam_max:
        raise ValueError(f"lam_min={lam_min}, lam_fine_min={lam_fine_min}, lam_max={lam_max}: "
                         "expected lam_min <= lam_fine_min <= lam_max")
    fine = lam_grid(lam_fine_min, lam_max, fine_step)
    coarse = lam_grid(lam_min, lam_fine_min, coarse_step)
    return np.concatenate([coarse[coarse < lam_fine_min - 1e-9], fine])


def _common(p: Setting, *, seeds: bool = True) -> None:
    """Checks shared by the sweep chapters: seeds, evaluation size, sample stream, threads, device."""
    if seeds:
        if len(p.seeds) == 0:  # type: ignore[attr-defined]
            raise ValueError("seeds is empty: expected at least one seed")
        for s in p.seeds:  # type: ignore[attr-defined]
            integer("seeds", s, lo=0)
        if len(set(p.seeds)) != len(p.seeds):  # type: ignore[attr-defined]
            raise ValueError(f"seeds={list(p.seeds)} has repeated seeds: expected distinct seeds")  # type: ignore[attr-defined]
    for name in ("n_eval", "threads"):
        if hasattr(p, name):
            integer(name, getattr(p, name))
    if hasattr(p, "sample_seed"):
        integer("sample_seed", p.sample_seed, lo=0)  # type: ignore[attr-defined]
    if hasattr(p, "device"):
        resolve_device(p.device)  # type: ignore[attr-defined]


def _has_zero(name: str, alphas: tuple, why: str) -> None:
    if not any(abs(a) < 1e-9 for a in alphas):
        raise ValueError(f"{name}={list(alphas)} has no 0.0: expected alpha = 0 in {name} ({why})")


@dataclass(frozen=True)
class SettingParams(Setting):
    """The setting chapter: the book's sizes and SGD hyperparameters, and one seed."""

    chapter: ClassVar[str | None] = "setting"

    seed: int = 0

    def check(self) -> None:
        super().check()
        integer("seed", self.seed, lo=0)


@dataclass(frozen=True)
class FinetuningParams(Setting):
    """Fine-tuning: replicas of one task, the step count against delta_star and eta, and the task vector."""

    chapter: ClassVar[str | None] = "finetuning"

    runs: int = 8
    seed: int = 0
    n_eval: int = 4000
    small_error: float = 0.1
    delta_stars: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5)
    lrs: tuple[float, ...] = (0.5, 1.0, 2.0)
    runs_per_lr: int = 4
    level: float = 0.2
    v_stds: tuple[float, ...] = (0.01, 0.3, 1.0)
    threads: int = 1

    def check(self) -> None:
        super().check()
        integer("runs", self.runs)
        integer("seed", self.seed, lo=0)
        integer("runs_per_lr", self.runs_per_lr)
        _common(self, seeds=False)
        fraction("small_error", self.small_error)
        for ds in number_list("delta_stars", self.delta_stars, lo=0.0, hi=1.0):
            try:
                _check_fractions(ds, self.delta_hash)
            except ValueError as err:
                raise ValueError(f"delta_stars entry {ds} with delta_hash={self.delta_hash}: {err}") from None
        if len(self.delta_stars) < 2 or len(self.lrs) < 2:
            raise ValueError(f"delta_stars={list(self.delta_stars)}, lrs={list(self.lrs)}: expected at least two "
                             "values of each (the chapter fits exponents)")
        for lr in number_list("lrs", self.lrs):
            positive("lrs", lr)
        fraction("level", self.level)
        for v in number_list("v_stds", self.v_stds):
            positive("v_stds", v, zero=True)


@dataclass(frozen=True)
class AdditionParams(Setting):
    """Theorem 1: Psi0 + dPsi_T1 + lam dPsi_T2 over task correlations alpha and coefficients lam."""

    chapter: ClassVar[str | None] = "addition"

    alphas: tuple[float, ...] = (-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)
    curve_alphas: tuple[float, ...] = (-0.8, 0.0, 0.8)
    lam_min: float = -2.0
    lam_max: float = 3.0
    lam_step: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_eval: int = 400
    sample_seed: int = 0
    factor: float = 2.0
    factors: tuple[float, ...] = (1.0, 1.5, 2.0)
    fit_max: float = 1.0
    predict_max: float = 2.0
    acc_level: float = 0.95
    device: str = "cpu"
    threads: int = 1

    def check(self) -> None:
        super().check()
        number_list("alphas", self.alphas, lo=-1.0, hi=1.0)
        number_list("curve_alphas", self.curve_alphas, lo=-1.0, hi=1.0)
        subset("curve_alphas", self.curve_alphas, "alphas", self.alphas)
        _has_zero("alphas", self.alphas, "beta-hat is measured on irrelevant tasks")
        if sum(a >= 0 for a in self.alphas) < 2:
            raise ValueError(f"alphas={list(self.alphas)}: expected at least two alphas >= 0 (the threshold line)")
        lam_grid(self.lam_min, self.lam_max, self.lam_step)
        _common(self)
        for f in number_list("factors", self.factors, lo=1.0):
            positive("factors", f)
        positive("factor", self.factor)
        subset("factor", [self.factor], "factors", self.factors)
        positive("fit_max", self.fit_max)
        if not self.fit_max < self.predict_max <= -self.lam_min + 1e-9 or self.lam_max <= 0:
            raise ValueError(f"fit_max={self.fit_max}, predict_max={self.predict_max}, lam_min={self.lam_min}, "
                             f"lam_max={self.lam_max}: expected fit_max < predict_max <= -lam_min and lam_max > 0")
        fraction("acc_level", self.acc_level)

    @property
    def lams(self) -> np.ndarray:
        """The lambda grid."""
        return lam_grid(self.lam_min, self.lam_max, self.lam_step)


@dataclass(frozen=True)
class NegationParams(Setting):
    """Theorem 2: Psi0 + dPsi_T1 + lam dPsi_T2 over task correlations alpha, lam from -10 (coarse) to 3."""

    chapter: ClassVar[str | None] = "negation"

    alphas: tuple[float, ...] = (-1.0, -0.8, -0.7, -0.6, -0.5, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)
    curve_alphas: tuple[float, ...] = (-0.8, 0.0, 0.8)
    lam_min: float = -10.0
    lam_fine_min: float = -3.0
    lam_max: float = 3.0
    lam_coarse_step: float = 0.5
    lam_step: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_eval: int = 400
    sample_seed: int = 0
    factor: float = 2.0
    fit_max: float = 1.0
    c: float = 0.2
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
        _has_zero("alphas", self.alphas, "beta-hat and case (A) are measured on irrelevant tasks")
        two_step_grid(self.lam_min, self.lam_fine_min, self.lam_max, self.lam_coarse_step, self.lam_step)
        if not self.lam_fine_min <= -self.fit_max < 0 < self.lam_max:
            raise ValueError(f"lam_fine_min={self.lam_fine_min}, fit_max={self.fit_max}, lam_max={self.lam_max}: "
                             "expected lam_fine_min <= -fit_max < 0 < lam_max (beta-hat is fitted on the fine grid)")
        _common(self)
        positive("factor", self.factor)
        if not 0 < self.c < 1:
            raise ValueError(f"c={self.c!r}: expected the constant of '|lam| beta <= c' in (0, 1), as in condition (7)")
        for name in ("forget_factor", "acc_level", "chance"):
            fraction(name, getattr(self, name))

    @property
    def lams(self) -> np.ndarray:
        """The lambda grid: coarse below lam_fine_min, fine above."""
        return two_step_grid(self.lam_min, self.lam_fine_min, self.lam_max, self.lam_coarse_step, self.lam_step)


def _seed_list(name: str, seeds: tuple) -> None:
    if len(seeds) == 0:
        raise ValueError(f"{name} is empty: expected at least one seed")
    for s in seeds:
        integer(name, s, lo=0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name}={list(seeds)} has repeated seeds: expected distinct seeds")


def _gamma_pair(name: str, gamma: tuple) -> tuple[float, float]:
    pair = number_list(name, gamma, distinct=False, lo=-1.0, hi=1.0)
    if len(pair) != 2 or pair[0] ** 2 + pair[1] ** 2 > 1 + 1e-9:
        raise ValueError(f"{name}={list(gamma)}: expected (gamma_1, gamma_2) with gamma_1^2 + gamma_2^2 <= 1")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class OodParams(Setting):
    """Theorem 3: Psi0 + lam1 dPsi_T1 + lam2 dPsi_T2 on an out-of-domain target T'(gamma) and on gamma = 0.

    gamma = () stands for the paper's Table 2 estimate (tvlib.paper.OOD_GAMMA) divided by its norm; the
    default grid is the paper's search grid (tvlib.paper.OOD_LAM_GRID). edges_table is the tvlib-batch
    table of the edge sweep, relative to the chapter's folder ("" skips it).
    """

    chapter: ClassVar[str | None] = "ood"

    gamma: tuple[float, ...] = ()
    lam1_min: float = OOD_LAM_GRID[0]
    lam1_max: float = OOD_LAM_GRID[1]
    lam2_min: float = OOD_LAM_GRID[0]
    lam2_max: float = OOD_LAM_GRID[1]
    lam_step: float = OOD_LAM_GRID[2]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_eval: int = 300
    sample_seed: int = 0
    c: float = 0.2
    factor: float = 2.0
    edges_table: str = "ood-edges.csv"
    device: str = "cpu"
    threads: int = 1

    def check(self) -> None:
        super().check()
        if self.gamma:
            g = _gamma_pair("gamma", self.gamma)
            if not g[0] > 0:
                raise ValueError(f"gamma={list(self.gamma)}: expected gamma_1 > 0 (the edges are lower bounds on lam1)")
        lam_grid(self.lam1_min, self.lam1_max, self.lam_step)
        lam_grid(self.lam2_min, self.lam2_max, self.lam_step)
        _seed_list("seeds", self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds={list(self.seeds)}: the verdicts need at least two seeds")
        integer("n_eval", self.n_eval)
        integer("sample_seed", self.sample_seed, lo=0)
        integer("threads", self.threads)
        if not 0 < self.c < 1:
            raise ValueError(f"c={self.c!r}: expected the constant of condition (7) in (0, 1)")
        positive("factor", self.factor)
        table("edges_table", self.edges_table)
        resolve_device(self.device)

    @property
    def target_gamma(self) -> tuple[float, float]:
        """The target's (gamma_1, gamma_2): the parameter, or the paper's estimate divided by its norm."""
        g = self.gamma or OOD_GAMMA
        if self.gamma:
            return (float(g[0]), float(g[1]))
        n = float(np.hypot(*g))
        return (float(g[0]) / n, float(g[1]) / n)

    @property
    def lams1(self) -> np.ndarray:
        return lam_grid(self.lam1_min, self.lam1_max, self.lam_step)

    @property
    def lams2(self) -> np.ndarray:
        return lam_grid(self.lam2_min, self.lam2_max, self.lam_step)


@dataclass(frozen=True)
class LowRankParams(Setting):
    """Corollary 1: the addition, negation and out-of-domain sweeps again with rank-r task vectors."""

    chapter: ClassVar[str | None] = "lowrank"

    alphas: tuple[float, ...] = (-0.8, 0.0, 0.8)
    lam_min: float = -2.0
    lam_max: float = 3.0
    lam_step: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_eval: int = 300
    rank: int = 1
    max_rank: int = 8
    explore_ranks: tuple[int, ...] = (1, 2, 4)
    ood_step: float = 0.4
    factor: float = 2.0
    c: float = 0.2
    lora_rank: int = 2
    sample_seed: int = 0
    device: str = "cpu"
    threads: int = 1

    def check(self) -> None:
        super().check()
        number_list("alphas", self.alphas, lo=-1.0, hi=1.0)
        if 0.0 not in self.alphas:
            raise ValueError(f"alphas={list(self.alphas)}: expected 0.0 among them (beta and lam* are read at alpha = 0)")
        if not self.alphas[0] < 0:
            raise ValueError(f"alphas={list(self.alphas)}: expected a contradictory pair (alpha < 0) first, for negation")
        lams = lam_grid(self.lam_min, self.lam_max, self.lam_step)
        if not (lams.min() < 0 < lams.max()):
            raise ValueError(f"lam_min={self.lam_min}, lam_max={self.lam_max}: expected a grid on both sides of 0")
        lam_grid(OOD_LAM_GRID[0], OOD_LAM_GRID[1], self.ood_step)
        _seed_list("seeds", self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds={list(self.seeds)}: the verdicts need at least two seeds")
        for name in ("n_eval", "rank", "max_rank", "lora_rank", "threads"):
            integer(name, getattr(self, name))
        if not 2 <= self.max_rank <= min(self.d, self.m):
            raise ValueError(f"max_rank={self.max_rank}: expected 2 <= max_rank <= min(d, m) = {min(self.d, self.m)}")
        if self.rank > self.max_rank:
            raise ValueError(f"rank={self.rank} > max_rank={self.max_rank}: expected rank <= max_rank")
        for r in self.explore_ranks:
            integer("explore_ranks", r)
        subset("explore_ranks", self.explore_ranks, "1 ... max_rank", list(range(1, self.max_rank + 1)))
        subset("rank", [self.rank], "explore_ranks", self.explore_ranks)
        integer("sample_seed", self.sample_seed, lo=0)
        if not 0 < self.c < 1:
            raise ValueError(f"c={self.c!r}: expected the constant of condition (7) in (0, 1)")
        positive("factor", self.factor)
        resolve_device(self.device)

    @property
    def lams(self) -> np.ndarray:
        return lam_grid(self.lam_min, self.lam_max, self.lam_step)

    @property
    def ood_lams(self) -> np.ndarray:
        """The out-of-domain grid of lambda_1 and of lambda_2: the range of Table 2 at step ood_step."""
        return lam_grid(OOD_LAM_GRID[0], OOD_LAM_GRID[1], self.ood_step)


@dataclass(frozen=True)
class SparseParams(Setting):
    """Corollary 2 in its width regime (d = 12, M = 8, m = 256 > M^2 log M): row norms of dV, pruning the
    small rows, and merging pruned task vectors at growing sparsity. widths_table is the tvlib-batch table
    of the width sweep, relative to the chapter's folder ("" skips it)."""

    chapter: ClassVar[str | None] = "sparse"

    d: int = 12
    M: int = 8
    m: int = 256
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    add_lams: tuple[float, ...] = (1.0, 1.0)
    neg_lams: tuple[float, ...] = (1.0, -1.0)
    methods: tuple[str, ...] = ("rows", "topk", "ties", "dare")
    levels: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
    n_eval: int = 300
    sample_seed: int = 0
    mask_seed: int = 0
    factor: float = 2.0
    widths_table: str = "sparse-widths.csv"
    device: str = "cpu"
    threads: int = 1

    def check(self) -> None:
        super().check()
        if self.d < self.M + 3:
            raise ValueError(f"d={self.d}, M={self.M}: expected d >= M + 3 (two source patterns, the target's "
                             "own direction and the M irrelevant patterns are orthonormal)")
        _seed_list("seeds", self.seeds)
        if len(self.seeds) < 2:
            raise ValueError(f"seeds={list(self.seeds)}: the verdicts need at least two seeds")
        for name in ("add_lams", "neg_lams"):
            if len(number_list(name, getattr(self, name), distinct=False)) != 2:
                raise ValueError(f"{name}={list(getattr(self, name))}: expected two coefficients (T1, T2)")
        subset("the methods the text compares", ("rows", "topk", "ties", "dare"), "methods", self.methods)
        bad = [x for x in self.methods if x not in ("rows", "topk", "ties", "dare")]
        if bad:
            raise ValueError(f"methods={list(self.methods)}: {bad} unknown; expected rows, topk, ties and dare")
        number_list("levels", self.levels, lo=1e-9, hi=1.0)
        subset("the levels the text quotes", (1.0, 0.5, 0.2, 0.1, 0.02, 0.01), "levels", self.levels)
        for name in ("n_eval", "threads"):
            integer(name, getattr(self, name))
        integer("sample_seed", self.sample_seed, lo=0)
        integer("mask_seed", self.mask_seed, lo=0)
        positive("factor", self.factor)
        table("widths_table", self.widths_table)
        resolve_device(self.device)
