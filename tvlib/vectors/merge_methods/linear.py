"""Linear (model soups, Wortsman et al. 2022): sum_i w_i x_i of whole models, divided by sum_i w_i when
normalized (the default, mergekit's); no base model, no task vectors. Elementwise: it merges in pieces."""

from ..kernels import linear_tensor
from .base import Method


def merge(tensors, base, params, recipe, stats=None):
    return linear_tensor(tensors, params.weights, recipe.normalize != "none")


METHOD = Method("linear", merge=merge, base="none", pieces=True, summary="weighted average of whole models",
                mergekit={"normalize": "weights"})
