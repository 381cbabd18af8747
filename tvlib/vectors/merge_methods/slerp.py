"""SLERP: spherical interpolation of each flattened tensor from the base (t = 0) to the one other model
(t = 1); t may vary per tensor (filters) and over the layers (a gradient), as in mergekit."""

from ..kernels import slerp_tensor
from .base import Method


def merge(tensors, base, params, recipe):
    return slerp_tensor(params.options["t"], base, tensors[0])


METHOD = Method("slerp", merge=merge, shared_options={"t": 0.5}, summary="spherical interpolation base -> model",
                mergekit={})
