"""Task arithmetic (Ilharco et al. 2023): lam * sum_i w_i tau_i, no trim."""

from .base import Method

METHOD = Method("task_arithmetic", summary="sum_i w_i tau_i", mergekit={"normalize": "none"})
