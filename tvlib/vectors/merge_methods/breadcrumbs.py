"""Model Breadcrumbs (Davari & Belilovsky 2023): in each tensor drop the largest entries (a fraction
gamma, the outliers) and the smallest, keeping a fraction `density` in between; sum, or TIES's
election and mean (breadcrumbs_ties). Counts as mergekit's: keep int(density n), drop the int(gamma n)
largest, fewer where both do not fit."""

import torch
from torch import Tensor

from ..kernels import band_mask, l1_rescale, top_mask
from .base import Method, TrimCall


def counts(n: int, density: float, gamma: float) -> tuple[int, int]:
    """(entries kept, largest entries skipped) of a tensor of n entries, as mergekit counts them."""
    keep = int(density * n)
    bottom = max(0, n - keep - int(gamma * n))
    return keep, n - bottom - keep


def trim(d: Tensor, c: TrimCall) -> Tensor:
    if c.density >= 1:
        return d
    bands = getattr(c.state, "bands", None)
    if bands is not None:  # a piece: the tensor's two thresholds were found beforehand
        upper, skipped = bands[c.i]
        mag = d.abs()
        mask, upper[1] = top_mask(mag, upper[0], upper[1])
        top, skipped[1] = top_mask(mag, skipped[0], skipped[1])
        return d * (mask & ~top)
    keep, skip = counts(d.numel(), c.density, c.options["gamma"])
    mask = band_mask(d.abs(), keep, skip)
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
