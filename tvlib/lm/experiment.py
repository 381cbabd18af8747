"""The paper's language-model experiment (Section 6): unlearn a text from a causal LM by negating its task vector.

Psi = Psi0' + lam * dPsi_forget, with Psi0' a base that knows the forget, aligned and less aligned
texts, dPsi_forget the full-rank or LoRA task vector of fine-tuning Psi0' on the forget text, and
Rouge-L of greedy continuations (plus the mean token loss) measured on each text along the lam grid.
The default model is a small PhiForCausalLM trained here from scratch with a locally trained
byte-level BPE tokenizer; any causal LM on the local disk (e.g. `microsoft/phi-1_5`) takes the
same code path. Fine-tuning uses the Hugging Face Trainer, so `accelerate launch` / `torchrun`
spread it over several GPUs unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .setting import resolve_device
from .textgen import make_texts, ngram_overlap

__all__ = [
    "TEXTS",
    "TINY",
    "PAPER_LAMS",
    "PAPER_ROUGE_L",
    "PAPER_ALPHA_HAT",
    "PAPER_NAMES",
    "UnlearningParams",
    "validate_params",
    "resolve_device",
    "resolve_dtype",
    "load_texts",
    "train_tokenizer",
    "tiny_config",
    "load_model",
    "chunk",
    "train_lm",
    "finetune_full",
    "finetune_lora",
    "draw_prompts",
    "EvalSet",
    "make_eval_sets",
    "rouge_l",
    "mean_nll",
    "output_alpha_hat",
    "negation_sweep",
    "relative_drop",
    "results_table",
    "compare_table",
    "write_json_atomic",
    "Experiment",
    "prepare",
    "train_base",
    "forget_vectors",
    "measure_alpha",
    "sweep",
    "collect",
    "save_results",
    "run_unlearning",
]

TEXTS = ("forget", "aligned", "less_aligned")
TINY = "tiny"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_PHI_LINEARS = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")


@dataclass(frozen=True)
class UnlearningParams:
    """Every knob of the experiment; the defaults run the tiny offline model on a CPU in about two minutes."""

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
    lora_targets: tuple[str, ...] = _PHI_LINEARS
    lora_lr: float = 1e-2
    lora_epochs: float = 12.0
    lams: tuple[float, ...] = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
    n_prompts: int = 128
    prompt_len: int = 32  # tokens
    cont_len: int = 32  # tokens
    measure_alpha: bool = True  # also fine-tune Psi0' on the aligned and less aligned texts for alpha-hat
    n_alpha_blocks: int = 24  # blocks per text for the output-cosine alpha-hat
    output_dir: str = "runs"
    progress: bool = True  # tqdm bars

    @property
    def is_tiny(self) -> bool:
        """True for the offline default model."""
        return self.model_name in (None, TINY)

    def paths(self) -> dict[str, str | None]:
        """The three text paths by text name."""
        return {"forget": self.forget_path, "aligned": self.aligned_path, "less_aligned": self.less_aligned_path}


# ------------------------------------------------------------------------- validation


def _int(name: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}={value!r}: expected an integer >= {lo}")
    return int(value)


def _pos(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a finite number > 0")
    return float(value)


def _lams(value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"lams={value!r}: expected a non-empty list of numbers, e.g. [0, -0.2, -0.4]")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v)]
    if bad:
        raise ValueError(f"lams={list(value)!r}: entries {bad!r} are not finite numbers; expected a list of numbers")
    return tuple(float(v) for v in value)


def resolve_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a dtype name ('float32', 'bfloat16', 'float16')."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def _meta_model(p: UnlearningParams) -> nn.Module:
    """The model's architecture without weights (meta device); raises ValueError if model_name is not on disk."""
    from transformers import AutoConfig, AutoModelForCausalLM, PhiForCausalLM

    if p.is_tiny:
        config = tiny_config(p.vocab_size, hidden_size=p.hidden_size, num_layers=p.num_layers,
                             num_heads=p.num_heads, block_size=max(p.block_size, p.prompt_len + p.cont_len))
        with torch.device("meta"):
            return PhiForCausalLM(config)
    try:
        config = AutoConfig.from_pretrained(p.model_name, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"model_name={p.model_name!r} cannot be loaded offline (not a local directory and not in the Hugging Face "
            f"cache: {type(e).__name__}). Expected None or 'tiny' for the offline default, a local checkpoint "
            "directory, or a hub name downloaded beforehand (e.g. `huggingface-cli download microsoft/phi-1_5`)."
        ) from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def validate_params(**params: Any) -> UnlearningParams:
    """Check every parameter (model on disk, text files, lam grid, LoRA rank, sizes) before any training starts."""
    known = set(UnlearningParams.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameters {unknown}: expected some of {sorted(known)}")
    if "lams" in params:
        params["lams"] = _lams(params["lams"])
    if "lora_targets" in params:
        t = params["lora_targets"]
        if isinstance(t, str):
            t = [s.strip() for s in t.split(",") if s.strip()]
        if not isinstance(t, Sequence) or len(t) == 0 or not all(isinstance(s, str) for s in t):
            raise ValueError(f"lora_targets={params['lora_targets']!r}: expected a non-empty list of module names")
        params["lora_targets"] = tuple(t)
    p = UnlearningParams(**params)
    if p.model_name is not None and (not isinstance(p.model_name, str) or not p.model_name):
        raise ValueError(f"model_name={p.model_name!r}: expected None, 'tiny' or a model name/path")
    device = resolve_device(p.device)
    dtype = resolve_dtype(p.dtype)
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(f"dtype='float16' needs device='cuda' (got {p.device!r}): use 'float32' or 'bfloat16'")
    given = {k: v for k, v in p.paths().items() if v is not None}
    if given and len(given) != 3:
        missing = sorted(set(TEXTS) - set(given))
        raise ValueError(f"{', '.join(m + '_path' for m in missing)} missing: pass all three text paths or none")
    for name, path in given.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name}_path={path!r}: no such file; expected a UTF-8 text file")
        if not Path(path).read_text(encoding="utf-8").strip():
            raise ValueError(f"{name}_path={path!r}: the file is empty; expected a text")
    if isinstance(p.share, bool) or not isinstance(p.share, Real) or not 0.0 <= p.share <= 1.0:
        raise ValueError(f"share={p.share!r}: expected a fraction in [0, 1]")
    for name in ("seed",):
        _int(name, getattr(p, name), lo=0)
    for name in ("n_sentences", "vocab_size", "hidden_size", "num_layers", "num_heads", "block_size", "stride",
                 "batch_size", "lora_rank", "n_prompts", "prompt_len", "cont_len", "n_alpha_blocks"):
        _int(name, getattr(p, name))
    for name in ("base_epochs", "epochs", "lr", "base_lr", "lora_alpha", "lora_lr", "lora_epochs"):
        _pos(name, getattr(p, name))
    for name in ("measure_alpha", "progress"):
        if not isinstance(getattr(p, name), bool):
            raise ValueError(f"{name}={getattr(p, name)!r}: expected True or False")
    if p.is_tiny and p.hidden_size % p.num_heads:
        raise ValueError(f"hidden_size={p.hidden_size} is not a multiple of num_heads={p.num_heads}")
    if p.is_tiny and p.vocab_size < 300:
        raise ValueError(f"vocab_size={p.vocab_size}: expected >= 300 (256 bytes plus merges)")
    if p.stride > p.block_size:
        raise ValueError(f"stride={p.stride} > block_size={p.block_size}: expected stride <= block_size")
    if not isinstance(p.output_dir, (str, os.PathLike)) or not str(p.output_dir):
        raise ValueError(f"output_dir={p.output_dir!r}: expected a directory path")
    # LoRA: every target must exist and the rank must fit every targeted layer
    meta = _meta_model(p)
    linears = {n: m for n, m in meta.named_modules() if isinstance(m, nn.Linear)}
    hit = {t: [n for n in linears if n.split(".")[-1] == t] for t in p.lora_targets}
    absent = [t for t, ns in hit.items() if not ns]
    if absent:
        names = sorted({n.split(".")[-1] for n in linears})
        raise ValueError(f"lora_targets: {absent} match no linear layer of the model; expected some of {names}")
    smallest = min((min(linears[n].in_features, linears[n].out_features), n) for ns in hit.values() for n in ns)
    if p.lora_rank > smallest[0]:
        raise ValueError(f"lora_rank={p.lora_rank} exceeds the smallest targeted layer {smallest[1]!r} "
                         f"(min(in, out) = {smallest[0]}): expected lora_rank <= {smallest[0]}")
    return p


