"""Task vectors on any state dict: dPsi_T = Psi*_T - Psi0 (Def. 1) and Psi = Psi0 + sum_i lam_i dPsi_i (eq. 2).

Conventions:

- Deltas are float32 tensors (float64 for float64 weights) on the device of the inputs; results
  written back take the dtype and device of the tensor they replace (a bf16 base gives a bf16 result).
- Low-rank deltas may be held as factors (B, A) with delta = B @ A (`factors`); `deltas[k]` gives the
  product. Scaling scales B; adding two factored deltas concatenates their factors (exact, ranks add):
  low-rank vectors combine as dW = B A, never factor by factor.
- Keys and shapes are checked strictly by default; a mismatch raises StateDictMismatch listing it.
  Applying a vector to a model with extra layers of a kind the vector has (a 2-layer vector on a
  3-layer model) is a mismatch too, naming the layers.
- Non-float tensors (int buffers, bool masks) are never part of a vector: apply keeps the base's value.
- Given Modules, registered buffers are left out unless buffers="include". Given plain state dicts,
  buffers cannot be told apart from parameters, so every float tensor is treated as a parameter.
- Tied weights (several keys sharing one storage) are held once under the first key; the other keys
  are recorded in `aliases`, count once in norm/dot and receive the same value when applied. A base
  whose keys share a tensor gets one value for the whole group; separate deltas for one group are refused.
- NaN/inf values are refused, naming the keys (allow_nonfinite=True lets them in), and so are non-finite
  coefficients; a cast back that overflows to inf raises NonFiniteError naming the key.
- Negation and scaling are plain arithmetic: nothing is ever renormalised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Mapping as MappingABC

import torch
from torch import Tensor

from .io import atomic_path
from .kernels import NonFiniteError, cast_checked, is_finite, low_rank_factors
from .statedict import (
    StateDictMismatch,
    StateLike,
    alias_groups,
    diff_keys,
    mismatch,
    scalar,
    storage,
    tensors_of,
    uncovered_layers,
    wide,
)

__all__ = ["StateDictMismatch", "TaskVector", "align", "merge"]

Factors = tuple[Tensor, Tensor]


class _Deltas(MappingABC):
    """Read-only view key -> dense delta; factored entries are multiplied out on access (not cached)."""

    def __init__(self, tv: TaskVector) -> None:
        self._tv = tv

    def __getitem__(self, k: str) -> Tensor:
        tv = self._tv
        if k in tv._dense:
            return tv._dense[k]
        B, A = tv.factors[k]
        return B @ A

    def __iter__(self) -> Iterator[str]:
        return iter(self._tv._order)

    def __len__(self) -> int:
        return len(self._tv._order)


def _nonfinite_keys(deltas: Mapping[str, Tensor]) -> list[str]:
    return [k for k, v in deltas.items() if not is_finite(v)]


class TaskVector:
    """A float32 delta per parameter name (dense or as low-rank factors), with tied-weight aliases and a
    record of skipped keys."""

    def __init__(
        self,
        deltas: Mapping[str, Tensor],
        *,
        aliases: Mapping[str, Sequence[str]] | None = None,
        skipped: Mapping[str, str] | None = None,
        factors: Mapping[str, Factors] | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        dense: dict[str, Tensor] = {}
        for k, v in deltas.items():
            if not isinstance(v, Tensor) or not v.is_floating_point():
                what = getattr(v, "dtype", type(v).__name__)
                raise TypeError(f"deltas[{k!r}] is {what}: expected a floating-point tensor")
            dense[k] = wide(v)
        facs: dict[str, Factors] = {}
        for k, pair in (factors or {}).items():
            if k in dense:
                raise ValueError(f"{k} is given both as a delta and as factors: expected one of them")
            B, A = pair
            if not (B.is_floating_point() and A.is_floating_point()) or B.shape[-1] != A.shape[-2]:
                raise ValueError(f"factors[{k!r}]: expected floating (B, A) with B @ A defined, got "
                                 f"{tuple(B.shape)} and {tuple(A.shape)}")
            facs[k] = (wide(B), wide(A))
        bad = _nonfinite_keys(dense) + [k for k, (B, A) in facs.items() if not (is_finite(B) and is_finite(A))]
        if bad and not allow_nonfinite:
            raise NonFiniteError(f"deltas with NaN or infinite values: {', '.join(bad)} (allow_nonfinite=True keeps them)")
        self._setup(dense, facs, list(dense) + list(facs), aliases, skipped)

    def _setup(self, dense, factors, order, aliases, skipped) -> None:
        self._dense: dict[str, Tensor] = dense
        self.factors: dict[str, Factors] = factors
        self._order: list[str] = order
        self.aliases: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (aliases or {}).items()}
        unknown = [k for k in self.aliases if k not in dense and k not in factors]
        if unknown:
            raise ValueError(f"aliases name keys {unknown} that have no delta: expected keys of deltas")
        self.skipped: dict[str, str] = dict(skipped or {})

    @classmethod
    def _make(cls, dense, factors=None, order=None, aliases=None, skipped=None) -> TaskVector:
        """Internal constructor: no copies, no checks (inputs are results of checked vectors)."""
        tv = cls.__new__(cls)
        factors = factors or {}
        tv._setup(dense, factors, order or [*dense, *factors], aliases, skipped)
        return tv

    @property
    def deltas(self) -> Mapping[str, Tensor]:
        """Key -> dense delta (factored ones multiplied out on access)."""
        return _Deltas(self)

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
        allow_nonfinite: bool = False,
    ) -> TaskVector:
        """The task vector finetuned - pretrained (Def. 1) over the float parameters they share.

        Each may be an nn.Module, a state dict or a checkpoint (directory, .safetensors file, hub id).
        """
        if non_float not in ("skip", "error"):
            raise ValueError(f"non_float={non_float!r}: expected 'skip' or 'error'")
        if buffers not in ("skip", "include"):
            raise ValueError(f"buffers={buffers!r}: expected 'skip' or 'include'")
        pre, pre_buf = tensors_of(pretrained, "pretrained")
        ft, ft_buf = tensors_of(finetuned, "finetuned")
        names = ("pretrained", "finetuned")
        aliases = alias_groups(pre)
        alias_of = {a: k for k, group in aliases.items() for a in group}
        ft_aliases = alias_groups(ft)
        ft_alias_of = {a: k for k, group in ft_aliases.items() for a in group}
        skipped = diff_keys(pre, ft, names)
        for k, why in list(skipped.items()):  # a tied key one side saved once (as Hugging Face checkpoints do)
            if why == "only in pretrained" and alias_of.get(k) in ft:
                del skipped[k]
            elif why == "only in finetuned" and ft_alias_of.get(k) in pre:
                del skipped[k]
                aliases.setdefault(ft_alias_of[k], []).append(k)
        if skipped and strict:
            raise mismatch(skipped, names)
        deltas: dict[str, Tensor] = {}
        bad: list[str] = []
        for k, p in pre.items():
            if k in skipped:
                continue
            if k in alias_of:
                if k not in ft:
                    continue
                if storage(ft[k]) != storage(ft[alias_of[k]]) and not torch.equal(ft[k], ft[alias_of[k]]):
                    raise ValueError(f"{k} is tied to {alias_of[k]} in pretrained but differs from it in finetuned")
                continue
            if buffers == "skip" and (k in pre_buf or k in ft_buf):
                skipped[k] = "buffer"
            elif not (p.is_floating_point() and ft[k].is_floating_point()):
                skipped[k] = f"non-float dtype {p.dtype} / {ft[k].dtype}"
                bad.append(f"{k} ({p.dtype})")
            else:
                deltas[k] = wide(ft[k].detach().to(p.device)) - wide(p)
        if bad and non_float == "error":
            raise ValueError(f"non_float='error' and these tensors are not floating point: {', '.join(bad)}")
        nonfinite = _nonfinite_keys(deltas)
        if nonfinite and not allow_nonfinite:
            where = [f"{k} ({'pretrained' if not is_finite(pre[k]) else 'finetuned'})" for k in nonfinite]
            raise NonFiniteError(f"NaN or infinite values in {', '.join(where)} (allow_nonfinite=True keeps them)")
        return cls._make(deltas, aliases={k: v for k, v in aliases.items() if k in deltas}, skipped=skipped)

    @classmethod
    def from_peft(cls, peft_model, adapter_name: str = "default", *, factored: bool = False) -> TaskVector:
        """The LoRA adapter as dW = scale * B @ A per wrapped layer, keyed by the base model's names.

        factored=True keeps plain Linear adapters as factors (scale * B, A) instead of dense deltas.
        """
        from .lora import from_peft

        dense, factors = from_peft(peft_model, adapter_name, factored=factored)
        return cls._make(dense, factors)

    # ------------------------------------------------------------------ arithmetic

    def _like(self, dense: dict, factors: dict | None = None, other: TaskVector | None = None) -> TaskVector:
        aliases, skipped = dict(self.aliases), dict(self.skipped)
        if other is not None:
            aliases, skipped = {**other.aliases, **aliases}, {**other.skipped, **skipped}
        return TaskVector._make(dense, factors, list(self._order), aliases, skipped)

    def _check_pair(self, other: object, op: str) -> TaskVector:
        if not isinstance(other, TaskVector):
            raise TypeError(f"TaskVector {op} {type(other).__name__}: expected a TaskVector")
        diff = diff_keys(self._meta(), other._meta(), ("left", "right"))
        if diff:
            raise mismatch(diff, ("left", "right"))
        return other

    def _binary(self, other: object, sign: float, op: str) -> TaskVector:
        other = self._check_pair(other, op)
        dense, factors = {}, {}
        for k in self._order:
            if k in self.factors and k in other.factors:
                (B1, A1), (B2, A2) = self.factors[k], other.factors[k]
                factors[k] = (torch.cat([B1, sign * B2.to(B1.device)], -1), torch.cat([A1, A2.to(A1.device)], -2))
            else:
                a = self.deltas[k]
                dense[k] = a + sign * other.deltas[k].to(a.device)
        return self._like(dense, factors, other)

    def __add__(self, other: object) -> TaskVector:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self._like(dict(self._dense), dict(self.factors))
        return self._binary(other, 1.0, "+")

    __radd__ = __add__  # sum([...]) starts at 0

    def __sub__(self, other: object) -> TaskVector:
        return self._binary(other, -1.0, "-")

    def _scaled(self, fn: Callable[[Tensor], Tensor]) -> TaskVector:
        return self._like({k: fn(v) for k, v in self._dense.items()},
                          {k: (fn(B), A) for k, (B, A) in self.factors.items()})

    def __neg__(self) -> TaskVector:
        return self._scaled(lambda v: -v)

    def __mul__(self, lam: object) -> TaskVector:
        c = scalar(lam, "the factor multiplying a TaskVector")
        return self._scaled(lambda v: c * v)

    __rmul__ = __mul__

    def __truediv__(self, lam: object) -> TaskVector:
        c = scalar(lam, "the divisor of a TaskVector")
        if c == 0:
            raise ZeroDivisionError("TaskVector divided by 0")
        return self._scaled(lambda v: v / c)

    def dot(self, other: TaskVector) -> float:
        """Inner product sum over all entries (tied weights counted once)."""
        other = self._check_pair(other, "dot")
        total = 0.0
        for k in self._order:
            a = self.deltas[k]
            total += float(torch.sum(a.double() * other.deltas[k].to(a.device).double()))
        return total

    def norm(self) -> float:
        """Frobenius norm over all entries (tied weights counted once)."""
        return sum(float(torch.sum(self.deltas[k].double() ** 2)) for k in self._order) ** 0.5

    def cosine(self, other: TaskVector) -> float:
        """dot / (norm * norm); ValueError for a zero vector."""
        denom = self.norm() * other.norm()
        if denom == 0:
            raise ValueError("cosine of a zero task vector is undefined")
        return self.dot(other) / denom

    def low_rank(self, r: int, *, batched: bool = False) -> TaskVector:
        """Best rank-r approximation (truncated SVD) of every 2-D delta, held as factors; others unchanged.

        With batched=True a delta with more than 2 dims is a stack of matrices over its last two
        dims (e.g. the replica dimension of the toy model), each truncated to rank r.
        """
        if isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"r is a {type(r).__name__}: expected an int >= 1")
        if r < 1:
            raise ValueError(f"r={r}: expected a rank >= 1")
        dense, factors = {}, {}
        for k in self._order:
            if k in self.factors and self.factors[k][0].shape[-1] <= r:
                factors[k] = self.factors[k]
                continue
            d = self.deltas[k]
            if (d.ndim == 2 or (batched and d.ndim > 2)) and r < min(d.shape[-2:]):
                factors[k] = low_rank_factors(d, r)
            else:
                dense[k] = d
        return self._like(dense, factors)

    # ------------------------------------------------------------------ applying

    def _owners(self) -> dict[str, str]:
        """Every key the vector writes -> the key of its delta."""
        return {**{k: k for k in self._order}, **{a: k for k, group in self.aliases.items() for a in group}}

    def _check_target(self, sd: Mapping[str, Tensor], name: str, strict: bool = True) -> None:
        diff = {k: r for k, r in diff_keys(self._meta(), sd, ("task vector", name)).items() if r != f"only in {name}"}
        if strict:
            covered = {*self._owners(), *self.skipped}
            for first, group in alias_groups(sd).items():
                if first in covered or any(g in covered for g in group):
                    covered.update([first, *group])
            diff.update({k: f"only in {name}" for k in uncovered_layers(
                [k for k, t in sd.items() if t.is_floating_point()], covered)})
        if diff:
            err = mismatch(diff, ("task vector", name))
            raise StateDictMismatch(f"{err}\n(layers the vector does not have are a mismatch: strict=False leaves them as they are)"
                                    if any(r == f"only in {name}" for r in diff.values()) else str(err))
        ints = [k for k in self._order if not sd[k].is_floating_point()]
        if ints:
            raise ValueError(f"{name} holds non-float tensors where the task vector has deltas: {ints}")

    def _groups(self, sd: Mapping[str, Tensor], name: str) -> list[tuple[list[str], str | None]]:
        """The target's keys grouped by shared storage, each with the key of the one delta it receives."""
        owners = self._owners()
        tied = alias_groups(sd)
        member = {a for group in tied.values() for a in group}
        out = []
        for k in sd:
            if k in member:
                continue
            names = [k, *tied.get(k, [])]
            got = {owners[n] for n in names if n in owners}
            if len(got) > 1:
                raise ValueError(
                    f"{', '.join(names)} share one tensor in the {name} but the task vector has separate deltas "
                    f"{sorted(got)}: build the task vector from models with the same weight tying"
                )
            out.append((names, got.pop() if got else None))
        return out

    def _apply_to(self, base: StateLike, lam: float, delta: Callable[[str], Tensor], *, strict: bool,
                  allow_nonfinite: bool) -> dict[str, Tensor]:
        sd, _ = tensors_of(base, "base")
        self._check_target(sd, "base", strict)
        out: dict[str, Tensor] = {}
        done: dict[str, Tensor] = {}
        for names, owner in self._groups(sd, "base"):
            if owner is None:
                for n in names:
                    out[n] = sd[n].detach()
                continue
            if owner not in done:
                t = sd[owner]
                done[owner] = cast_checked(wide(t) + lam * delta(owner).to(t.device), t.dtype, owner,
                                           allow_nonfinite=allow_nonfinite)
            for n in names:
                out[n] = done[owner]
        return {k: out[k] for k in sd}

    def apply_to(self, base: StateLike, lam: float = 1.0, *, strict: bool = True,
                 allow_nonfinite: bool = False) -> dict[str, Tensor]:
        """A new state dict base + lam * self in the base's dtypes and devices; base is unchanged.

        Tensors without a delta are the base's own (not copies). Keys the base ties get one tensor.
        """
        c = scalar(lam, "lam")
        return self._apply_to(base, c, lambda k: self.deltas[k], strict=strict, allow_nonfinite=allow_nonfinite)

    def apply_(self, module: StateLike, lam: float = 1.0, *, base: StateLike | None = None, strict: bool = True,
               allow_nonfinite: bool = False) -> StateLike:
        """In place, tensor by tensor: param <- (base if given else current) + lam * delta."""
        c = scalar(lam, "lam")
        targets, _ = tensors_of(module, "module")
        self._check_target(targets, "module", strict)
        src = targets
        if base is not None:
            src, _ = tensors_of(base, "base")
            self._check_target(src, "base", strict)
        plan = [(names, owner) for names, owner in self._groups(targets, "module") if owner is not None]
        done: dict[str, Tensor] = {}
        with torch.no_grad():
            for names, owner in plan:
                t = targets[names[0]]
                if owner not in done:
                    b = src.get(names[0], src[owner])
                    done[owner] = cast_checked(wide(b.detach().to(t.device)) + c * self.deltas[owner].to(t.device),
                                               t.dtype, owner, allow_nonfinite=allow_nonfinite)
                t.copy_(done[owner])
        return module

    # ------------------------------------------------------------------ container protocol and I/O

    def keys(self) -> list[str]:
        """Names of the deltas (one per tied group)."""
        return list(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._dense or key in self.factors

    def numel(self) -> int:
        """Number of entries of the dense deltas (tied weights counted once)."""
        total = sum(v.numel() for v in self._dense.values())
        return total + sum(B.shape[:-1].numel() * A.shape[-1] for B, A in self.factors.values())

    def to(self, device: torch.device | str) -> TaskVector:
        """A copy with every delta on `device`."""
        return TaskVector._make({k: v.to(device) for k, v in self._dense.items()},
                                {k: (B.to(device), A.to(device)) for k, (B, A) in self.factors.items()},
                                list(self._order), self.aliases, self.skipped)

    def shapes(self) -> dict[str, torch.Size]:
        """Key -> shape of the dense delta, without multiplying factors out."""
        out = {}
        for k in self._order:
            if k in self._dense:
                out[k] = self._dense[k].shape
            else:
                B, A = self.factors[k]
                out[k] = torch.Size((*B.shape[:-1], A.shape[-1]))
        return out

    def _meta(self) -> dict[str, Tensor]:
        return {k: torch.empty(s, device="meta") for k, s in self.shapes().items()}

    def __repr__(self) -> str:
        sizes = f"{len(self)} tensors, {self.numel():,} entries"
        low = f", {len(self.factors)} low-rank" if self.factors else ""
        return f"TaskVector({sizes}{low}, {len(self.aliases)} tied, {len(self.skipped)} skipped)"

    def save(self, path: str | os.PathLike) -> None:
        """Write the deltas (low-rank ones as their factors), aliases and skipped keys to a safetensors file, atomically."""
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in self._dense.items()}
        for k, (B, A) in self.factors.items():
            tensors[f"{k}:B"], tensors[f"{k}:A"] = B.contiguous(), A.contiguous()
        meta = {"order": self._order, "factors": list(self.factors), "aliases": self.aliases, "skipped": self.skipped}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"tvlib": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> TaskVector:
        """Read a task vector written by save()."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("tvlib", "{}"))
            factored = set(meta.get("factors", []))
            order = meta.get("order", list(f.keys()))
            dense = {k: f.get_tensor(k) for k in order if k not in factored}
            factors = {k: (f.get_tensor(f"{k}:B"), f.get_tensor(f"{k}:A")) for k in order if k in factored}
        tv = cls(dense, factors=factors, aliases=meta.get("aliases"), skipped=meta.get("skipped"))
        tv._order = list(order)
        return tv

    def to_peft(self, path: str | os.PathLike, *, base_model_name_or_path: str | None = None,
                dense: str = "error", embeddings: Sequence[str] | None = None) -> None:
        """Write the low-rank deltas as a peft LoRA adapter directory (PeftModel.from_pretrained loads it).

        dense: "error" refuses a vector with dense deltas (call low_rank first); "skip" leaves them out.
        embeddings: module names of nn.Embedding layers, written in peft's embedding layout (default: the
        keys ending in the usual embedding names, tvlib.vectors.lora.EMBEDDINGS).
        """
        from .lora import to_peft

        to_peft(self, path, base_model_name_or_path=base_model_name_or_path, dense=dense, embeddings=embeddings)


def align(vectors: Sequence[TaskVector], *, missing: str = "zero") -> list[TaskVector]:
    """The vectors over the union of their keys: a key one lacks becomes a zero delta (missing="zero"; a
    rank-0 factor pair where another holds it as factors), or a StateDictMismatch (missing="error").

    For adding adapters that target different modules: sum(align([a, b])).
    """
    if missing not in ("zero", "error"):
        raise ValueError(f"missing={missing!r}: expected 'zero' or 'error'")
    vectors = list(vectors)
    order: dict[str, tuple] = {}
    for v in vectors:
        for k in v:
            shape = v.deltas[k].shape if k not in v.factors else (*v.factors[k][0].shape[:-1], v.factors[k][1].shape[-1])
            if k in order and tuple(order[k][0]) != tuple(shape):
                raise mismatch({k: f"{tuple(order[k][0])} vs {tuple(shape)}"}, ("vectors", "vectors"))
            order.setdefault(k, (tuple(shape), v, k in v.factors))
    out = []
    for i, v in enumerate(vectors):
        lacking = [k for k in order if k not in v]
        if lacking and missing == "error":
            raise mismatch({k: "only in others" for k in lacking}, (f"vectors[{i}]", "others"))
        dense, factors = dict(v._dense), dict(v.factors)
        for k in lacking:
            shape, src, fac = order[k]
            like = src.factors[k][0] if fac else src._dense[k]
            if fac:
                factors[k] = (like.new_zeros((*shape[:-1], 0)), like.new_zeros((*shape[:-2], 0, shape[-1])))
            else:
                dense[k] = like.new_zeros(shape)
        out.append(TaskVector._make(dense, factors, list(order), v.aliases, v.skipped))
    return out


def merge(base: StateLike, vectors: Sequence[TaskVector], lams: float | Sequence[float], *, strict: bool = True,
          allow_nonfinite: bool = False) -> dict[str, Tensor]:
    """Psi0 + sum_i lam_i dPsi_i (eq. 2) as a new state dict; lams is one float for all or one per vector.

    The sum is formed tensor by tensor: one float32 tensor beyond the result at a time.
    """
    vectors = list(vectors)
    if not vectors:
        raise ValueError("vectors is empty: expected at least one TaskVector")
    for i, v in enumerate(vectors):
        if not isinstance(v, TaskVector):
            raise TypeError(f"vectors[{i}] is a {type(v).__name__}: expected a TaskVector")
        vectors[0]._check_pair(v, "+")
    if not isinstance(lams, (str, bytes)) and isinstance(lams, Sequence):
        lams = [scalar(x, f"lams[{i}]") for i, x in enumerate(lams)]
    else:
        lams = [scalar(lams, "lams")] * len(vectors)
    if len(lams) != len(vectors):
        raise ValueError(f"got {len(lams)} lams for {len(vectors)} vectors: expected one float or one per vector")
    aliases = {k: v for tv in reversed(vectors) for k, v in tv.aliases.items()}
    skipped = {k: r for tv in vectors for k, r in tv.skipped.items()}
    first = TaskVector._make(dict(vectors[0]._dense), dict(vectors[0].factors), vectors[0].keys(), aliases, skipped)

    def total(k: str) -> Tensor:
        acc = lams[0] * vectors[0].deltas[k]
        for lam, tv in zip(lams[1:], vectors[1:]):
            acc = acc + lam * tv.deltas[k].to(acc.device)
        return acc

    return first._apply_to(base, 1.0, total, strict=strict, allow_nonfinite=allow_nonfinite)
