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

import os
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .checkpoint import INPUT_EMBEDDINGS
from .io import atomic_path
from .statedict import wide

if TYPE_CHECKING:
    from .task_vector import TaskVector

__all__ = ["EMBEDDINGS", "extract_lora", "from_peft", "to_peft"]

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