# ------------------------------------------------------------------------- data, tokenizer, model


def load_texts(p: UnlearningParams) -> dict[str, str]:
    """The three texts: read from the given paths, or generated from (seed, share, n_sentences)."""
    if all(v is None for v in p.paths().values()):
        return make_texts(seed=p.seed, share=p.share, n_sentences=p.n_sentences)
    return {name: Path(path).read_text(encoding="utf-8") for name, path in p.paths().items()}  # type: ignore[arg-type]


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, pad_token=eos)


def tiny_config(vocab_size: int, *, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 4,
                block_size: int = 128):
    """A small PhiConfig (same architecture as Phi-1.5, a few layers)."""
    from transformers import PhiConfig

    return PhiConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                     num_hidden_layers=num_layers, num_attention_heads=num_heads,
                     max_position_embeddings=max(block_size, 128), bos_token_id=0, eos_token_id=0, pad_token_id=0)


def load_model(p: UnlearningParams, texts: Mapping[str, str]) -> tuple[nn.Module, Any]:
    """(model in float32 on the device, tokenizer): the tiny model built from scratch, or `model_name` from disk."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PhiForCausalLM

    device = resolve_device(p.device)
    if p.is_tiny:
        tokenizer = train_tokenizer([texts[k] for k in TEXTS], p.vocab_size)
        config = tiny_config(len(tokenizer), hidden_size=p.hidden_size, num_layers=p.num_layers,
                             num_heads=p.num_heads, block_size=max(p.block_size, p.prompt_len + p.cont_len))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            model = PhiForCausalLM(config)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(p.model_name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(p.model_name, local_files_only=True, dtype=torch.float32)
        except OSError as e:
            raise ValueError(f"model_name={p.model_name!r} cannot be loaded offline: {e}") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def chunk(ids: Sequence[int] | Tensor, block_size: int, stride: int) -> Tensor:
    """Blocks of block_size consecutive tokens starting every `stride` tokens, shape (n_blocks, block_size)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.numel() < block_size:
        raise ValueError(f"a text of {ids.numel()} tokens is shorter than block_size={block_size}")
    return ids.unfold(0, block_size, stride).contiguous()


