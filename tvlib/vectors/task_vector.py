"""Task vectors on any state dict: dPsi_T = Psi*_T - Psi0 (Def. 1) and Psi = Psi0 + sum_i lam_i dPsi_i (eq. 2).

Conventions:
- Deltas are float32 tensors (float64 for float64 weights) on the device of the inputs; results
  written back take the dtype and device of the tensor they replace (a bf16 base gives a bf16 result).
- Keys and shapes are checked strictly by default; a mismatch raises StateDictMismatch listing it.
- Non-float tensors (int buffers, bool masks) are never part of a vector: apply keeps the base's value.
- Given Modules, registered buffers are left out unless buffers="include". Given plain state dicts,
  buffers cannot be told apart from parameters, so every float tensor is treated as a parameter.
- Tied weights (several keys sharing one storage) are held once under the first key; the other keys
  are recorded in `aliases`, count once in norm/dot and receive the same value when applied.
- Negation and scaling are plain arithmetic: nothing is ever renormalised.
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from .io import atomic_path

__all__ = ["StateDictMismatch", "TaskVector", "merge"]

StateLike = Union[nn.Module, Mapping[str, Tensor]]
_MAX_LINES = 20


class StateDictMismatch(ValueError):
    """Two state dicts (or task vectors) differ in their keys or shapes."""


def _tensors(obj: StateLike, name: str) -> tuple[dict[str, Tensor], set[str]]:
    """The state dict of a Module or Mapping, and the names of the Module's buffers."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), {n for n, _ in obj.named_buffers(remove_duplicate=False)}
    if not isinstance(obj, Mapping):
        raise TypeError(f"{name} is a {type(obj).__name__}: expected an nn.Module or a state dict")
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}[{k!r}] is a {type(v).__name__}: expected a torch.Tensor")
    return dict(obj), set()


def _diff(a: Mapping[str, Tensor], b: Mapping[str, Tensor], names: tuple[str, str]) -> dict[str, str]:
    """Key -> reason for every key missing on one side or with different shapes."""
    out = {k: f"only in {names[0]}" for k in a if k not in b}
    out.update({k: f"only in {names[1]}" for k in b if k not in a})
    out.update(
        {k: f"{tuple(a[k].shape)} vs {tuple(b[k].shape)}" for k in a if k in b and a[k].shape != b[k].shape}
    )
    return out


def _mismatch(diff: Mapping[str, str], names: tuple[str, str]) -> StateDictMismatch:
    """A StateDictMismatch whose message lists the differences, grouped and truncated."""
    only = [f"  only in {n}: {k}" for n in names for k, r in diff.items() if r == f"only in {n}"]
    shapes = [f"  {k}: {r}" for k, r in diff.items() if not r.startswith("only in ")]
    lines = only + (["  shape mismatches:"] + shapes if shapes else [])
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"  ... and {len(lines) - _MAX_LINES} more lines"]
    head = f"{names[0]} and {names[1]} do not match ({len(diff)} keys differ):"
    return StateDictMismatch("\n".join([head, *lines]))


def _wide(t: Tensor) -> Tensor:
    """t detached in the dtype task-vector arithmetic uses: float32, or float64 for float64 tensors."""
    return t.detach().to(torch.promote_types(t.dtype, torch.float32))


