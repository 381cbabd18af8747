"""The merge methods of tvlib.vectors on the toy model's batched task vectors (Corollary 2's experiments).

A VectorGrid holds G x K toy task vectors as stacked tensors; these adapters view each as a TaskVector
with deltas "W" (d, d) and "V" (m, d), so the generic methods (row pruning, top-k, TIES, DARE) run on
them unchanged, and evaluate the merged models batched.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..params import fraction
from ..vectors.methods import METHODS, density, sparsify, ties_merge
from ..vectors.task_vector import TaskVector
from .data import Task
from .grid import DEFAULT_MAX_BYTES, VectorGrid, evaluate_merged

__all__ = ["split_task_vectors", "join_task_vectors", "map_task_vectors", "sparsity_sweep", "worse_error",
           "harmless_table"]


def split_task_vectors(vectors: VectorGrid) -> list[list[TaskVector]]:
    """The toy model's task vectors as TaskVector objects [g][k] with deltas "W" (d, d) and "V" (m, d)."""
    return [
        [TaskVector({"W": vectors.dW[g, k], "V": vectors.dV[g, k]}) for k in range(vectors.tasks)]
        for g in range(vectors.groups)
    ]


def join_task_vectors(like: VectorGrid, tvs: Sequence[Sequence[TaskVector]]) -> VectorGrid:
    """VectorGrid with the bases of `like` and tvs[g][k] ("W", "V" deltas) as task vector k of base g."""
    if len(tvs) != like.groups or not tvs or any(len(row) != len(tvs[0]) or not row for row in tvs):
        raise ValueError(
            f"tvs has rows of lengths {[len(r) for r in tvs]}: expected {like.groups} rows of equal, non-zero length"
        )
    dW = torch.stack([torch.stack([tv.deltas["W"] for tv in row]) for row in tvs])
    dV = torch.stack([torch.stack([tv.deltas["V"] for tv in row]) for row in tvs])
    return VectorGrid(like.W0, like.V0, like.a, dW, dV)


def map_task_vectors(vectors: VectorGrid, fn: Callable[[TaskVector], TaskVector]) -> VectorGrid:
    """VectorGrid with fn applied to every task vector (as a TaskVector with deltas "W" and "V"); bases unchanged."""
    return join_task_vectors(vectors, [[fn(tv) for tv in row] for row in split_task_vectors(vectors)])


def sparsity_sweep(
    vectors: VectorGrid,
    lams: Sequence[float],
    tasks: Sequence[Sequence[Task]],
    *,
    methods: Sequence[str],
    levels: Sequence[float],
    n: int,
    generator: torch.Generator,
    mask_seed: int = 0,
    task_names: Sequence[str] | None = None,
    row_keys: Sequence[str] | None = ("V",),
    scope: str = "global",
    max_bytes: int = DEFAULT_MAX_BYTES,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Hinge error and accuracy of Psi0_g + merge_vectors(method, vectors of g, lams, level) on tasks[g], for all g, methods, levels.

    One row per (method, level, group, task) with `kept`, the mean fraction of entries a sparsified
    task vector keeps (for "ties": its trim; "dare": the drawn masks). DARE's masks come from
    torch.Generator().manual_seed(mask_seed + g) for group g; evaluation samples from `generator`,
    the same for every method and level. Sparsifying runs on the CPU; the merged models are
    evaluated on `device`.
    """
    lams = [float(x) for x in lams]
    if len(lams) != vectors.tasks:
        raise ValueError(f"got {len(lams)} lams for {vectors.tasks} task vectors per group: expected one per vector")
    methods, levels = list(methods), [fraction("level", x) for x in levels]
    if not methods or not levels:
        raise ValueError("methods and levels must be non-empty")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods {bad}: expected some of {METHODS}")
    E = len(tasks[0]) if tasks else 0
    names = list(task_names) if task_names is not None else [f"task {e}" for e in range(E)]
    if len(names) != E:
        raise ValueError(f"{len(names)} task_names for {E} tasks per group: expected one name per task")
    merged, kept = [], []
    for g, row in enumerate(split_task_vectors(vectors)):
        gen = torch.Generator().manual_seed(mask_seed + g)
        out_row, kept_row = [], []
        for method in methods:
            for level in levels:
                parts = [sparsify(method, tv, level, generator=gen, row_keys=row_keys, scope=scope) for tv in row]
                used = [p for p, lam in zip(parts, lams) if lam != 0] or parts
                kept_row.append(sum(density(p) for p in used) / len(used))
                if method == "ties":
                    out_row.append(ties_merge(row, density=level, weights=lams, scope=scope))
                else:
                    out_row.append(sum(lam * p for lam, p in zip(lams, parts)))
        merged.append(out_row)
        kept.append(kept_row)
    C = len(methods) * len(levels)
    ev = evaluate_merged(join_task_vectors(vectors, merged), torch.eye(C), tasks, n=n, generator=generator,
                         max_bytes=max_bytes, device=device)
    rows = []
    for g in range(vectors.groups):
        for i, method in enumerate(methods):
            for j, level in enumerate(levels):
                c = i * len(levels) + j
                for e in range(E):
                    rows.append((method, level, kept[g][c], g, names[e],
                                 float(ev.error[g, c, e]), float(ev.accuracy[g, c, e])))
    return pd.DataFrame(rows, columns=["method", "level", "kept", "seed", "task", "error", "accuracy"])


def worse_error(frame: pd.DataFrame, method: str, level: float, tasks: Sequence[str] | None = None) -> np.ndarray:
    """Per seed (sorted): the largest hinge error over `tasks` (default: all) of one method and level of a
    sparsity_sweep frame."""
    f = frame[(frame["method"] == method) & np.isclose(frame["level"], level)]
    if tasks is not None:
        f = f[f["task"].isin(list(tasks))]
    if f.empty:
        raise ValueError(f"no rows for method={method!r}, level={level}, tasks={tasks}: expected them in the frame")
    return f.groupby("seed")["error"].max().sort_index().to_numpy()


def harmless_table(
    frames: dict[str, pd.DataFrame],
    tasks: dict[str, Sequence[str]],
    methods: Sequence[str],
    levels: Sequence[float],
    *,
    factor: float = 2.0,
    reference: str = "sum",
) -> tuple[pd.DataFrame, dict[tuple[str, float], object]]:
    """Which sparsified merges are harmless: per method and level, a seed is harmless when for every operation
    (frames[op], its tasks[op]) the worse error is at most factor times that of the dense merge (`reference`
    at level 1); judged by tvlib.rules.fraction_of_seeds with words "harmless" / "harmful".

    Returns a table (one row per method, one column per level: the seed-mean worse error of the first
    operation and the verdict) and the verdicts by (method, level).
    """
    from ..rules import fraction_of_seeds

    dense = {op: worse_error(frames[op], reference, 1.0, tasks[op]) for op in frames}
    first = next(iter(frames))
    verdicts, rows = {}, []
    for method in methods:
        row = {"method": method}
        for level in levels:
            ok = np.all([worse_error(frames[op], method, level, tasks[op]) <= factor * dense[op] for op in frames], 0)
            v = fraction_of_seeds(ok, words=("harmless", "harmful"))
            verdicts[method, float(level)] = v
            row[f"{level:.0%} kept"] = f"{worse_error(frames[first], method, level, tasks[first]).mean():.3f} {v.word}"
        rows.append(row)
    return pd.DataFrame(rows), verdicts