# ------------------------------------------------------------------------- fine-tuning (Hugging Face Trainer)


@contextlib.contextmanager
def _isolated_rng() -> Iterator[None]:
    """Run a block that seeds the global RNGs (the Trainer does) and restore them afterwards."""
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class _Blocks(torch.utils.data.Dataset):
    """Causal-LM examples (input_ids = labels) from a (n_blocks, block_size) tensor."""

    def __init__(self, blocks: Tensor) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def train_lm(model: nn.Module, blocks: Tensor, *, epochs: float, lr: float, batch_size: int, seed: int,
             dtype: str = "float32", device: str = "auto", progress: bool = False) -> list[float]:
    """Train `model` in place on the blocks with the Hugging Face Trainer (AdamW, cosine schedule); the loss log."""
    from transformers import Trainer, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback

    dev = resolve_device(device)
    steps = math.ceil(len(blocks) / batch_size) * epochs
    with tempfile.TemporaryDirectory() as tmp, _isolated_rng():
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch_size, num_train_epochs=epochs, learning_rate=lr,
            lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.0, seed=seed, data_seed=seed,
            report_to="none", save_strategy="no", logging_strategy="steps", logging_steps=max(1, int(steps) // 25),
            disable_tqdm=not progress, use_cpu=dev.type == "cpu", bf16=dtype == "bfloat16",
            fp16=dtype == "float16", dataloader_num_workers=0,
        )
        model.train()
        trainer = Trainer(model=model, args=args, train_dataset=_Blocks(blocks), data_collator=default_data_collator)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        log = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
        del trainer
    model.eval()
    gc.collect()
    return log


def finetune_full(model: nn.Module, base_state: Mapping[str, Tensor], blocks: Tensor, *, epochs: float, lr: float,
                  batch_size: int, seed: int, dtype: str = "float32", device: str = "auto",
                  progress: bool = False):
    """Full-rank task vector of fine-tuning Psi0' (= base_state) on the blocks; the model is back at Psi0' after."""
    from .task_vector import TaskVector

    model.load_state_dict(base_state)
    log = train_lm(model, blocks, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype,
                   device=device, progress=progress)
    tv = TaskVector.from_models(base_state, model).to("cpu")  # off the accelerator until applied
    model.load_state_dict(base_state)
    return tv, log


