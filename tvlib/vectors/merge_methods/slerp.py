"""SLERP: spherical interpolation of each flattened tensor from the base (t = 0) to the one other model
(t = 1); t may vary per tensor (filters) and over the layers (a gradient), as in mergekit. In pieces, the
norms and the dot product come from a pass over the pieces first."""

from ..kernels import slerp_stats, slerp_tensor
from .base import Method


def stats(tensors, base, params, recipe):
    return slerp_stats(base, tensors[0])


def merge(tensors, base, params, recipe, stats=None):
    return slerp_tensor(params.options["t"], base, tensors[0], stats=stats)


METHOD = Method("slerp", merge=merge, pieces=True, stats=stats, shared_options={"t": 0.5},
                summary="spherical interpolation base -> model", mergekit={})
