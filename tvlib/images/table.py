"""One run of the image chapter as one row of numbers, and the multi-seed table read back into arrays.

The chapter glues every number of its run under the names made here (so `tvlib-batch collect`
gathers one row per pre-training seed), and draws its multi-seed figures from that table with
`curves`, `heat` and `scalars`. Names: `c_<relation>_<T1|T2>_<acc|err>_<lambda>` for Figure 1,
`h_<lambda1>_<lambda2>` for Figure 2, plain names for everything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .params import RELATIONS

__all__ = ["curve_key", "heat_key", "curve_columns", "heat_columns", "curves", "heat", "scalars"]

_CURVE = re.compile(r"^c_(?P<rel>[a-z]+)_(?P<task>T[12])_(?P<metric>acc|err)_(?P<lam>[+-]\d+\.\d)$")
_HEAT = re.compile(r"^h_(?P<l1>[+-]\d+\.\d)_(?P<l2>[+-]\d+\.\d)$")


def _lam(x: float) -> str:
    return f"{float(x) + 0.0:+.1f}"


def curve_key(relation: str, task: str, metric: str, lam: float) -> str:
    """Column of one point of Figure 1, e.g. c_aligned_T2_acc_+1.4."""
    return f"c_{relation}_{task}_{metric}_{_lam(lam)}"


def heat_key(lam1: float, lam2: float) -> str:
    """Column of one point of Figure 2, e.g. h_+1.2_-0.6."""
    return f"h_{_lam(lam1)}_{_lam(lam2)}"


def curve_columns(relation: str, lams: Sequence[float], acc: np.ndarray, err: np.ndarray) -> dict[str, float]:
    """Seed-mean accuracy and hinge error, arrays (seeds, lams, 2) for (T1, T2), as named numbers."""
    out = {}
    for metric, values in (("acc", acc), ("err", err)):
        mean = np.asarray(values, dtype=float).mean(0)
        for k, lam in enumerate(lams):
            for j, task in enumerate(("T1", "T2")):
                out[curve_key(relation, task, metric, lam)] = round(float(mean[k, j]), 6)
    return out


def heat_columns(lams1: Sequence[float], lams2: Sequence[float], acc: np.ndarray) -> dict[str, float]:
    """Accuracy on T' over the (lambda1, lambda2) grid, array (L1, L2), as named numbers."""
    return {heat_key(a, b): round(float(acc[i, j]), 6) for i, a in enumerate(lams1) for j, b in enumerate(lams2)}


def curves(table: pd.DataFrame, relation: str, metric: str = "acc") -> tuple[np.ndarray, np.ndarray]:
    """(lams, values (rows, lams, 2)) of one relation's T1 and T2 curves, one row per run of the table."""
    if relation not in RELATIONS:
        raise ValueError(f"relation={relation!r}: expected one of {RELATIONS}")
    found: dict[float, dict[str, str]] = {}
    for col in table.columns:
        m = _CURVE.match(str(col))
        if m and m["rel"] == relation and m["metric"] == metric:
            found.setdefault(float(m["lam"]), {})[m["task"]] = col
    lams = np.array(sorted(found))
    if not len(lams) or any(len(found[lam]) != 2 for lam in lams):
        raise ValueError(f"the table has no complete {metric} curves of {relation}: expected c_{relation}_T1/T2_...")
    values = np.stack([table[[found[lam]["T1"], found[lam]["T2"]]].to_numpy(float) for lam in lams], axis=1)
    return lams, values


def heat(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lams1, lams2, accuracy (rows, L1, L2)) of Figure 2's grid, one row per run of the table."""
    cells = {(float(m["l1"]), float(m["l2"])): col for col in table.columns if (m := _HEAT.match(str(col)))}
    l1, l2 = np.array(sorted({a for a, _ in cells})), np.array(sorted({b for _, b in cells}))
    if not cells or len(cells) != len(l1) * len(l2):
        raise ValueError(f"the table has {len(cells)} h_ columns: expected a full (lambda1, lambda2) grid")
    acc = np.stack([[table[cells[a, b]].to_numpy(float) for b in l2] for a in l1])  # (L1, L2, rows)
    return l1, l2, np.moveaxis(acc, -1, 0)


def scalars(table: pd.DataFrame, names: Sequence[str] | Mapping[str, str]) -> dict[str, np.ndarray]:
    """{name: values per row} of plain columns, with a clear error for a missing one."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table: expected every run to glue them")
    return {n: table[n].to_numpy(float) for n in names}