def finetune_lora(model: nn.Module, base_state: Mapping[str, Tensor], blocks: Tensor, *, rank: int, alpha: float,
                  targets: Sequence[str], epochs: float, lr: float, batch_size: int, seed: int,
                  dtype: str = "float32", device: str = "auto", progress: bool = False):
    """LoRA task vector (dW = scale * B @ A on the base's weight names) of fine-tuning Psi0' on the blocks."""
    from peft import LoraConfig, get_peft_model

    from .task_vector import TaskVector

    model.load_state_dict(base_state)
    trainable = {n: q.requires_grad for n, q in model.named_parameters()}
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        torch.manual_seed(seed)  # LoRA's A is drawn at random (B = 0)
        peft_model = get_peft_model(model, config)
    log = train_lm(peft_model, blocks, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, dtype=dtype,
                   device=device, progress=progress)
    tv = TaskVector.from_peft(peft_model).to("cpu")
    peft_model.unload()  # the LoRA layers out again; the frozen base weights were never touched
    for n, q in model.named_parameters():
        q.requires_grad_(trainable[n])
    model.load_state_dict(base_state)
    return tv, log


# ------------------------------------------------------------------------- evaluation


def draw_prompts(n_tokens: int, *, n_prompts: int, prompt_len: int, cont_len: int, seed: int) -> np.ndarray:
    """Sorted start positions of n_prompts distinct (prompt, continuation) windows in a text of n_tokens tokens."""
    room = n_tokens - prompt_len - cont_len + 1
    if room < n_prompts:
        raise ValueError(f"a text of {n_tokens} tokens has {max(room, 0)} windows of prompt_len + cont_len = "
                         f"{prompt_len + cont_len} tokens; n_prompts={n_prompts} needs more text or shorter windows")
    return np.sort(np.random.default_rng([seed, 29]).choice(room, n_prompts, replace=False))


@dataclass
class EvalSet:
    """One text's prompts, reference continuations and loss blocks."""

    prompts: Tensor  # (n_prompts, prompt_len)
    references: list[str]  # decoded reference continuations
    blocks: Tensor  # (n_blocks, block_size), non-overlapping, for the mean token loss


def make_eval_sets(ids: Mapping[str, Tensor], tokenizer: Any, p: UnlearningParams) -> dict[str, EvalSet]:
    """Prompts drawn with the seed from every text, their reference continuations, and loss blocks."""
    out = {}
    for k, (name, x) in enumerate(ids.items()):
        starts = draw_prompts(len(x), n_prompts=p.n_prompts, prompt_len=p.prompt_len, cont_len=p.cont_len,
                              seed=p.seed + k)
        prompts = torch.stack([x[s:s + p.prompt_len] for s in starts])
        refs = [tokenizer.decode(x[s + p.prompt_len:s + p.prompt_len + p.cont_len]) for s in starts]
        out[name] = EvalSet(prompts, refs, chunk(x, p.block_size, p.block_size))
    return out


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


@torch.no_grad()
def rouge_l(model: nn.Module, tokenizer: Any, ev: EvalSet, *, cont_len: int, batch_size: int = 32,
            dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, list[str]]:
    """Rouge-L F1 of each prompt's greedy continuation against its reference, and the continuations."""
    from rouge_score import rouge_scorer
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    gen = GenerationConfig(max_new_tokens=cont_len, min_new_tokens=cont_len, do_sample=False, num_beams=1,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    outs: list[str] = []
    for batch in ev.prompts.split(batch_size):
        batch = batch.to(device)
        with _autocast(device, dtype):
            seq = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), generation_config=gen)
        outs += tokenizer.batch_decode(seq[:, batch.shape[1]:].cpu())
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score(ref, out)["rougeL"].fmeasure for ref, out in zip(ev.references, outs)]
    return np.asarray(scores), outs


