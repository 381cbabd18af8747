"""The one device rule and dtype names of tvlib: every entry point that takes a device or dtype uses these."""

from __future__ import annotations

import os

import torch

__all__ = ["DTYPES", "resolve_device", "resolve_dtype"]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> this process's GPU if one is available (its LOCAL_RANK under torchrun), else the CPU.

    "cpu", "cuda" and "cuda:N" (or a torch.device) are taken as they are; asking for a GPU that
    is not there is an error, not a silent fall-back to the CPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but no CUDA GPU is available: expected 'cpu' or 'auto'")
        index = int(os.environ.get("LOCAL_RANK", "0")) if device == "cuda" else device.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: expected cuda:N with N < {torch.cuda.device_count()}")
        return torch.device("cuda", int(index))
    raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A floating dtype from its name ("float32", "bfloat16", ...) or a torch.dtype; anything else is an error."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype={dtype}: expected one of {sorted(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]
