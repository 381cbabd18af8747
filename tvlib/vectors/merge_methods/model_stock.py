"""Model Stock (Jang et al. 2024): per tensor, the average of n >= 2 fine-tuned models pulled towards the
base by t = n cos / (1 + (n - 1) cos), cos the mean pairwise cosine of their offsets from the base."""

from ..kernels import model_stock_tensor
from .base import Method


def merge(tensors, base, params, recipe):
    return model_stock_tensor(base, tensors, bool(params.options["filter_wise"]))


METHOD = Method("model_stock", merge=merge, shared_options={"filter_wise": False},
                summary="average pulled towards the base by the offsets' cosine", mergekit={})
