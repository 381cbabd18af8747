"""Hugging Face plumbing for the language-model experiment: tokenizer, tiny Phi config, blocks, fine-tuning.

Fine-tuning uses the Hugging Face Trainer, so `accelerate launch` / `torchrun` spread it over several
GPUs unchanged; LoRA goes through peft and its task vector is peft's delta weights (dW = scale B A).
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..vectors.device import resolve_device
from ..vectors.task_vector import TaskVector

__all__ = ["PHI_LINEARS", "PHI_EMBEDDINGS", "train_tokenizer", "tiny_config", "phi15_config", "chunk", "train_lm",
           "finetune_full", "finetune_lora"]

#: the linear layers of a Phi block (attention and MLP projections): LoRA's usual targets
PHI_LINEARS = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")
#: Phi's token embeddings and output layer, which a LoRA can target too
PHI_EMBEDDINGS = ("embed_tokens", "lm_head")


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


def phi15_config(block_size: int = 2048):
    """PhiConfig at Phi-1.5's dimensions (1.4 B parameters: width 2048, 24 layers, 32 heads, vocabulary 51200)."""
    from transformers import PhiConfig

    return PhiConfig(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                     num_attention_heads=32, max_position_embeddings=max(block_size, 2048), bos_token_id=0,
                     eos_token_id=0, pad_token_id=0)


def chunk(ids: Sequence[int] | Tensor, block_size: int, stride: int) -> Tensor:
    """Blocks of block_size consecutive tokens starting every `stride` tokens, shape (n_blocks, block_size)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.numel() < block_size:
        raise ValueError(f"a text of {ids.numel()} tokens is shorter than block_size={block_size}")
    return ids.unfold(0, block_size, stride).contiguous()


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
    tv = TaskVector.from_peft(peft_model).to("cpu")  # embeddings included when targeted
    peft_model.unload()  # the LoRA layers out again; the frozen base weights were never touched
    for n, q in model.named_parameters():
        q.requires_grad_(trainable[n])
    model.load_state_dict(base_state)
    return tv, log
