"""The merge methods, one small module each, and their registry.

A method is a Method (base.py): either a trim of each task vector followed by a combination (sum or
TIES's elect-and-mean) of the trimmed, weighted deltas, or a merge of whole tensors (linear, slerp,
model_stock). Its module says what it computes, its parameters and, for mergekit's methods, the
defaults a config in mergekit's layout gets. The per-tensor arithmetic lives in tvlib.vectors.kernels;
recipe.merge_tensor calls the method, which calls the kernels. To add a method: a module defining
METHOD (or METHODS), listed in MODULES below.
"""

from __future__ import annotations

from importlib import import_module

from .base import Method, TrimCall

__all__ = ["ALIASES", "METHODS", "Method", "TrimCall", "get"]

MODULES = ("task_arithmetic", "magnitude", "ties", "dare", "dare_ties", "rows", "low_rank", "breadcrumbs", "della",
           "linear", "slerp", "model_stock")
ALIASES = {"sum": "task_arithmetic", "linear_task_arithmetic": "task_arithmetic", "topk": "magnitude",
           "dare_linear": "dare", "low-rank": "low_rank"}

METHODS: dict[str, Method] = {}
for _name in MODULES:
    _mod = import_module(f".{_name}", __name__)
    for _m in getattr(_mod, "METHODS", None) or (_mod.METHOD,):
        METHODS[_m.name] = _m


def get(name: str) -> Method:
    """The method called `name` (or one of its ALIASES)."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise ValueError(f"method={name!r}: expected one of {tuple(METHODS)}")
    return METHODS[key]
