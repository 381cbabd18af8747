"""Model Breadcrumbs (Davari & Belilovsky 2023): in each tensor drop the largest entries (a fraction
gamma, the outliers) and the smallest, keeping a fraction `density` in between; sum, or TIES's
election and mean (breadcrumbs_ties). Counts as mergekit's: keep int(density n), drop the int(gamma n)
largest, fewer where both do not fit."""

import torch
from torch import Tensor

from ..kernels import band_mask, l1_rescale
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:
        return d
    n = d.numel()
    keep = int(c.density * n)
    bottom = max(0, n - keep - int(c.options["gamma"] * n))
    mask = band_mask(d.abs(), keep, n - bottom - keep)
    out = d * mask
    return l1_rescale(out, d.abs().sum(dtype=torch.float64)) if c.recipe.rescale == "l1" else out


METHODS = (
    Method("breadcrumbs", trim=trim, kind="breadcrumbs", densities=True, model_options={"gamma": 0.01},
           summary="drop the largest (gamma) and the smallest entries, keep density; sum",
           mergekit={"normalize": "none", "rescale": "none"}),
    Method("breadcrumbs_ties", trim=trim, combine="ties", kind="breadcrumbs", densities=True,
           model_options={"gamma": 0.01}, summary="breadcrumbs' trim; elect signs; sum of the agreeing entries",
           mergekit={"normalize": "none", "rescale": "none", "zero_sum": "plus"}),
)
