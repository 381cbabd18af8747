"""Corollaries 1 and 2 on real task vectors: spectral energy and row norms per layer type, and a random control.

`energy` is the share of a matrix delta's squared Frobenius norm held by its top-k singular values;
`row_mass` the smallest share of rows that holds a given share of the squared norm (a task vector
whose rows are few and large has a small one); `random_like` a random direction with the same norm
in every tensor, the control for "any change of this size would do it".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..vectors.task_vector import TaskVector
from .model import layer_type

__all__ = ["matrices", "energy", "row_mass", "random_like"]


def matrices(tv: TaskVector, kind: str) -> list[str]:
    """Keys of the 2-D deltas of one layer type ('attention' or 'mlp')."""
    return [k for k, s in tv.shapes().items() if len(s) == 2 and layer_type(k) == kind]


def energy(tv: TaskVector, kind: str, ks: Sequence[int]) -> dict[int, float]:
    """{k: mean over the layer type's matrices of (sum of the top-k squared singular values) / ||delta||_F^2}."""
    shares: dict[int, list[float]] = {k: [] for k in ks}
    for key in matrices(tv, kind):
        s2 = torch.linalg.svdvals(tv.deltas[key].double()) ** 2
        total = float(s2.sum())
        for k in ks:
            shares[k].append(float(s2[:k].sum()) / total if total > 0 else float("nan"))
    return {k: float(np.nanmean(v)) if v else float("nan") for k, v in shares.items()}


def row_mass(tv: TaskVector, kind: str = "mlp", share: float = 0.9) -> float:
    """Mean over the layer type's matrices of the fewest rows (as a fraction) holding `share` of the squared norm."""
    out = []
    for key in matrices(tv, kind):
        r2 = (tv.deltas[key].double() ** 2).sum(1)
        total = float(r2.sum())
        if total <= 0:
            continue
        cum = torch.cumsum(torch.sort(r2, descending=True).values, 0) / total
        out.append((int(torch.searchsorted(cum, torch.tensor(share, dtype=cum.dtype))) + 1) / r2.numel())
    return float(np.mean(out)) if out else float("nan")


def random_like(tv: TaskVector, seed: int) -> TaskVector:
    """A Gaussian direction with the norm of tv in every tensor, drawn from seed."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in tv.keys():
        d = tv.deltas[k]
        r = torch.randn(d.shape, generator=g, dtype=d.dtype).to(d.device)
        out[k] = r * (d.norm() / r.norm()) if float(r.norm()) > 0 else r
    return TaskVector(out)
