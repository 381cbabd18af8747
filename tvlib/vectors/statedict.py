"""State-dict plumbing shared by TaskVector and the methods: inputs, key/shape diffs, tied weights, checks."""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "StateDictMismatch",
    "StateLike",
    "alias_groups",
    "diff_keys",
    "mismatch",
    "scalar",
    "storage",
    "tensors_of",
    "uncovered_layers",
    "wide",
]

StateLike = nn.Module | Mapping[str, Tensor] | str | os.PathLike
_MAX_LINES = 20


class StateDictMismatch(ValueError):
    """Two state dicts (or task vectors) differ in their keys or shapes."""


def tensors_of(obj: StateLike, name: str) -> tuple[dict[str, Tensor], set[str]]:
    """The state dict of a Module, a Mapping or a checkpoint path, and the names of the Module's buffers.

    Tensors on the meta device (a model built without its weights) are refused, naming their keys.
    """
    if isinstance(obj, (str, os.PathLike)):
        from .checkpoint import load_state_dict

        sd, buffers = load_state_dict(obj), set()
    elif isinstance(obj, nn.Module):
        sd, buffers = obj.state_dict(), {n for n, _ in obj.named_buffers(remove_duplicate=False)}
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(v, Tensor):
                raise TypeError(f"{name}[{k!r}] is a {type(v).__name__}: expected a torch.Tensor")
        sd, buffers = dict(obj), set()
    else:
        raise TypeError(f"{name} is a {type(obj).__name__}: expected an nn.Module, a state dict or a checkpoint path")
    meta = [k for k, v in sd.items() if v.device.type == "meta"]
    if meta:
        shown = ", ".join(meta[:5]) + (f" and {len(meta) - 5} more" if len(meta) > 5 else "")
        raise ValueError(f"{name} has tensors on the meta device (no values): {shown}; load its weights first")
    return sd, buffers


def diff_keys(a: Mapping[str, Tensor], b: Mapping[str, Tensor], names: tuple[str, str]) -> dict[str, str]:
    """Key -> reason for every key missing on one side or with different shapes."""
    out = {k: f"only in {names[0]}" for k in a if k not in b}
    out.update({k: f"only in {names[1]}" for k in b if k not in a})
    out.update(
        {k: f"{tuple(a[k].shape)} vs {tuple(b[k].shape)}" for k in a if k in b and a[k].shape != b[k].shape}
    )
    return out


def mismatch(diff: Mapping[str, str], names: tuple[str, str]) -> StateDictMismatch:
    """A StateDictMismatch whose message lists the differences, grouped and truncated."""
    only = [f"  only in {n}: {k}" for n in names for k, r in diff.items() if r == f"only in {n}"]
    shapes = [f"  {k}: {r}" for k, r in diff.items() if not r.startswith("only in ")]
    lines = only + (["  shape mismatches:"] + shapes if shapes else [])
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"  ... and {len(lines) - _MAX_LINES} more lines"]
    head = f"{names[0]} and {names[1]} do not match ({len(diff)} keys differ):"
    return StateDictMismatch("\n".join([head, *lines]))


def wide(t: Tensor) -> Tensor:
    """t detached in the dtype task-vector arithmetic uses: float32, or float64 for float64 tensors."""
    return t.detach().to(torch.promote_types(t.dtype, torch.float32))


def storage(t: Tensor) -> tuple | None:
    """What identifies the memory a tensor views (None for empty tensors)."""
    if t.numel() == 0 or t.device.type == "meta":
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def alias_groups(sd: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """First key -> later keys viewing the same memory (tied weights)."""
    first: dict[tuple, str] = {}
    groups: dict[str, list[str]] = {}
    for k, t in sd.items():
        sig = storage(t)
        if sig is None:
            continue
        if sig in first:
            groups.setdefault(first[sig], []).append(k)
        else:
            first[sig] = k
    return groups


def scalar(x: object, what: str) -> float:
    """x as a finite float if it is a real number (not a bool): TypeError for other types, ValueError for NaN/inf."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{what} is a {type(x).__name__}: expected an int or float")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{what} is {v}: expected a finite number")
    return v


_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


def uncovered_layers(target: Iterable[str], covered: Iterable[str]) -> list[str]:
    """Keys of `target` not covered whose layer pattern (indices replaced by #) the covered keys have:
    the extra layers of a deeper model, which a task vector of a shallower one would leave untouched."""
    covered = set(covered)
    patterns = {_INDEX.sub("#", k) for k in covered}
    return [k for k in target if k not in covered and _INDEX.sub("#", k) in patterns]
