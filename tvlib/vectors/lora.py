"""peft LoRA adapters in and out of task vectors: dW = scale * B @ A per wrapped layer.

from_peft reads a PeftModel's adapter (dense deltas, or factors for plain Linear layers; LoRA-wrapped
embeddings, whose factors peft keeps in lora_embedding_A/B, and modules_to_save copies come as dense
deltas); to_peft writes
a vector's factored deltas as an adapter directory that PeftModel.from_pretrained loads, with one rank
per module (rank_pattern) and lora_alpha equal to the rank, so peft's scale is 1 and B @ A is the delta.
An embedding (nn.Embedding: the input embeddings by their usual names, or the modules named in
`embeddings`) is written in peft's embedding layout, lora_embedding_A = B^T and lora_embedding_B = A^T,
whose product peft transposes back to B @ A.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .checkpoint import INPUT_EMBEDDINGS
from .io import atomic_path
from .statedict import wide

if TYPE_CHECKING:
    from .task_vector import TaskVector

__all__ = ["EMBEDDINGS", "LoraCheckpoint", "extract_lora", "from_peft", "is_adapter", "to_peft"]

EMBEDDINGS = (*INPUT_EMBEDDINGS, "wpe.weight", "embed_positions.weight", "position_embeddings.weight",
              "token_type_embeddings.weight")  # weight keys of nn.Embedding modules in Hugging Face models


def from_peft(peft_model: nn.Module, adapter_name: str = "default", *, factored: bool = False
              ) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
    """(dense deltas, factors) of a peft adapter, keyed by the base model's parameter names."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    get_base = getattr(peft_model, "get_base_model", None)
    model = get_base() if callable(get_base) else peft_model
    deltas: dict[str, Tensor] = {}
    factors: dict[str, tuple[Tensor, Tensor]] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and (adapter_name in module.lora_A
                                                  or adapter_name in getattr(module, "lora_embedding_A", {})):
                if adapter_name in module.merged_adapters:
                    raise ValueError(f"adapter {adapter_name!r} is already merged into {name}: unmerge it first")
                if adapter_name in getattr(module, "lora_variant", {}):
                    raise NotImplementedError(f"{name}: LoRA variants such as DoRA are not plain B @ A deltas")
                weight = module.get_base_layer().weight
                has_bias = module.lora_bias.get(adapter_name, False)
                if factored and isinstance(module, LoraLinear) and not module.fan_in_fan_out:
                    B = wide(module.lora_B[adapter_name].weight) * module.scaling[adapter_name]
                    factors[f"{name}.weight"] = (B, wide(module.lora_A[adapter_name].weight))
                else:
                    delta = module.get_delta_weight(adapter_name)
                    if delta.shape != weight.shape:
                        raise ValueError(f"{name}: delta {tuple(delta.shape)} vs weight {tuple(weight.shape)}")
                    deltas[f"{name}.weight"] = wide(delta)
                if has_bias:
                    bias = module.lora_B[adapter_name].bias
                    deltas[f"{name}.bias"] = wide(bias) * module.scaling[adapter_name]
            elif isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
                original = module.original_module.state_dict()
                for p, t in module.modules_to_save[adapter_name].state_dict().items():
                    if t.is_floating_point():
                        deltas[f"{name}.{p}"] = wide(t) - wide(original[p])
    if not deltas and not factors:
        known = list(getattr(peft_model, "peft_config", {}))
        raise ValueError(f"adapter_name={adapter_name!r}: no LoRA layer holds it (adapters: {known})")
    return deltas, factors