@torch.no_grad()
def mean_nll(model: nn.Module, blocks: Tensor, *, batch_size: int = 32, dtype: torch.dtype = torch.float32) -> float:
    """Mean next-token loss (nats) of the model over the blocks."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in blocks.split(batch_size):
        batch = batch.to(device)
        with _autocast(device, dtype):
            logits = model(input_ids=batch).logits
        loss = nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch[:, 1:].flatten(),
                                           reduction="sum")
        total += loss.item()
        count += batch[:, 1:].numel()
    return total / count


@torch.no_grad()
def output_alpha_hat(model: nn.Module, base_state: Mapping[str, Tensor], vectors: Mapping[str, Any],
                     inputs: Tensor, *, reference: str = "forget", batch_size: int = 8,
                     dtype: torch.dtype = torch.float32) -> dict[str, dict[str, float]]:
    """The paper's alpha-hat between Psi0' + dPsi_reference and Psi0' + dPsi_other, for every other vector.

    "output": mean over inputs and positions of the cosine of the two models' logit vectors;
    "output_delta": the same for the logit changes relative to Psi0' (what each fine-tuning added).
    The model is switched in place between Psi0' and each Psi0' + dPsi and left at Psi0'.
    """
    device = next(model.parameters()).device
    others = [k for k in vectors if k != reference]
    sums = {k: [0.0, 0.0] for k in others}
    count = 0

    def logits(batch: Tensor) -> Tensor:
        with _autocast(device, dtype):
            return model(input_ids=batch).logits.float()

    for batch in inputs.split(batch_size):
        batch = batch.to(device)
        vectors[reference].apply_(model, 0.0, base=base_state)
        f0 = logits(batch)
        vectors[reference].apply_(model, 1.0, base=base_state)
        f_ref = logits(batch)
        for k in others:
            vectors[k].apply_(model, 1.0, base=base_state)
            f = logits(batch)
            sums[k][0] += nn.functional.cosine_similarity(f_ref, f, dim=-1).sum().item()
            sums[k][1] += nn.functional.cosine_similarity(f_ref - f0, f - f0, dim=-1).sum().item()
        count += batch.numel()
    vectors[reference].apply_(model, 0.0, base=base_state)
    return {"output": {k: s[0] / count for k, s in sums.items()},
            "output_delta": {k: s[1] / count for k, s in sums.items()}}


def negation_sweep(model: nn.Module, tokenizer: Any, base_state: Mapping[str, Tensor], task_vector: Any,
                   lams: Sequence[float], evals: Mapping[str, EvalSet], *, cont_len: int,
                   dtype: torch.dtype = torch.float32, progress: bool = False, desc: str = "sweep") -> dict[str, Any]:
    """Rouge-L and mean token loss on every text for Psi0' + lam * dPsi, lam along the grid (model edited in place)."""
    rouge = {k: [] for k in evals}
    rouge_se = {k: [] for k in evals}
    nll = {k: [] for k in evals}
    examples = {k: [] for k in evals}
    for lam in tqdm(lams, desc=desc, disable=not progress):
        task_vector.apply_(model, float(lam), base=base_state)
        for name, ev in evals.items():
            r, outs = rouge_l(model, tokenizer, ev, cont_len=cont_len, dtype=dtype)
            rouge[name].append(float(r.mean()))
            rouge_se[name].append(float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"))
            nll[name].append(mean_nll(model, ev.blocks, dtype=dtype))
            examples[name].append(outs[0])
    task_vector.apply_(model, 0.0, base=base_state)
    return {"rouge_l": rouge, "rouge_l_se": rouge_se, "nll": nll,
            "drop_percent": {k: 100.0 * relative_drop(v) for k, v in rouge.items()}, "examples": examples}


def relative_drop(values: Sequence[float]) -> float:
    """(first - last) / first: the relative drop between the first and the last point of the grid."""
    if values[0] == 0:
        return float("nan")
    return (values[0] - values[-1]) / values[0]


# Tables 3 and 4 of the paper (Phi-1.5, Rouge-L): rows HP1 (forget), HP2 (aligned), PP (less aligned)
PAPER_LAMS = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
PAPER_ROUGE_L = {
    "full": {"forget": (0.2213, 0.2211, 0.1732, 0.1866, 0.1572, 0.1389),
             "aligned": (0.2302, 0.2032, 0.2111, 0.2034, 0.1695, 0.1503),
             "less_aligned": (0.1983, 0.1888, 0.1877, 0.1802, 0.1932, 0.1683)},
    "lora": {"forget": (0.2432, 0.2033, 0.1857, 0.1665, 0.1439, 0.1568),
             "aligned": (0.2335, 0.1932, 0.2065, 0.1813, 0.1664, 0.1772),
             "less_aligned": (0.2111, 0.2001, 0.1884, 0.1963, 0.1849, 0.1819)},
}
PAPER_ALPHA_HAT = {"aligned": 0.498, "less_aligned": 0.239}
PAPER_NAMES = {"forget": "HP1", "aligned": "HP2", "less_aligned": "PP"}


def results_table(results: Mapping[str, Any], kind: str = "full", metric: str = "rouge_l"):
    """A pandas DataFrame in the layout of the paper's Tables 3 (kind="full") and 4 (kind="lora")."""
    import pandas as pd

    sweep = results[kind]
    cols = [f"λ={lam:g}" for lam in results["lams"]]
    df = pd.DataFrame({name: vals for name, vals in sweep[metric].items()}, index=cols).T
    if metric == "rouge_l":
        df["drop %"] = [sweep["drop_percent"][k] for k in df.index]
    return df


def compare_table(results: Mapping[str, Any], kind: str = "full"):
    """Our Rouge-L table next to the paper's (Table 3 for kind="full", 4 for "lora"), rows interleaved."""
    import pandas as pd

    ours = results_table(results, kind)
    rows = []
    for name in TEXTS:
        rows.append(pd.Series(ours.loc[name].to_numpy(), name=f"{name} (here)"))
        paper = PAPER_ROUGE_L[kind][name]
        vals = [paper[PAPER_LAMS.index(lam)] if lam in PAPER_LAMS else float("nan") for lam in results["lams"]]
        rows.append(pd.Series(vals + [100.0 * relative_drop(paper)], name=f"{PAPER_NAMES[name]} (paper)"))
    return pd.DataFrame(rows).set_axis(ours.columns, axis=1)


# ------------------------------------------------------------------------- the whole experiment


def _strict(obj: Any) -> Any:
    """obj with every NaN or infinite float replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write obj as strict JSON (NaN as null) to path atomically: a temporary file in its directory, then os.replace."""
    obj = _strict(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@dataclass
class Experiment:
    """Everything the steps of the experiment share: parameters, texts, model, tokenizer, Psi0' and the tokens."""

    params: UnlearningParams
    texts: dict[str, str]
    model: nn.Module
    tokenizer: Any
    ids: dict[str, Tensor]
    train_blocks: dict[str, Tensor]
    evals: dict[str, EvalSet]
    base_state: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype."""
        return resolve_dtype(self.params.dtype)

    def train_kw(self, lora: bool = False) -> dict[str, Any]:
        """Keyword arguments of a full-rank (or, with lora=True, a LoRA) fine-tuning of Psi0'."""
        p = self.params
        kw = dict(epochs=p.lora_epochs if lora else p.epochs, lr=p.lora_lr if lora else p.lr,
                  batch_size=p.batch_size, seed=p.seed, dtype=p.dtype, device=p.device, progress=p.progress)
        if lora:
            kw.update(rank=p.lora_rank, alpha=p.lora_alpha, targets=p.lora_targets)
        return kw


def prepare(p: UnlearningParams) -> Experiment:
    """Texts, tokenizer, model, training blocks and evaluation sets (no training yet)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    texts = load_texts(p)
    model, tokenizer = load_model(p, texts)
    ids = {k: torch.tensor(tokenizer(texts[k], add_special_tokens=False)["input_ids"]) for k in TEXTS}
    evals = make_eval_sets(ids, tokenizer, p)
    blocks = {k: chunk(ids[k], p.block_size, p.stride) for k in TEXTS}
    return Experiment(p, texts, model, tokenizer, ids, blocks, evals)


def train_base(ex: Experiment) -> None:
    """Psi0': the model trained on all three texts (from scratch for the tiny model); kept as ex.base_state."""
    p = ex.params
    blocks = torch.cat([ex.train_blocks[k] for k in TEXTS])
    ex.logs["base"] = train_lm(ex.model, blocks, epochs=p.base_epochs, lr=p.base_lr, batch_size=p.batch_size,
                               seed=p.seed, dtype=p.dtype, device=p.device, progress=p.progress)
    ex.base_state = {k: v.detach().clone() for k, v in ex.model.state_dict().items()}


def forget_vectors(ex: Experiment) -> tuple[Any, Any]:
    """dPsi_forget, full-rank and LoRA: Psi0' fine-tuned on the forget text (losses logged in ex.logs)."""
    blocks = ex.train_blocks["forget"]
    full, ex.logs["forget"] = finetune_full(ex.model, ex.base_state, blocks, **ex.train_kw())
    lora, ex.logs["forget_lora"] = finetune_lora(ex.model, ex.base_state, blocks, **ex.train_kw(lora=True))
    return full, lora


def measure_alpha(ex: Experiment, forget: Any) -> dict[str, dict[str, float]]:
    """alpha-hat of the aligned and less aligned texts to the forget text (three estimators, see the chapter).

    "task_vector": cosine of dPsi_forget and dPsi_other (Psi0' fine-tuned on each text, same recipe);
    "output" / "output_delta": output_alpha_hat on n_alpha_blocks blocks of each of the three texts.
    """
    p = ex.params
    vectors = {"forget": forget}
    for name in ("aligned", "less_aligned"):
        vectors[name], ex.logs[name] = finetune_full(ex.model, ex.base_state, ex.train_blocks[name], **ex.train_kw())
    g = torch.Generator().manual_seed(p.seed)
    inputs = torch.cat([b[torch.randperm(len(b), generator=g)[: p.n_alpha_blocks]]
                        for b in (ex.evals[k].blocks for k in TEXTS)])
    out = output_alpha_hat(ex.model, ex.base_state, vectors, inputs, dtype=ex.dtype)
    tv = {k: float(forget.cosine(vectors[k])) for k in ("aligned", "less_aligned")}
    return {"task_vector": tv, **out}


def sweep(ex: Experiment, task_vector: Any, desc: str = "sweep") -> dict[str, Any]:
    """negation_sweep of Psi0' + lam * task_vector over the parameters' lam grid, on all three texts."""
    p = ex.params
    return negation_sweep(ex.model, ex.tokenizer, ex.base_state, task_vector, p.lams, ex.evals,
                          cont_len=p.cont_len, dtype=ex.dtype, progress=p.progress, desc=desc)


def _restricted_cosine(full: Any, low: Any) -> float:
    """Cosine of two task vectors over the tensors of the second (the LoRA-targeted weights)."""
    return float(type(full)({k: full.deltas[k] for k in low.deltas}).cosine(low))


def collect(ex: Experiment, full: Any, lora: Any, alpha: dict | None, sweeps: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters, data sizes, alpha-hat, both sweeps ("full", "lora") and training logs as one JSON-ready dict."""
    p = ex.params
    params = asdict(p)
    params["lora_targets"], params["lams"] = list(p.lora_targets), list(p.lams)
    return {
        "params": params,
        "model": {"name": p.model_name or TINY, "n_parameters": sum(t.numel() for t in ex.model.parameters())},
        "texts": {k: {"n_tokens": len(ex.ids[k]), "n_chars": len(ex.texts[k]),
                      "source": p.paths()[k] or "generated"} for k in TEXTS},
        "ngram_overlap": {k: ngram_overlap(ex.texts["forget"], ex.texts[k]) for k in ("aligned", "less_aligned")},
        "alpha_hat": alpha,
        "lams": list(p.lams),
        "full": sweeps["full"],
        "lora": sweeps["lora"],
        "task_vectors": {"full_norm": float(full.norm()), "lora_norm": float(lora.norm()),
                         "cosine_full_lora": _restricted_cosine(full, lora)},
        "training_loss": dict(ex.logs),
        "prompt": {k: ex.tokenizer.decode(ex.evals[k].prompts[0]) for k in TEXTS},
        "reference": {k: ex.evals[k].references[0] for k in TEXTS},
    }


def save_results(results: Mapping[str, Any], output_dir: str | os.PathLike) -> Path | None:
    """Write results to output_dir/unlearning.json atomically (only on the main process); the path."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    return write_json_atomic(results, Path(output_dir) / "unlearning.json")


def run_unlearning(p: UnlearningParams, *, write: bool = True) -> dict[str, Any]:
    """The whole experiment for validated parameters; the results dict (also saved as JSON if `write`)."""
    t0 = time.perf_counter()
    ex = prepare(p)
    train_base(ex)
    full, lora = forget_vectors(ex)
    alpha = measure_alpha(ex, full) if p.measure_alpha else None
    sweeps = {"full": sweep(ex, full, "full-rank sweep"), "lora": sweep(ex, lora, "LoRA sweep")}
    results = collect(ex, full, lora, alpha, sweeps)
    results["seconds"] = time.perf_counter() - t0
    if write:
        save_results(results, p.output_dir)
    return results
