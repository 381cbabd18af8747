"""The `tvlib merge` config file: mergekit's YAML layout, read into a Recipe and the checkpoints to merge.

For example::

    merge_method: ties            # task_arithmetic | ties | dare | dare_ties | magnitude | rows | low_rank
    base_model: ./base            # a directory, a .safetensors file or a Hugging Face id
    models:
      - model: ./math
        parameters: {weight: 0.7, density: 0.2}
      - model: ./code
        parameters:
          weight: [{filter: mlp, value: 0.3}, {value: 0.5}]   # per tensor: first filter in the key wins
    parameters: {lambda: 1.0, normalize: count, scope: global}
    dtype: bfloat16               # output dtype of float tensors (tvlib always computes in float32)
    include: ["*"]                # glob patterns of the tensors merged; others keep the base's value
    exclude: ["*norm*"]

Model parameters fall back to the top-level `parameters`, as in mergekit. mergekit's boolean options
keep their mergekit meaning: `normalize: true` is "weights", `rescale: true` (DARE) is "l1".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import resolve_dtype
from .recipe import ALIASES, MERGE_METHODS, Recipe

__all__ = ["MergeJob", "load_config", "parse_config"]

TOP_KEYS = {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "include", "exclude",
            "tokenizer_source", "shard_size", "allow_nonfinite", "strict", "name"}
UNSUPPORTED = {"slices": "layer slices (frankenmerges)", "modules": "per-module merges",
               "tokenizer": "tokenizer surgery", "chat_template": "chat templates"}
METHOD_KEYS = {"lambda", "normalize", "scope", "rescale", "rounding", "rank", "seed", "int8_mask", "weight", "density"}


@dataclass
class MergeJob:
    """A parsed config: the checkpoints, the recipe and the output options."""

    base: str
    models: list[str]
    recipe: Recipe
    dtype: torch.dtype | None = None
    shard_size: str | int = "2GB"
    strict: bool = True
    allow_nonfinite: bool = False
    text: str = ""
    notes: list[str] = field(default_factory=list)


def _param(value: Any, where: str) -> Any:
    """A scalar or a tuple of (filter, value) pairs from a config value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{where}: {value} is a gradient over layers (mergekit); tvlib takes a number or a "
                             "list of {filter, value} entries")
        out = []
        for v in value:
            if not isinstance(v, dict) or "value" not in v or set(v) - {"filter", "value"}:
                raise ValueError(f"{where}: {v!r}: expected {{filter: <substring of tensor names>, value: <number>}}")
            out.append((v.get("filter"), v["value"]))
        return tuple(out)
    raise ValueError(f"{where}: {value!r}: expected a number or a list of {{filter, value}} entries")


def _path(value: Any, root: Path, where: str) -> str:
    if isinstance(value, dict) and "model" in value:  # mergekit's {model: ..., lora: ...} form
        if value.get("lora"):
            raise ValueError(f"{where}: a LoRA on top of a model is not read by tvlib merge: merge it first")
        value = value["model"]
    if not isinstance(value, str):
        raise TypeError(f"{where}: {value!r}: expected a path or a Hugging Face id")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() or not (root / p).exists() else root / p)


def parse_config(cfg: dict, *, root: str | os.PathLike = ".", text: str = "") -> MergeJob:
    """A MergeJob from a config dict; relative paths are taken from `root` (the config file's folder)."""
    if not isinstance(cfg, dict):
        raise TypeError(f"the config is a {type(cfg).__name__}: expected a mapping (merge_method, base_model, models, ...)")
    for k, what in UNSUPPORTED.items():
        if k in cfg:
            raise ValueError(f"{k}: {what} are mergekit features that tvlib merge does not have")
    unknown = sorted(set(cfg) - TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}: expected some of {sorted(TOP_KEYS)}")
    root, notes = Path(root), []
    method = cfg.get("merge_method")
    if ALIASES.get(method, method) not in MERGE_METHODS:
        raise ValueError(f"merge_method={method!r}: expected one of {list(MERGE_METHODS)}")
    if "base_model" not in cfg:
        raise ValueError("base_model is missing: task vectors are differences from a base model")
    models = cfg.get("models") or []
    if not isinstance(models, list) or not models:
        raise ValueError("models: expected a list of {model: <path>, parameters: {...}} entries")
    top = dict(cfg.get("parameters") or {})
    bad = sorted(set(top) - METHOD_KEYS)
    if bad:
        raise ValueError(f"parameters {bad}: expected some of {sorted(METHOD_KEYS)}")
    base = _path(cfg["base_model"], root, "base_model")
    paths, weights, densities = [], [], []
    for i, m in enumerate(models):
        if not isinstance(m, dict) or "model" not in m:
            raise ValueError(f"models[{i}]: {m!r}: expected {{model: <path>, parameters: {{weight, density}}}}")
        params = dict(m.get("parameters") or {})
        extra = sorted(set(params) - {"weight", "density"})
        if extra:
            raise ValueError(f"models[{i}].parameters {extra}: expected weight and density")
        paths.append(_path(m["model"], root, f"models[{i}].model"))
        if _path(m["model"], root, "") == base:
            raise ValueError(f"models[{i}] is the base model: list only the fine-tuned models")
        weights.append(_param(params.get("weight", top.get("weight", 1.0)), f"models[{i}].weight"))
        densities.append(_param(params.get("density", top.get("density", 1.0)), f"models[{i}].density"))
    normalize = top.get("normalize")
    if isinstance(normalize, bool):
        notes.append(f"normalize: {str(normalize).lower()} read as mergekit's "
                     f"{'weights' if normalize else 'none'}")
        normalize = "weights" if normalize else "none"
    rescale = top.get("rescale", "entry")
    if isinstance(rescale, bool):
        notes.append(f"rescale: {str(rescale).lower()} read as mergekit's {'l1' if rescale else 'none'}")
        rescale = "l1" if rescale else "none"
    if top.get("int8_mask"):
        notes.append("int8_mask ignored: tvlib's masks are boolean already")
    name = ALIASES.get(method, method)
    recipe = Recipe(
        name, weights, densities if name in ("magnitude", "ties", "dare", "dare_ties", "rows") else None,
        lam=_param(top.get("lambda", 1.0), "lambda"), normalize=normalize, scope=top.get("scope", "global"),
        rescale=rescale, rounding=top.get("rounding", "nearest"), rank=top.get("rank"), seed=int(top.get("seed", 0)),
        include=tuple(cfg.get("include") or ("*",)), exclude=tuple(cfg.get("exclude") or ()),
    )
    if cfg.get("tokenizer_source") not in (None, "base"):
        raise ValueError(f"tokenizer_source={cfg['tokenizer_source']!r}: tvlib copies the base's tokenizer ('base')")
    dtype = cfg.get("out_dtype") or cfg.get("dtype")
    return MergeJob(base, paths, recipe, resolve_dtype(dtype) if dtype else None, cfg.get("shard_size", "2GB"),
                    bool(cfg.get("strict", True)), bool(cfg.get("allow_nonfinite", False)), text, notes)


def load_config(path: str | os.PathLike) -> MergeJob:
    """Read a merge config file (YAML)."""
    import yaml

    text = Path(path).read_text()
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    return parse_config(cfg, root=Path(path).resolve().parent, text=text)