def to_peft(tv: TaskVector, path: str | os.PathLike, *, base_model_name_or_path: str | None = None,
            dense: str = "error", embeddings: tuple[str, ...] | list[str] | None = None) -> None:
    """Write tv's factored deltas as a peft LoRA adapter directory, atomically.

    embeddings: the module names (e.g. "model.embed_tokens") that are nn.Embedding layers; default: the
    keys ending in one of EMBEDDINGS. Every other factored key is written as a Linear layer.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file

    if dense not in ("error", "skip"):
        raise ValueError(f"dense={dense!r}: expected 'error' or 'skip'")
    plain = [k for k in tv if k not in tv.factors]
    if plain and dense == "error":
        shown = ", ".join(plain[:5]) + (f" and {len(plain) - 5} more" if len(plain) > 5 else "")
        raise ValueError(f"a LoRA adapter holds factors only; these deltas are dense: {shown} "
                         "(call low_rank(r) first, or dense='skip' to leave them out)")
    embedding_modules = set(embeddings or ())
    unknown = sorted(m for m in embedding_modules if f"{m}.weight" not in tv.factors)
    if unknown:
        raise ValueError(f"embeddings {unknown}: no factored delta '<module>.weight' for them in the task vector")
    tensors: dict[str, Tensor] = {}
    ranks: dict[str, int] = {}
    for k, (B, A) in tv.factors.items():
        if not k.endswith(".weight") or B.ndim != 2:
            raise ValueError(f"{k}: a LoRA factor pair must be the 2-D weight of a module (key ending in .weight)")
        r = B.shape[-1]
        if r == 0:  # a zero delta (from align): nothing to adapt
            continue
        module = k[: -len(".weight")]
        ranks[module] = r
        if module in embedding_modules if embeddings is not None else k.endswith(EMBEDDINGS):
            tensors[f"base_model.model.{module}.lora_embedding_A"] = B.T.contiguous()
            tensors[f"base_model.model.{module}.lora_embedding_B"] = A.T.contiguous()
            continue
        tensors[f"base_model.model.{module}.lora_A.weight"] = A.contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = B.contiguous()
    if not ranks:
        raise ValueError("the task vector has no non-zero low-rank factors to write as a LoRA adapter")
    top = max(ranks.values())
    config = LoraConfig(r=top, lora_alpha=top, target_modules=sorted(ranks), rank_pattern=dict(ranks),
                        alpha_pattern=dict(ranks), lora_dropout=0.0, bias="none",
                        base_model_name_or_path=base_model_name_or_path)
    with atomic_path(path, directory=True) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})


def extract_lora(base: str | os.PathLike, finetuned: str | os.PathLike, out: str | os.PathLike, rank: int, *,
                 force: bool = False) -> dict:
    """Write the best rank-`rank` approximation of finetuned - base, matrix by matrix (truncated SVD), as a
    peft LoRA adapter directory; reads one tensor of each checkpoint at a time. Returns a summary: the
    matrices written, the dense deltas left out (norms, biases: a LoRA adapter holds matrices only) with
    their largest |delta|, and the relative Frobenius error of the approximation over the matrices.
    """
    from .checkpoint import open_checkpoint, tied_embeddings
    from .engine import check_output
    from .kernels import low_rank_factors
    from .task_vector import TaskVector

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank={rank!r}: expected an int >= 1")
    base_ck, ft_ck = open_checkpoint(base), open_checkpoint(finetuned)
    check_output(out, [base_ck, ft_ck], force=force, markers=("adapter_config.json",))
    tie = tied_embeddings(base_ck.config, base_ck.keys())
    factors, left_out = {}, {}
    err2 = total2 = 0.0
    for k, info in base_ck.infos.items():
        if not info.dtype.is_floating_point or (tie and k == tie[1]):
            continue
        if k not in ft_ck or ft_ck.infos[k].shape != info.shape:
            raise ValueError(f"{k}: {info.shape} in the base, "
                             f"{ft_ck.infos[k].shape if k in ft_ck else 'missing'} in the fine-tuned model")
        delta = ft_ck.read(k).float() - base_ck.read(k).float()
        if delta.ndim != 2 or not k.endswith(".weight"):
            if delta.abs().max() > 0:
                left_out[k] = float(delta.abs().max())
            continue
        B, A = low_rank_factors(delta, min(rank, *delta.shape))
        err2 += float((delta - B @ A).pow(2).sum())
        total2 += float(delta.pow(2).sum())
        factors[k] = (B, A)
    TaskVector({}, factors=factors).to_peft(out, base_model_name_or_path=str(base))
    for ck in (base_ck, ft_ck):
        ck.close()
    return {"matrices": len(factors), "left_out": left_out,
            "relative_error": (err2 / total2) ** 0.5 if total2 > 0 else 0.0}


def is_adapter(path: str | os.PathLike) -> bool:
    """True for a peft adapter directory (adapter_config.json and its weights)."""
    from pathlib import Path

    return (Path(path) / "adapter_config.json").is_file()


def _lookup(pattern: dict, module: str, default):
    """peft's rank_pattern / alpha_pattern: a key equal to the module name or to a dotted suffix of it."""
    for key, value in (pattern or {}).items():
        if module == key or module.endswith("." + key):
            return value
    return default


