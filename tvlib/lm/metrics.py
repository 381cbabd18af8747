"""Metrics of the language-model experiment: Rouge-L of greedy continuations, mean token loss, alpha-hat.

Rouge-L F1 is computed here, with the tokenisation and formula of Google's `rouge-score` package
(lower-case, alphanumeric tokens, no stemming; F1 of the longest common subsequence), so the
experiment runs where that package is not installed; tests/test_llm.py checks the two agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["draw_prompts", "EvalSet", "rouge_l_f1", "rouge_l", "mean_nll", "output_alpha_hat", "evaluate",
           "relative_drop"]


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


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", text.lower())) if t]


def rouge_l_f1(reference: str, candidate: str) -> float:
    """Rouge-L F1 of a candidate against a reference, as rouge-score computes it without stemming."""
    ref, can = _tokens(reference), _tokens(candidate)
    if not ref or not can:
        return 0.0
    prev = [0] * (len(can) + 1)
    for r in ref:  # longest common subsequence, one row at a time
        cur = [0]
        for j, c in enumerate(can):
            cur.append(prev[j] + 1 if r == c else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    precision, recall = lcs / len(can), lcs / len(ref)
    return 2 * precision * recall / (precision + recall) if lcs else 0.0


@torch.no_grad()
def rouge_l(model: nn.Module, tokenizer: Any, ev: EvalSet, *, cont_len: int, batch_size: int = 32,
            dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, list[str]]:
    """Rouge-L F1 of each prompt's greedy continuation against its reference, and the continuations."""
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
    return np.asarray([rouge_l_f1(ref, out) for ref, out in zip(ev.references, outs)]), outs


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


def evaluate(model: nn.Module, tokenizer: Any, evals: Mapping[str, EvalSet], *, cont_len: int,
             rouge: bool = True, dtype: torch.dtype = torch.float32) -> dict[str, dict[str, Any]]:
    """The model as it is, on every text: mean token loss, and (if `rouge`) Rouge-L mean, its SE and one example."""
    out: dict[str, dict[str, Any]] = {}
    for name, ev in evals.items():
        res: dict[str, Any] = {"nll": mean_nll(model, ev.blocks, dtype=dtype)}
        if rouge:
            r, texts = rouge_l(model, tokenizer, ev, cont_len=cont_len, dtype=dtype)
            res.update(rouge_l=float(r.mean()), example=texts[0],
                       rouge_l_se=float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"))
        out[name] = res
    return out


def relative_drop(values: Sequence[float]) -> float:
    """(first - last) / first: the relative drop between the first and the last point of the grid."""
    if values[0] == 0:
        return float("nan")
    return (values[0] - values[-1]) / values[0]
