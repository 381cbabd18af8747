"""DARE keep-masks that are a function of the delta itself, for comparing tvlib with mergekit "with given
masks": both sides compute the same float32 delta, so both draw the same mask without sharing an RNG.
Plain torch only: imported by bench_merge.py and by _mergekit_driver.py inside mergekit's own venv."""

import torch


def hashed_keep(delta: torch.Tensor, density: "float | torch.Tensor") -> torch.Tensor:
    """Keep each entry with probability ~density (a number, or one per entry: DELLA's), decided by a hash
    of its position and its float32 bits."""
    flat = delta.detach().reshape(-1).to(torch.float32).contiguous()
    bits = flat.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    idx = torch.arange(flat.numel(), dtype=torch.int64)
    h = (bits * 2654435761 + idx * 40503 + 12345) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 2246822519) & 0xFFFFFFFF
    h = h ^ (h >> 13)
    if isinstance(density, torch.Tensor):
        density = density.detach().reshape(-1).to(torch.float64)
    return (h.to(torch.float64) < density * 2.0**32).reshape(delta.shape)
