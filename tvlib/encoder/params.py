"""Parameters of the pre-trained-encoder chapter (book/pretrained.md), checked alone and together.

`PretrainedParams` mirrors the chapter's cell tagged `parameters` (tests/test_params.py checks that
the defaults agree). A task is written (sent, topic, share) as in tvlib.encoder.texts.Task; the
shares of the aligned and contradictory T2 and of T' are the ones the calibration
(tvlib.encoder.study.choose_shares) chose on the calibration seeds, never on the held-out seeds of the
verdicts (the chapter checks that its parameters hold that choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..images.params import lam_grid
from ..params import Params, integer, number_list, positive, table
from ..vectors.device import resolve_device
from .texts import Task

__all__ = ["RELATIONS", "OOD_ROLES", "PretrainedParams", "task_of"]

RELATIONS = ("irrelevant", "aligned", "contradictory")
OOD_ROLES = ("T1", "T2", "T'")


def task_of(name: str, value: Any, rule_seed: int = 0) -> Task:
    """A Task from a (sent, topic, share) triple, with a clear error naming the parameter."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{name}={value!r}: expected a triple (sent, topic, share)")
    try:
        return Task(int(value[0]), int(value[1]), float(value[2]), rule_seed)
    except ValueError as e:
        raise ValueError(f"{name}={value!r}: {e}") from None


@dataclass(frozen=True)
class PretrainedParams(Params):
    """Theorems 1-3 and Corollaries 1-2 on all-MiniLM-L6-v2, with generated sentence tasks."""

    chapter: ClassVar[str | None] = "pretrained"

    model_name: str = "shipped"
    device: str = "cpu"
    threads: int = 1
    seed: int = 3
    calibration_seeds: tuple[int, ...] = (0, 1, 2)
    heldout_seeds: tuple[int, ...] = (3, 4, 5, 6, 7)
    rule_seed: int = 0
    test_seed: int = 1000
    head_seed: int = 0
    head_scale: float = 4.0
    max_len: int = 16
    n_train: int = 1024
    n_test: int = 128
    steps: int = 30
    lr: float = 1e-4
    batch_size: int = 16
    freeze_embeddings: bool = True
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_lr: float = 1e-3
    t1: tuple = (1, 0, 1.0)
    t2: dict = field(default_factory=lambda: {"irrelevant": (0, 1, 1.0), "aligned": (1, 0, 0.917),
                                              "contradictory": (-1, 0, 0.917)})
    ood: dict = field(default_factory=lambda: {"T1": (1, 0, 1.0), "T2": (0, 1, 1.0), "T'": (1, -1, 0.542)})
    lam_min: float = -2.0
    lam_max: float = 2.0
    lam_step: float = 0.2
    ood_min: float = -2.0
    ood_max: float = 3.0
    ood_step: float = 0.5
    ranks: tuple[int, ...] = (1, 2, 4, 8, 32, 384)
    keeps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    c: float = 0.2
    seeds_table: str = "pretrained-seeds.csv"
    calibration_table: str = "pretrained-calibration.csv"

    def check(self) -> None:
        resolve_device(self.device)
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError(f"model_name={self.model_name!r}: expected 'shipped', a local folder or a hub id")
        for name in ("threads", "max_len", "n_train", "n_test", "steps", "batch_size", "lora_rank"):
            integer(name, getattr(self, name))
        for name in ("seed", "rule_seed", "test_seed", "head_seed"):
            integer(name, getattr(self, name), lo=0)
        for name in ("head_scale", "lr", "lora_alpha", "lora_lr"):
            positive(name, getattr(self, name))
        if not isinstance(self.freeze_embeddings, bool):
            raise ValueError(f"freeze_embeddings={self.freeze_embeddings!r}: expected True or False")
        for name in ("calibration_seeds", "heldout_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds):
                raise ValueError(f"{name}={list(seeds)}: expected a non-empty list of distinct seeds")
            for s in seeds:
                integer(name, s, lo=0)
        shared = set(self.calibration_seeds) & set(self.heldout_seeds)
        if shared:
            raise ValueError(f"seeds {sorted(shared)} are both calibration and held-out seeds: expected disjoint lists")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size={self.batch_size} > n_train={self.n_train}: expected a batch within the data")
        self.tasks()
        for name, grid, needs in (("lam", self.lams, (0.0, 1.0)), ("ood", self.ood_lams, (0.0,))):
            if not all(any(abs(g - v) < 1e-9 for g in grid) for v in needs):
                raise ValueError(f"{name}_min, {name}_max, {name}_step give {list(grid)}: expected a grid containing "
                                 f"{list(needs)}")
        if not min(self.lams) < 0:
            raise ValueError(f"lam_min={self.lam_min}: expected some lambda < 0 (negation)")
        for name in ("ranks",):
            for r in getattr(self, name):
                integer(name, r)
        number_list("keeps", self.keeps, lo=0.0, hi=1.0)
        if not 0.0 < self.c < 1.0:
            raise ValueError(f"c={self.c}: expected Theorem 3's constant in (0, 1)")
        table("seeds_table", self.seeds_table)
        table("calibration_table", self.calibration_table, optional=False)

    def tasks(self) -> dict[str, Task]:
        """{'T1', each relation, 'ood T1', 'ood T2', "ood T'"}: the tasks of this run."""
        if not isinstance(self.t2, dict) or set(self.t2) != set(RELATIONS):
            raise ValueError(f"t2={self.t2!r}: expected a dict with the keys {list(RELATIONS)}")
        if not isinstance(self.ood, dict) or set(self.ood) != set(OOD_ROLES):
            raise ValueError(f"ood={self.ood!r}: expected a dict with the keys {list(OOD_ROLES)}")
        out = {"T1": task_of("t1", self.t1, self.rule_seed)}
        out.update({r: task_of(f"t2[{r!r}]", self.t2[r], self.rule_seed) for r in RELATIONS})
        out.update({f"ood {k}": task_of(f"ood[{k!r}]", self.ood[k], self.rule_seed) for k in OOD_ROLES})
        return out

    @property
    def lams(self) -> tuple[float, ...]:
        return lam_grid(self.lam_min, self.lam_max, self.lam_step)

    @property
    def ood_lams(self) -> tuple[float, ...]:
        return lam_grid(self.ood_min, self.ood_max, self.ood_step)
