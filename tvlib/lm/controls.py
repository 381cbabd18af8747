"""Controls for the unlearning experiment: where a task vector lives, and a random vector of the same size.

A causal LM's task vector has two parts: the token embeddings and the output layer (`lm_head`),
which store which words a text uses, and the transformer blocks, which every text shares. These
helpers split a vector into the two, measure the share of its squared norm in each, and draw a
random direction with the same per-tensor norms (the control that separates the effect of a
vector's direction from that of its size).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..vectors.task_vector import TaskVector

__all__ = ["EMBEDDING_NAMES", "is_embedding", "restrict", "split", "embedding_share", "norm_matched_random"]

#: module names of a causal LM's token embeddings and output layer (Phi, Llama, GPT-NeoX style)
EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


def is_embedding(key: str) -> bool:
    """True for a parameter of the token embeddings or of the output layer."""
    return any(part in EMBEDDING_NAMES for part in key.split("."))


def restrict(tv: TaskVector, keys: Iterable[str]) -> TaskVector:
    """The part of tv on the given parameter names (names tv does not have are ignored)."""
    wanted = set(keys)
    return TaskVector({k: tv.deltas[k] for k in tv.keys() if k in wanted})


def split(tv: TaskVector) -> tuple[TaskVector, TaskVector]:
    """(embeddings and output layer, transformer blocks): the two parts of a causal LM's task vector."""
    emb = [k for k in tv.keys() if is_embedding(k)]
    return restrict(tv, emb), restrict(tv, [k for k in tv.keys() if not is_embedding(k)])


def embedding_share(tv: TaskVector) -> float:
    """Fraction of ||tv||^2 in the token embeddings and the output layer."""
    emb, _ = split(tv)
    total = tv.norm() ** 2
    return (emb.norm() ** 2 / total) if total > 0 and len(emb) else 0.0


def norm_matched_random(tv: TaskVector, seed: int) -> TaskVector:
    """A Gaussian direction per tensor, scaled to that tensor's norm in tv (drawn on the CPU, seeded)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in tv.keys():
        d = tv.deltas[k]
        r = torch.randn(d.shape, generator=g, dtype=torch.float32)
        n = float(r.norm())
        out[k] = (r * (float(d.norm()) / n) if n > 0 else r).to(d.device)
    return TaskVector(out)
