"""Task vectors and merge methods on any PyTorch / Hugging Face state dict: the ground floor of tvlib.

Imports nothing else of tvlib and no pandas. Modules: task_vector (TaskVector, merge), methods
(row-norm and top-k pruning, TIES, DARE), device (the device rule), io (atomic output).
"""

from .device import resolve_device, resolve_dtype
from .methods import (
    METHODS,
    dare,
    density,
    magnitude_prune,
    merge_vectors,
    prune_rows,
    sparsify,
    ties_merge,
)
from .task_vector import StateDictMismatch, TaskVector, merge

__all__ = [
    "TaskVector",
    "StateDictMismatch",
    "merge",
    "METHODS",
    "density",
    "prune_rows",
    "magnitude_prune",
    "ties_merge",
    "dare",
    "sparsify",
    "merge_vectors",
    "resolve_device",
    "resolve_dtype",
]
