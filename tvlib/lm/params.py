"""Parameters of the language-model experiment, checked on creation (tvlib.params pattern)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..params import Params, fraction, integer, number_list, positive
from ..vectors.device import resolve_device, resolve_dtype
from .hf import PHI_EMBEDDINGS, PHI_LINEARS, phi15_config, tiny_config

__all__ = ["TEXTS", "TINY", "PHI15_SHAPED", "UnlearningParams"]

TEXTS = ("forget", "aligned", "less_aligned")
TINY = "tiny"
#: a model with Phi-1.5's architecture and dimensions, randomly initialised (for timing without a download)
PHI15_SHAPED = "random-phi-1_5"


@dataclass(frozen=True)
class UnlearningParams(Params):
    """Every knob of the experiment; the defaults run the tiny offline model on a CPU in about two minutes.

    Checked on creation: model on disk, text files, lam grid, LoRA targets and rank, sizes.
    model_name: None or "tiny" (a small Phi trained here), "random-phi-1_5" (Phi-1.5's dimensions,
    random initialisation) or a causal LM on the local disk (e.g. "microsoft/phi-1_5").
    """

    chapter: ClassVar[str | None] = "unlearning"

    model_name: str = TINY  # "tiny"; "random-phi-1_5"; or a causal LM on the local disk
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    dtype: str = "float32"  # compute precision; weights and task vectors stay float32
    forget_path: str = ""  # three text files, or "" for the generated stand-ins
    aligned_path: str = ""
    less_aligned_path: str = ""
    seed: int = 0
    share: float = 0.8  # fraction of the forget world's vocabulary and templates in the aligned text
    less_share: float = 1.0  # fraction of the forget world's names and words the less aligned text borrows
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
    lora_emb_targets: tuple[str, ...] = PHI_EMBEDDINGS  # added to lora_targets for the second LoRA vector
    lora_lr: float = 1e-2
    lora_epochs: float = 12.0
    lams: tuple[float, ...] = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
    n_prompts: int = 128
    prompt_len: int = 32  # tokens
    cont_len: int = 32  # tokens
    n_alpha_blocks: int = 24  # blocks per text for the output-cosine alpha-hat
    progress: bool = False  # tqdm bars
    threads: int = 1  # torch CPU threads (set by the caller: torch.set_num_threads)

    @property
    def is_tiny(self) -> bool:
        """True for the offline default model."""
        return self.model_name in (None, TINY)

    def random_config(self, vocab_size: int):
        """The PhiConfig of a randomly initialised model (tiny, or Phi-1.5-shaped); vocab_size: the tokenizer's."""
        block = max(self.block_size, self.prompt_len + self.cont_len)
        if self.model_name == PHI15_SHAPED:
            return phi15_config(block)
        return tiny_config(vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                           num_heads=self.num_heads, block_size=block)

    def paths(self) -> dict[str, str | None]:
        """The three text paths by text name (None where not given)."""
        paths = {"forget": self.forget_path, "aligned": self.aligned_path, "less_aligned": self.less_aligned_path}
        return {k: v or None for k, v in paths.items()}

    def meta_model(self) -> nn.Module:
        """The model's architecture without weights (meta device); raises ValueError if model_name is not on disk."""
        from transformers import AutoConfig, AutoModelForCausalLM, PhiForCausalLM

        if self.is_tiny or self.model_name == PHI15_SHAPED:
            with torch.device("meta"):
                return PhiForCausalLM(self.random_config(self.vocab_size))
        try:
            config = AutoConfig.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"model_name={self.model_name!r} cannot be loaded offline (not a local directory and not in the Hugging Face "
                f"cache: {type(e).__name__}). Expected None or 'tiny' for the offline default, a local checkpoint "
                "directory, or a hub name downloaded beforehand (e.g. `hf download microsoft/phi-1_5`)."
            ) from None
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)

    def check(self) -> None:
        """Every parameter alone and together; the model's config is read (on the meta device, no weights)."""
        object.__setattr__(self, "lams", number_list("lams", self.lams, distinct=False))
        for name in ("lora_targets", "lora_emb_targets"):
            t = getattr(self, name)
            if isinstance(t, str):
                t = [s.strip() for s in t.split(",") if s.strip()]
            if not isinstance(t, Sequence) or len(t) == 0 or not all(isinstance(s, str) for s in t):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected a non-empty list of module names")
            object.__setattr__(self, name, tuple(t))
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
        for name in ("share", "less_share"):
            fraction(name, getattr(self, name))
        integer("threads", self.threads)
        for name in ("seed",):
            integer(name, getattr(self, name), lo=0)
        for name in ("n_sentences", "vocab_size", "hidden_size", "num_layers", "num_heads", "block_size", "stride",
                     "batch_size", "lora_rank", "n_prompts", "prompt_len", "cont_len", "n_alpha_blocks"):
            integer(name, getattr(self, name))
        for name in ("base_epochs", "epochs", "lr", "base_lr", "lora_alpha", "lora_lr", "lora_epochs"):
            positive(name, getattr(self, name))
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress={self.progress!r}: expected True or False")
        if self.is_tiny and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}")
        if self.is_tiny and self.vocab_size < 300:
            raise ValueError(f"vocab_size={self.vocab_size}: expected >= 300 (256 bytes plus merges)")
        if self.stride > self.block_size:
            raise ValueError(f"stride={self.stride} > block_size={self.block_size}: expected stride <= block_size")
        if self.lams[0] != 0.0 or len(self.lams) < 2 or min(self.lams) < self.lams[-1]:
            raise ValueError(f"lams={list(self.lams)}: expected 0 first (Psi0' itself) and the most negative lambda "
                             "last (the drops are measured there)")
        # LoRA: every target must exist and the rank must fit every targeted layer
        meta = self.meta_model()
        layers = {n: m.weight.shape for n, m in meta.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))}
        for name, targets in (("lora_targets", self.lora_targets), ("lora_emb_targets", self.lora_emb_targets)):
            hit = {t: [n for n in layers if n.split(".")[-1] == t] for t in targets}
            absent = [t for t, ns in hit.items() if not ns]
            if absent:
                names = sorted({n.split(".")[-1] for n in layers})
                raise ValueError(f"{name}: {absent} match no linear or embedding layer of the model; "
                                 f"expected some of {names}")
        hit = [n for n in layers if n.split(".")[-1] in self.lora_targets + self.lora_emb_targets]
        smallest = min((min(layers[n]), n) for n in hit)
        if self.lora_rank > smallest[0]:
            raise ValueError(f"lora_rank={self.lora_rank} exceeds the smallest targeted layer {smallest[1]!r} "
                             f"(min(in, out) = {smallest[0]}): expected lora_rank <= {smallest[0]}")
