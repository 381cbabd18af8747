"""Task vectors and merge methods on any PyTorch / Hugging Face state dict or checkpoint: the ground floor of tvlib.

Imports nothing else of tvlib and no pandas. Modules: task_vector (TaskVector, merge, align), methods
(row-norm and top-k pruning, TIES, DARE, DARE-TIES, merge_vectors), merge_methods (one module per merge
method, and their registry), recipe (one interface for every method, tensor by tensor), kernels (the
per-tensor code every path runs), checkpoint (reading
safetensors checkpoints, writing merged ones), engine (streaming merges of checkpoints), config (the
`tvlib merge` YAML), lora (peft adapters in and out), device (the device rule), io (atomic output).
"""

from .device import resolve_device, resolve_dtype
from .kernels import NonFiniteError
from .methods import (
    MERGE_METHODS,
    METHODS,
    dare,
    dare_ties,
    density,
    magnitude_prune,
    merge_vectors,
    prune_rows,
    sparsify,
    ties_merge,
)
from .recipe import Recipe
from .statedict import StateDictMismatch
from .task_vector import TaskVector, align, merge

__all__ = [
    "MERGE_METHODS",
    "METHODS",
    "NonFiniteError",
    "Recipe",
    "StateDictMismatch",
    "TaskVector",
    "align",
    "dare",
    "dare_ties",
    "density",
    "load_state_dict",
    "magnitude_prune",
    "merge",
    "merge_checkpoints",
    "merge_vectors",
    "prune_rows",
    "resolve_device",
    "resolve_dtype",
    "save_state_dict",
    "sparsify",
    "ties_merge",
]


def __getattr__(name: str):
    """Checkpoint I/O and the streaming engine, imported on first use."""
    if name == "merge_checkpoints":
        from .engine import merge_checkpoints

        return merge_checkpoints
    if name in ("load_state_dict", "save_state_dict"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'tvlib.vectors' has no attribute {name!r}")
