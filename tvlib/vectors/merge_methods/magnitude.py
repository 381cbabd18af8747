"""Magnitude top-k: keep the fraction `density` of each vector's largest entries (scope "global": over the
whole vector, one threshold found by radix select; "tensor": each tensor alone); sum. Also TIES's trim."""

import torch
from torch import Tensor

from ..kernels import l1_rescale, top_mask, topk_tensor
from .base import Method, TrimCall


def trim(d: Tensor, c: TrimCall) -> Tensor:
    r, sc = c.recipe, c.state.scratch
    if r.is_global or c.state.thresholds is not None:  # thresholds found beforehand (whole model or this tensor)
        thr = c.state.thresholds[c.i]
        mag = d.abs() if sc is None else torch.abs(d, out=sc.take("abs", d.shape, d.dtype))
        mask, thr[1] = top_mask(mag, thr[0], thr[1], None if sc is None else sc.take("mask", d.shape, torch.bool))
        return d.mul_(mask) if c.inplace else d * mask
    before = d.abs().sum(dtype=torch.float64) if r.rescale == "l1" else None
    out = topk_tensor(d, c.density, r.rounding, sc, c.inplace)
    if before is not None and c.density < 1:
        out = l1_rescale(out if c.inplace else out.clone(), before)
    return out


METHOD = Method("magnitude", trim=trim, kind="magnitude", densities=True, summary="top-k of each vector; sum")