class LoraCheckpoint:
    """A base checkpoint with a peft LoRA adapter applied, read tensor by tensor like a Checkpoint: an adapted
    weight is base + scale * B @ A (embeddings: peft's transposed layout), computed in float32 when read;
    every other tensor is the base's. mergekit's `model+lora` as a merge input."""

    def __init__(self, base: str | os.PathLike, adapter: str | os.PathLike, name: str | None = None) -> None:
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        from .checkpoint import TensorInfo, open_checkpoint

        self.base = open_checkpoint(base)
        adapter = Path(adapter)
        self.source = f"{self.base.source}+{adapter}"
        self.name = name or self.source
        self.root, self.config = adapter, self.base.config
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
            raise ValueError(f"{adapter}: a {cfg.get('peft_type')} adapter{' with DoRA' if cfg.get('use_dora') else ''}: "
                             "tvlib reads plain LoRA adapters (delta = scale * B @ A)")
        files = sorted(adapter.glob("adapter_model.safetensors"))
        if not files:
            raise FileNotFoundError(f"{adapter}: no adapter_model.safetensors (save the adapter with safetensors)")
        weights = load_file(str(files[0]))
        self.factors: dict[str, tuple[Tensor, Tensor, float, bool]] = {}
        for k in weights:
            if not k.startswith("base_model.model."):
                raise ValueError(f"{adapter}: tensor {k}: expected peft's base_model.model.<module>.lora_* names")
            module, _, kind = k[len("base_model.model."):].rpartition(".lora_")
            if k.endswith(".base_layer.weight"):  # peft's copy of a LoRA-wrapped embedding's base weight
                param = k[len("base_model.model."):-len(".base_layer.weight")] + ".weight"
                if param not in self.base or not torch.equal(weights[k], self.base.read(param).to(weights[k].dtype)):
                    raise ValueError(f"{adapter}: {k} differs from the base's {param} (a resized vocabulary?): "
                                     "merge the adapter into its own base first")
                continue
            if kind in ("A.weight", "embedding_A"):
                emb = kind == "embedding_A"
                A = weights[k]
                B = weights[k.replace("lora_A.weight", "lora_B.weight").replace("lora_embedding_A", "lora_embedding_B")]
                r = A.shape[0]
                alpha = _lookup(cfg.get("alpha_pattern"), module, cfg.get("lora_alpha", r))
                scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
                self.factors[f"{module}.weight"] = (A.float(), B.float(), scale, emb or bool(cfg.get("fan_in_fan_out")))
            elif kind not in ("B.weight", "embedding_B"):
                raise ValueError(f"{adapter}: tensor {k}: tvlib reads LoRA factors only (no modules_to_save, no biases)")
        missing = [k for k in self.factors if k not in self.base]
        if missing:
            raise ValueError(f"{adapter}: adapts {missing[:3]}, which the base {self.base.name} does not have")
        self.infos = dict(self.base.infos)
        for k in self.factors:
            shape = self.base.infos[k].shape
            self.infos[k] = TensorInfo(files[0], torch.float32, shape, 0, int(torch.Size(shape).numel()) * 4)

    def delta(self, key: str) -> Tensor:
        A, B, scale, transposed = self.factors[key]
        d = (B @ A) * scale
        return d.T if transposed else d

    def read(self, key: str, out: Tensor | None = None, part: tuple[int, int] | None = None) -> Tensor:
        if key not in self.factors:
            return self.base.read(key, out=out, part=part)
        t = self.base.read(key).float() + self.delta(key)
        if part is not None:
            t = t.reshape(-1)[part[0]:part[1]]
        if out is not None:
            view = out[: t.numel() * 4].view(torch.float32).view(t.shape)
            return view.copy_(t)
        return t

    def keys(self) -> list[str]:
        return list(self.infos)

    def __contains__(self, key: str) -> bool:
        return key in self.infos

    def __iter__(self):
        return iter(self.infos)

    def numel(self) -> int:
        return sum(i.numel for i in self.infos.values())

    def nbytes(self) -> int:
        return self.base.nbytes() + sum(int(torch.Size(A.shape).numel() + torch.Size(B.shape).numel()) * 4
                                        for A, B, _, _ in self.factors.values())

    def files(self) -> list:
        return [*self.base.files(), self.infos[next(iter(self.factors))].file] if self.factors else self.base.files()

    def close(self) -> None:
        self.base.close()

    def __repr__(self) -> str:
        return f"LoraCheckpoint({self.name!r}, {len(self.factors)} adapted tensors)"
