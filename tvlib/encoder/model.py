"""The pre-trained encoder as a sentence classifier with a fixed head; full and LoRA fine-tuning; merged-model outputs.

The classifier is the paper's model shape on a real backbone: the mean of the encoder's last hidden
states over the sentence's tokens, read by a **fixed** head a (a_j = +-scale/sqrt(width), never
trained), so logits are (-a.h, a.h) and every task vector lives in the encoder. With this
antisymmetric head the per-sentence cosine of two models' logit vectors is the product of their
predicted signs, and alpha-hat (tvlib.metrics.output_cosine) their mean agreement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics import hinge
from ..vectors.task_vector import TaskVector

__all__ = ["Tokens", "tokenize", "fixed_head", "logits", "finetune", "LORA_TARGETS", "layer_type"]

#: the linear layers of a BERT block that LoRA wraps: attention projections and the MLP
LORA_TARGETS = ("query", "key", "value", "dense")


@dataclass(frozen=True)
class Tokens:
    """Token ids and attention mask of a list of sentences, padded to one length."""

    ids: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def take(self, idx: Tensor) -> Tokens:
        return Tokens(self.ids[idx], self.mask[idx])

    def to(self, device: torch.device | str) -> Tokens:
        return Tokens(self.ids.to(device), self.mask.to(device))


def tokenize(tokenizer, texts: Sequence[str], max_len: int) -> Tokens:
    """Tokens of texts, truncated and padded to max_len."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return Tokens(enc["input_ids"], enc["attention_mask"])


def fixed_head(width: int, seed: int, scale: float = 1.0) -> Tensor:
    """The fixed output layer a: entries +-scale/sqrt(width) with random signs from seed."""
    g = torch.Generator().manual_seed(seed)
    return scale * (2.0 * torch.randint(0, 2, (width,), generator=g) - 1.0) / math.sqrt(width)


def _gap(encoder: nn.Module, head: Tensor, tokens: Tokens) -> Tensor:
    h = encoder(input_ids=tokens.ids, attention_mask=tokens.mask).last_hidden_state
    m = tokens.mask.unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / m.sum(1)
    return pooled @ head.to(h.device, h.dtype)


@torch.no_grad()
def logits(encoder: nn.Module, head: Tensor, tokens: Tokens, state_dict: Mapping[str, Tensor] | None = None,
           batch_size: int = 256) -> Tensor:
    """Logits (-a.h, a.h) of every sentence, shape (n, 2), with the encoder's weights or those of state_dict."""
    from torch.func import functional_call

    out = []
    for i in range(0, len(tokens), batch_size):
        part = tokens.take(torch.arange(i, min(i + batch_size, len(tokens))))
        if state_dict is None:
            z = _gap(encoder, head, part)
        else:
            z = functional_call(encoder, dict(state_dict), args=(),
                                kwargs={"input_ids": part.ids, "attention_mask": part.mask}).last_hidden_state
            m = part.mask.unsqueeze(-1).to(z.dtype)
            z = ((z * m).sum(1) / m.sum(1)) @ head.to(z.device, z.dtype)
        out.append(torch.stack([-z, z], -1))
    return torch.cat(out).float().cpu()


def layer_type(key: str) -> str:
    """'attention', 'mlp', 'embeddings' or 'other' for a BERT parameter name."""
    if key.startswith("embeddings."):
        return "embeddings"
    if ".attention." in key:
        return "attention" if "LayerNorm" not in key else "other"
    if ".intermediate." in key or (".output.dense" in key and ".attention." not in key):
        return "mlp"
    return "other"


def _batches(n: int, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    order: list[Tensor] = []
    while sum(len(b) for b in order) < steps * batch_size:
        order.extend(torch.randperm(n, generator=g).split(batch_size))
    return [b for b in order if len(b) == batch_size][:steps] or order[:steps]


def finetune(encoder: nn.Module, head: Tensor, tokens: Tokens, y: np.ndarray, *, method: str = "full",
             steps: int = 60, lr: float = 1e-4, batch_size: int = 32, seed: int = 0,
             freeze_embeddings: bool = True, lora_rank: int = 8, lora_alpha: float = 16.0,
             ) -> tuple[TaskVector, list[float]]:
    """The task vector of fine-tuning the encoder on (tokens, y in {-1, +1}) with the hinge loss, and the loss per step.

    method "full": every parameter outside the embeddings (all of them with freeze_embeddings=False);
    "lora": a peft LoRA of rank lora_rank on LORA_TARGETS, read back as dW = scale B A. AdamW without
    weight decay, a fixed number of steps, batches drawn from seed; dropout off. The encoder is left
    with its original weights.
    """
    if method not in ("full", "lora"):
        raise ValueError(f"method={method!r}: expected 'full' or 'lora'")
    if len(y) != len(tokens):
        raise ValueError(f"{len(y)} labels for {len(tokens)} sentences: expected one label per sentence")
    base = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    grad = {n: q.requires_grad for n, q in encoder.named_parameters()}
    target = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    encoder.eval()  # no dropout: the run is a function of seed
    model = encoder
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules=list(LORA_TARGETS),
                            lora_dropout=0.0, bias="none")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # LoRA's A is drawn at random (B = 0)
            model = get_peft_model(encoder, config)
    else:
        for n, q in encoder.named_parameters():
            q.requires_grad_(not (freeze_embeddings and n.startswith("embeddings.")))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    try:
        for idx in _batches(len(tokens), batch_size, steps, seed):
            part = tokens.take(idx)
            z = _gap(model, head, part)
            loss = hinge(z, target[idx].to(z.device, z.dtype)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if method == "lora":
            tv = TaskVector.from_peft(model)
            model.unload()
        else:
            now = encoder.state_dict()
            tv = TaskVector({k: now[k].detach() - base[k] for k, q in encoder.named_parameters() if q.requires_grad})
    finally:
        for n, q in encoder.named_parameters():
            q.requires_grad_(grad.get(n, True))
        encoder.load_state_dict(base)
    return tv, losses