def _storage(t: Tensor) -> tuple | None:
    """What identifies the memory a tensor views (None for empty tensors)."""
    if t.numel() == 0 or t.device.type == "meta":
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _alias_groups(sd: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """First key -> later keys viewing the same memory (tied weights)."""
    first: dict[tuple, str] = {}
    groups: dict[str, list[str]] = {}
    for k, t in sd.items():
        sig = _storage(t)
        if sig is None:
            continue
        if sig in first:
            groups.setdefault(first[sig], []).append(k)
        else:
            first[sig] = k
    return groups


def _scalar(x: object, what: str) -> float:
    """x as a float if it is a real number (not a bool), else TypeError naming its type."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{what} is a {type(x).__name__}: expected an int or float")
    return float(x)


class TaskVector:
    """A float32 delta per parameter name, with tied-weight aliases and a record of skipped keys."""

    def __init__(
        self,
        deltas: Mapping[str, Tensor],
        *,
        aliases: Mapping[str, Sequence[str]] | None = None,
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        self.deltas: dict[str, Tensor] = {}
        for k, v in deltas.items():
            if not isinstance(v, Tensor) or not v.is_floating_point():
                what = getattr(v, "dtype", type(v).__name__)
                raise TypeError(f"deltas[{k!r}] is {what}: expected a floating-point tensor")
            self.deltas[k] = _wide(v)
        self.aliases: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (aliases or {}).items()}
        unknown = [k for k in self.aliases if k not in self.deltas]
        if unknown:
            raise ValueError(f"aliases name keys {unknown} that have no delta: expected keys of deltas")
        self.skipped: dict[str, str] = dict(skipped or {})

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_models(
        cls,
        pretrained: StateLike,
        finetuned: StateLike,
        *,
        strict: bool = True,
        non_float: str = "skip",
        buffers: str = "skip",
    ) -> "TaskVector":
        """The task vector finetuned - pretrained (Def. 1) over the float parameters they share."""
        if non_float not in ("skip", "error"):
            raise ValueError(f"non_float={non_float!r}: expected 'skip' or 'error'")
        if buffers not in ("skip", "include"):
            raise ValueError(f"buffers={buffers!r}: expected 'skip' or 'include'")
        pre, pre_buf = _tensors(pretrained, "pretrained")
        ft, ft_buf = _tensors(finetuned, "finetuned")
        names = ("pretrained", "finetuned")
        skipped = _diff(pre, ft, names)
        if skipped and strict:
            raise _mismatch(skipped, names)
        aliases = _alias_groups(pre)
        alias_of = {a: k for k, group in aliases.items() for a in group}
        deltas: dict[str, Tensor] = {}
        bad: list[str] = []
        for k, p in pre.items():
            if k in skipped:
                continue
            if k in alias_of:
                if _storage(ft[k]) != _storage(ft[alias_of[k]]) and not torch.equal(ft[k], ft[alias_of[k]]):
                    raise ValueError(f"{k} is tied to {alias_of[k]} in pretrained but differs from it in finetuned")
                continue
            if buffers == "skip" and (k in pre_buf or k in ft_buf):
                skipped[k] = "buffer"
            elif not (p.is_floating_point() and ft[k].is_floating_point()):
                skipped[k] = f"non-float dtype {p.dtype} / {ft[k].dtype}"
                bad.append(f"{k} ({p.dtype})")
            else:
                deltas[k] = _wide(ft[k].detach().to(p.device)) - _wide(p)
        if bad and non_float == "error":
            raise ValueError(f"non_float='error' and these tensors are not floating point: {', '.join(bad)}")
        return cls(deltas, aliases={k: v for k, v in aliases.items() if k in deltas}, skipped=skipped)

    @classmethod
    def from_peft(cls, peft_model: nn.Module, adapter_name: str = "default") -> "TaskVector":
        """The LoRA adapter as dW = scale * B @ A per wrapped layer, keyed by the base model's names."""
        from peft.tuners.lora import LoraLayer
        from peft.utils.other import ModulesToSaveWrapper

        get_base = getattr(peft_model, "get_base_model", None)
        model = get_base() if callable(get_base) else peft_model
        deltas: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
                    if adapter_name in module.merged_adapters:
                        raise ValueError(f"adapter {adapter_name!r} is already merged into {name}: unmerge it first")
                    if adapter_name in getattr(module, "lora_variant", {}):
                        raise NotImplementedError(f"{name}: LoRA variants such as DoRA are not plain B @ A deltas")
                    weight = module.get_base_layer().weight
                    delta = module.get_delta_weight(adapter_name)
                    if delta.shape != weight.shape:
                        raise ValueError(f"{name}: delta {tuple(delta.shape)} vs weight {tuple(weight.shape)}")
                    deltas[f"{name}.weight"] = _wide(delta)
                    if module.lora_bias.get(adapter_name, False):
                        bias = module.lora_B[adapter_name].bias
                        deltas[f"{name}.bias"] = _wide(bias) * module.scaling[adapter_name]
                elif isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
                    original = module.original_module.state_dict()
                    for p, t in module.modules_to_save[adapter_name].state_dict().items():
                        if t.is_floating_point():
                            deltas[f"{name}.{p}"] = _wide(t) - _wide(original[p])
        if not deltas:
            known = list(getattr(peft_model, "peft_config", {}))
            raise ValueError(f"adapter_name={adapter_name!r}: no LoRA layer holds it (adapters: {known})")
        return cls(deltas)

    # ------------------------------------------------------------------ arithmetic

    def _like(self, deltas: dict[str, Tensor], other: "TaskVector | None" = None) -> "TaskVector":
        aliases, skipped = dict(self.aliases), dict(self.skipped)
        if other is not None:
            aliases, skipped = {**other.aliases, **aliases}, {**other.skipped, **skipped}
        return TaskVector(deltas, aliases=aliases, skipped=skipped)

    def _check_pair(self, other: object, op: str) -> "TaskVector":
        if not isinstance(other, TaskVector):
            raise TypeError(f"TaskVector {op} {type(other).__name__}: expected a TaskVector")
        diff = _diff(self.deltas, other.deltas, ("left", "right"))
        if diff:
            raise _mismatch(diff, ("left", "right"))
        return other

    def _binary(self, other: object, sign: float, op: str) -> "TaskVector":
        other = self._check_pair(other, op)
        out = {k: a + sign * other.deltas[k].to(a.device) for k, a in self.deltas.items()}
        return self._like(out, other)

    def __add__(self, other: object) -> "TaskVector":
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self._like(dict(self.deltas))
        return self._binary(other, 1.0, "+")

    __radd__ = __add__  # sum([...]) starts at 0

    def __sub__(self, other: object) -> "TaskVector":
        return self._binary(other, -1.0, "-")

    def __neg__(self) -> "TaskVector":
        return self._like({k: -v for k, v in self.deltas.items()})

    def __mul__(self, lam: object) -> "TaskVector":
        c = _scalar(lam, "the factor multiplying a TaskVector")
        return self._like({k: c * v for k, v in self.deltas.items()})

    __rmul__ = __mul__

    def __truediv__(self, lam: object) -> "TaskVector":
        c = _scalar(lam, "the divisor of a TaskVector")
        if c == 0:
            raise ZeroDivisionError("TaskVector divided by 0")
        return self._like({k: v / c for k, v in self.deltas.items()})

    def dot(self, other: "TaskVector") -> float:
        """Inner product sum over all entries (tied weights counted once)."""
        other = self._check_pair(other, "dot")
        return sum(float(torch.sum(a.double() * other.deltas[k].to(a.device).double())) for k, a in self.deltas.items())

    def norm(self) -> float:
        """Frobenius norm over all entries (tied weights counted once)."""
        return sum(float(torch.sum(v.double() ** 2)) for v in self.deltas.values()) ** 0.5

    def cosine(self, other: "TaskVector") -> float:
        """dot / (norm * norm); ValueError for a zero vector."""
        denom = self.norm() * other.norm()
        if denom == 0:
            raise ValueError("cosine of a zero task vector is undefined")
        return self.dot(other) / denom

    def low_rank(self, r: int, *, batched: bool = False) -> "TaskVector":
        """Best rank-r approximation (truncated SVD) of every 2-D delta; others unchanged.

        With batched=True a delta with more than 2 dims is a stack of matrices over its last two
        dims (e.g. the replica dimension of the toy model), each truncated to rank r.
        """
        if isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"r is a {type(r).__name__}: expected an int >= 1")
        if r < 1:
            raise ValueError(f"r={r}: expected a rank >= 1")
        out = {}
        for k, d in self.deltas.items():
            if (d.ndim == 2 or (batched and d.ndim > 2)) and r < min(d.shape[-2:]):
                U, S, Vh = torch.linalg.svd(d, full_matrices=False)
                out[k] = (U[..., :r] * S[..., None, :r]) @ Vh[..., :r, :]
            else:
                out[k] = d
        return self._like(out)

    # ------------------------------------------------------------------ applying

    def _check_target(self, sd: Mapping[str, Tensor], name: str) -> None:
        diff = {k: r for k, r in _diff(self.deltas, sd, ("task vector", name)).items() if r != f"only in {name}"}
        if diff:
            raise _mismatch(diff, ("task vector", name))
        ints = [k for k in self.deltas if not sd[k].is_floating_point()]
        if ints:
            raise ValueError(f"{name} holds non-float tensors where the task vector has deltas: {ints}")

    def apply_to(self, base: StateLike, lam: float = 1.0) -> dict[str, Tensor]:
        """A new state dict base + lam * self in the base's dtypes and devices; base is unchanged."""
        c = _scalar(lam, "lam")
        sd, _ = _tensors(base, "base")
        self._check_target(sd, "base")
        out: dict[str, Tensor] = {}
        for k, t in sd.items():
            if k in self.deltas:
                new = (_wide(t) + c * self.deltas[k].to(t.device)).to(t.dtype)
                for name in (k, *self.aliases.get(k, ())):
                    out[name] = new
            elif k not in out:
                out[k] = t.detach().clone()
        return {k: out[k] for k in sd}

    def apply_(self, module: StateLike, lam: float = 1.0, *, base: StateLike | None = None) -> StateLike:
        """In place, tensor by tensor: param <- (base if given else current) + lam * delta."""
        c = _scalar(lam, "lam")
        targets, _ = _tensors(module, "module")
        self._check_target(targets, "module")
        src = targets
        if base is not None:
            src, _ = _tensors(base, "base")
            self._check_target(src, "base")
        plan: list[tuple[Tensor, Tensor, Tensor]] = []
        owner: dict[tuple, str] = {}
        for k, d in self.deltas.items():
            for name in (k, *self.aliases.get(k, ())):
                if name not in targets:
                    continue
                sig = _storage(targets[name])
                if sig is not None and sig in owner:
                    if owner[sig] == k:
                        continue  # tied to a tensor already in the plan: update it once
                    raise ValueError(
                        f"{name} and {owner[sig]} share one tensor in the module but are separate deltas: "
                        "build the task vector from models with the same weight tying"
                    )
                if sig is not None:
                    owner[sig] = k
                plan.append((targets[name], src.get(name, src[k]), d))
        with torch.no_grad():
            for t, b, d in plan:
                t.copy_(_wide(b.detach().to(t.device)) + c * d.to(t.device))
        return module

    # ------------------------------------------------------------------ container protocol and I/O

    def keys(self) -> list[str]:
        """Names of the deltas (one per tied group)."""
        return list(self.deltas)

    def __len__(self) -> int:
        return len(self.deltas)

    def numel(self) -> int:
        """Number of entries (tied weights counted once)."""
        return sum(v.numel() for v in self.deltas.values())

    def to(self, device: torch.device | str) -> "TaskVector":
        """A copy with every delta on `device`."""
        return self._like({k: v.to(device) for k, v in self.deltas.items()})

    def __repr__(self) -> str:
        sizes = f"{len(self)} tensors, {self.numel():,} entries"
        return f"TaskVector({sizes}, {len(self.aliases)} tied, {len(self.skipped)} skipped)"

    def save(self, path: str | os.PathLike) -> None:
        """Write the deltas, aliases and skipped keys to a safetensors file, atomically."""
        from safetensors.torch import save_file

        meta = {"order": list(self.deltas), "aliases": self.aliases, "skipped": self.skipped}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.deltas.items()}, str(tmp), metadata={"tvlib": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "TaskVector":
        """Read a task vector written by save()."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("tvlib", "{}"))
            order = meta.get("order", list(f.keys()))
            deltas = {k: f.get_tensor(k) for k in order}
        return cls(deltas, aliases=meta.get("aliases"), skipped=meta.get("skipped"))


def merge(base: StateLike, vectors: Sequence[TaskVector], lams: float | Sequence[float]) -> dict[str, Tensor]:
    """Psi0 + sum_i lam_i dPsi_i (eq. 2) as a new state dict; lams is one float for all or one per vector."""
    vectors = list(vectors)
    if not vectors:
        raise ValueError("vectors is empty: expected at least one TaskVector")
    if isinstance(lams, numbers.Real) and not isinstance(lams, bool):
        lams = [float(lams)] * len(vectors)
    lams = list(lams)
    if len(lams) != len(vectors):
        raise ValueError(f"got {len(lams)} lams for {len(vectors)} vectors: expected one float or one per vector")
    total = sum(lam * v for lam, v in zip(lams, vectors))
    return total.apply_to(base, 1.0)
