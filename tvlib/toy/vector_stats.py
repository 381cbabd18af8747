"""The task vectors themselves, measured: what Section 4 and Corollaries 1-2 say about their shape.

pattern_ratios: how strongly each task vector reads a pattern, relative to another (the first-order
picture: alpha^2 through attention, alpha through the values). rank_residuals: each matrix's distance
to its best rank-r approximation (Corollary 1: a rank-one approximation is close). row_norm_stats: the
two scales of the rows of dV (Corollary 2: a constant fraction of rows at least m^-1/2, all others at
most m^-1/2 sqrt(log B / B)).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = [
    "pattern_ratios",
    "rank_residuals",
    "row_norm_stats",
]


def pattern_ratios(dW: Tensor, dV: Tensor, mu: Tensor, *, ref: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """How strongly each of K task vectors reads pattern mu, relative to task vector `ref`.

    dW (K, d, d), dV (K, m, d). Attention: mu^T dW_k mu / mu^T dW_ref mu. Value: the projection of
    the neurons' read-out dV_k mu on dV_ref mu, divided by |dV_ref mu|^2. For T2 against T1 the
    first-order picture predicts alpha^2 (attention ignores the sign of mu) and alpha (values carry it).
    """
    if dW.ndim != 3 or dV.ndim != 3 or dW.shape[0] != dV.shape[0] or mu.shape != (dW.shape[-1],):
        raise ValueError(
            f"dW {tuple(dW.shape)}, dV {tuple(dV.shape)}, mu {tuple(mu.shape)}: expected (K, d, d), (K, m, d), (d,)"
        )
    w = torch.einsum("i,kij,j->k", mu, dW, mu)
    read = dV @ mu  # (K, m)
    v = read @ read[ref] / (read[ref] @ read[ref])
    return (w / w[ref]).numpy(), v.numpy()


def rank_residuals(deltas: dict[str, Tensor], ranks: Sequence[int]) -> dict[str, np.ndarray]:
    """||D - D_r||_F of the best rank-r approximation (truncated SVD) of every matrix in a stack D (runs, a, b),
    for each key and each r in ranks: arrays (runs, len(ranks))."""
    out = {}
    for k, D in deltas.items():
        s = torch.linalg.svdvals(D.double())  # (runs, min(a, b)), descending
        tail = torch.flip(torch.cumsum(torch.flip(s**2, [-1]), -1), [-1])  # tail[j] = sum_{i >= j} s_i^2
        tail = torch.cat([tail, torch.zeros_like(tail[..., :1])], -1)
        out[k] = torch.stack([tail[..., min(int(r), s.shape[-1])].sqrt() for r in ranks], -1).numpy()
    return out


def row_norm_stats(dV: Tensor, batch_size: int) -> pd.DataFrame:
    """Corollary 2's two scales on the rows u_i of stacked dV (runs, m, d), one row per run, in units of m^-1/2:
    frac_large (||u_i|| >= m^-1/2), frac_small (<= m^-1/2 sqrt(log B / B)), frac_gap (in between), and the
    min, 5 % quantile and median of ||u_i|| sqrt(m)."""
    if dV.ndim != 3 or batch_size < 2:
        raise ValueError(f"dV of shape {tuple(dV.shape)}, batch_size={batch_size}: expected (runs, m, d) and B >= 2")
    r = (dV.norm(dim=-1) * dV.shape[1] ** 0.5).double()
    small = math.sqrt(math.log(batch_size) / batch_size)
    large_f, small_f = (r >= 1).double().mean(1), (r <= small).double().mean(1)
    return pd.DataFrame({
        "frac_large": large_f.numpy(), "frac_small": small_f.numpy(), "frac_gap": (1 - large_f - small_f).numpy(),
        "min": r.min(1).values.numpy(), "q05": r.quantile(0.05, dim=1).numpy(), "median": r.median(1).values.numpy(),
    })
