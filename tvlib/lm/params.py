"""Parameters of the language-model experiment, checked on creation (tvlib.params pattern)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..params import Params, integer, number_list, positive
from ..vectors.device import resolve_device, resolve_dtype
from .hf import PHI_LINEARS, tiny_config

__all__ = ["TEXTS", "TINY", "UnlearningParams"]

TEXTS = ("forget", "aligned", "less_aligned")
TINY = "tiny"


@dataclass(frozen=True)
class UnlearningParams(Params):
    """Every knob of the experiment; the defaults run the tiny offline model on a CPU in about two minutes.

    Checked on creation: model on disk, text files, lam grid, LoRA targets and rank, sizes.
    """

    chapter: ClassVar[str | None] = "unlearning"

    model_name: str | None = None  # None or "tiny": the offline default; else a causal LM on the local disk
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    dtype: str = "float32"  # compute precision; weights and task vectors stay float32
    forget_path: str | None = None  # three text files, or None for the generated stand-in
    aligned_path: str | None = None
    less_aligned_path: str | None = None
    seed: int = 0
    share: float = 0.8  # fraction of the forget world's vocabulary and templates in the aligned text
    n_sentences: int = 200  # per generated text
    vocab_size: int = 1024  # tiny model only: BPE vocabulary
    hidden_size: int = 128  # tiny model only
    num_layers: int = 2  # tiny model only
    num_heads: int = 4  # tiny model only
    block_size: int = 64  # tokens per training block
    stride: int = 32  # step between training blocks (overlap = block_size - stride)
    batch_size: int = 16
    base_epochs: float = 12.0  # Psi0': epochs on all three texts
    base_lr: float = 3e-3
    epochs: float = 6.0  # every fine-tuning of Psi0' on one text
    lr: float = 1e-3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = PHI_LINEARS
    lora_lr: float = 1e-2
    lora_epochs: float = 12.0
    lams: tuple[float, ...] = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
    n_prompts: int = 128
    prompt_len: int = 32  # tokens
    cont_len: int = 32  # tokens
    measure_alpha: bool = True  # also fine-tune Psi0' on the aligned and less aligned texts for alpha-hat
    n_alpha_blocks: int = 24  # blocks per text for the output-cosine alpha-hat
    output_dir: str = "runs"
    progress: bool = False  # tqdm bars
    threads: int = 1  # torch CPU threads (set by the caller: torch.set_num_threads)

    @property
    def is_tiny(self) -> bool:
        """True for the offline default model."""
        return self.model_name in (None, TINY)

    def paths(self) -> dict[str, str | None]:
        """The three text paths by text name."""
        return {"forget": self.forget_path, "aligned": self.aligned_path, "less_aligned": self.less_aligned_path}

    def meta_model(self) -> nn.Module:
        """The model's architecture without weights (meta device); raises ValueError if model_name is not on disk."""
        from transformers import AutoConfig, AutoModelForCausalLM, PhiForCausalLM

        if self.is_tiny:
            config = tiny_config(self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                                 num_heads=self.num_heads, block_size=max(self.block_size, self.prompt_len + self.cont_len))
            with torch.device("meta"):
                return PhiForCausalLM(config)
        try:
            config = AutoConfig.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"model_name={self.model_name!r} cannot be loaded offline (not a local directory and not in the Hugging Face "
                f"cache: {type(e).__name__}). Expected None or 'tiny' for the offline default, a local checkpoint "
                "directory, or a hub name downloaded beforehand (e.g. `huggingface-cli download microsoft/phi-1_5`)."
            ) from None
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)

    def check(self) -> None:
        """Every parameter alone and together; the model's config is read (on the meta device, no weights)."""
        object.__setattr__(self, "lams", number_list("lams", self.lams, distinct=False))
        t = self.lora_targets
        if isinstance(t, str):
            t = [s.strip() for s in t.split(",") if s.strip()]
        if not isinstance(t, Sequence) or len(t) == 0 or not all(isinstance(s, str) for s in t):
            raise ValueError(f"lora_targets={self.lora_targets!r}: expected a non-empty list of module names")
        object.__setattr__(self, "lora_targets", tuple(t))
        if self.model_name is not None and (not isinstance(self.model_name, str) or not self.model_name):
            raise ValueError(f"model_name={self.model_name!r}: expected None, 'tiny' or a model name/path")
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype)
        if dtype == torch.float16 and device.type != "cuda":
            raise ValueError(f"dtype='float16' needs device='cuda' (got {self.device!r}): use 'float32' or 'bfloat16'")
        given = {k: v for k, v in self.paths().items() if v is not None}
        if given and len(given) != 3:
            missing = sorted(set(TEXTS) - set(given))
            raise ValueError(f"{', '.join(m + '_path' for m in missing)} missing: pass all three text paths or none")
        for name, path in given.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"{name}_path={path!r}: no such file; expected a UTF-8 text file")
            if not Path(path).read_text(encoding="utf-8").strip():
                raise ValueError(f"{name}_path={path!r}: the file is empty; expected a text")
        if isinstance(self.share, bool) or not isinstance(self.share, Real) or not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share={self.share!r}: expected a fraction in [0, 1]")
        integer("threads", self.threads)
        for name in ("seed",):
            integer(name, getattr(self, name), lo=0)
        for name in ("n_sentences", "vocab_size", "hidden_size", "num_layers", "num_heads", "block_size", "stride",
                     "batch_size", "lora_rank", "n_prompts", "prompt_len", "cont_len", "n_alpha_blocks"):
            integer(name, getattr(self, name))
        for name in ("base_epochs", "epochs", "lr", "base_lr", "lora_alpha", "lora_lr", "lora_epochs"):
            positive(name, getattr(self, name))
        for name in ("measure_alpha", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.is_tiny and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}")
        if self.is_tiny and self.vocab_size < 300:
            raise ValueError(f"vocab_size={self.vocab_size}: expected >= 300 (256 bytes plus merges)")
        if self.stride > self.block_size:
            raise ValueError(f"stride={self.stride} > block_size={self.block_size}: expected stride <= block_size")
        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
            raise ValueError(f"output_dir={self.output_dir!r}: expected a directory path")
        # LoRA: every target must exist and the rank must fit every targeted layer
        meta = self.meta_model()
        linears = {n: m for n, m in meta.named_modules() if isinstance(m, nn.Linear)}
        hit = {t: [n for n in linears if n.split(".")[-1] == t] for t in self.lora_targets}
        absent = [t for t, ns in hit.items() if not ns]
        if absent:
            names = sorted({n.split(".")[-1] for n in linears})
            raise ValueError(f"lora_targets: {absent} match no linear layer of the model; expected some of {names}")
        smallest = min((min(linears[n].in_features, linears[n].out_features), n) for ns in hit.values() for n in ns)
        if self.lora_rank > smallest[0]:
            raise ValueError(f"lora_rank={self.lora_rank} exceeds the smallest targeted layer {smallest[1]!r} "
                             f"(min(in, out) = {smallest[0]}): expected lora_rank <= {smallest[0]}")
