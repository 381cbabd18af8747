"""Model Stock (Jang et al. 2024): per tensor, the average of n >= 2 fine-tuned models pulled towards the
base by t = n cos / (1 + (n - 1) cos), cos the mean pairwise cosine of their offsets from the base. In
pieces (not filter_wise), the offsets' norms and dot products come from a pass over the pieces first."""

from ..kernels import model_stock_stats, model_stock_tensor
from .base import Method


def stats(tensors, base, params, recipe):
    return model_stock_stats(base, tensors)


def merge(tensors, base, params, recipe, stats=None):
    return model_stock_tensor(base, tensors, bool(params.options["filter_wise"]), stats=stats)


METHOD = Method("model_stock", merge=merge, pieces=lambda recipe: not recipe.options.get("filter_wise"), stats=stats,
                shared_options={"filter_wise": False},
                summary="average pulled towards the base by the offsets' cosine", mergekit={})
