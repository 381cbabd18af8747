"""The `tvlib merge` config file: mergekit's YAML layout, read into a Recipe and the checkpoints to merge.

For example::

    merge_method: ties            # task_arithmetic | ties | dare_linear (dare) | dare_ties | magnitude | rows | low_rank
    base_model: ./base            # a directory, a .safetensors file or a Hugging Face id
    models:
      - model: ./base             # the base may be listed too, without parameters (mergekit's usual layout)
      - model: ./math
        parameters: {weight: 0.7, density: 0.2}
      - model: ./code
        parameters:
          weight: [{filter: mlp, value: 0.3}, {value: 0.5}]   # per tensor: first filter in the key wins
          density: [0.1, 0.3]                                   # a gradient over the layers
    parameters: {lambda: 1.0}
    dtype: bfloat16               # output dtype of float tensors (tvlib always computes in float32)
    include: ["*"]                # glob patterns of the tensors merged; others keep the base's value
    exclude: ["*norm*"]

A config in this layout gives mergekit's model: mergekit's defaults for its methods (each method module's `mergekit` in tvlib.vectors.merge_methods:
TIES normalised by the signed weights of the agreeing models, top-k per tensor with k = max(1,
floor(density n)), + elected where the signs cancel exactly; DARE rescaled to each tensor's L1 norm),
mergekit's booleans (`normalize: true`, `rescale: true`), a `weight` required for every model, a
`density` of 1 when none is given, and mergekit's parameter precedence: a model's own value, then the
top-level `parameters`, then the default, filter lists falling through to the next level when no
filter matches. tvlib's own semantics (the paper's) are explicit keys: `normalize: count`,
`scope: global`, `rounding: nearest`, `rescale: entry` (DARE), `zero_sum: drop`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import resolve_dtype
from .merge_methods import get as get_method
from .recipe import ALIASES, MERGE_METHODS, Recipe

__all__ = ["MergeJob", "load_config", "parse_config"]

TOP_KEYS = {"slices", "merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "include", "exclude",
            "tokenizer_source", "shard_size", "allow_nonfinite", "strict", "name"}
UNSUPPORTED = {"modules": "per-module merges",
               "tokenizer": "tokenizer surgery", "chat_template": "chat templates"}
METHOD_KEYS = {"lambda", "normalize", "scope", "rescale", "rounding", "rank", "seed", "int8_mask", "weight", "density",
               "zero_sum", "gamma", "epsilon", "t", "filter_wise"}
MODEL_KEYS = {"weight", "density", "gamma", "epsilon"}


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
    layers: int | None = None  # a `slices:` config: the layer count its one slice covers (checked against the base)


def _param(value: Any, where: str) -> Any:
    """A number, a gradient (tuple of numbers) or a tuple of (filter, value) pairs from a config value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return tuple(value)  # a gradient over the layers
        out = []
        for v in value:
            if not isinstance(v, dict) or "value" not in v or set(v) - {"filter", "value"}:
                raise ValueError(f"{where}: {v!r}: expected {{filter: <substring of tensor names>, value: <number "
                                 "or list of numbers>}}")
            inner = v["value"]
            out.append((v.get("filter"), tuple(inner) if isinstance(inner, list) else inner))
        return tuple(out)
    raise ValueError(f"{where}: {value!r}: expected a number, a list of numbers (a gradient) or a list of "
                     "{filter, value} entries")


def _whole_slice(slices: Any) -> list[dict]:
    """mergekit's `slices:` layout for a whole-model merge (one slice whose sources all cover layers 0..N) as
    models entries; layer slices that cut or stack layers (frankenmerges) are refused."""
    msg = ("slices: tvlib reads one slice whose sources all take the same whole layer range [0, N] (a whole-model "
           "merge in mergekit's slices layout); layer slices that cut or stack layers (frankenmerges) are not supported")
    if not (isinstance(slices, list) and len(slices) == 1 and isinstance(slices[0], dict)
            and set(slices[0]) <= {"sources"} and isinstance(slices[0].get("sources"), list) and slices[0]["sources"]):
        raise ValueError(msg)
    sources = slices[0]["sources"]
    ranges = {tuple(s.get("layer_range") or ()) if isinstance(s, dict) else None for s in sources}
    if len(ranges) != 1 or None in ranges or len(next(iter(ranges))) != 2 or next(iter(ranges))[0] != 0:
        raise ValueError(msg)
    end = next(iter(ranges))[1]
    return [{"model": s["model"], **({"parameters": s["parameters"]} if s.get("parameters") else {}), "_layers": end}
            for s in sources]


def _entries(value: Any) -> list:
    """A parameter as (filter, value) entries."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return list(value)
    return [(None, value)]


def _resolve(own: Any, top: Any, default: Any) -> Any:
    """mergekit's precedence: the model's value, then the top-level one, then the default; a filter list
    with no match falls through to the next. None when there is nothing at all."""
    entries = []
    for level in (own, top, default):
        if level is None:
            continue
        entries += _entries(level)
        if entries[-1][0] in (None, "*"):  # a catch-all: nothing below is reached
            break
    if not entries:
        return None
    return entries[0][1] if len(entries) == 1 and entries[0][0] in (None, "*") else tuple(entries)


def _path(value: Any, root: Path, where: str, base: str | None = None) -> str:
    """A model reference as a path: a directory, file or hub id; a LoRA adapter as "MODEL+ADAPTER" (mergekit's
    `model+lora` string or {model, lora} mapping, or an adapter directory alone, applied to `base`)."""
    if isinstance(value, dict) and "model" in value:  # mergekit's {model: ..., lora: ...} form
        lora = value.get("lora")
        model = _path(value["model"], root, where)
        return model if not lora else f"{model}+{_path(lora, root, where)}"
    if not isinstance(value, str):
        raise TypeError(f"{where}: {value!r}: expected a path or a Hugging Face id")
    p = Path(value).expanduser()
    if not (p.exists() or (root / p).exists()) and "+" in value:
        model, _, lora = value.rpartition("+")
        return f"{_path(model, root, where)}+{_path(lora, root, where)}"
    path = str(p if p.is_absolute() or not (root / p).exists() else root / p)
    if base is not None and (Path(path) / "adapter_config.json").is_file():
        return f"{base}+{path}"  # an adapter alone: on the base it was trained from
    return path


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
    name = ALIASES.get(method, method)
    impl = get_method(name)
    if "base_model" not in cfg and impl.base == "required":
        raise ValueError(f"base_model is missing: {name} needs a base model")
    layers = None
    if "slices" in cfg:
        if cfg.get("models"):
            raise ValueError("slices and models: expected one of them (mergekit's layout)")
        cfg = {**cfg, "models": _whole_slice(cfg["slices"])}
        layers = cfg["models"][0].pop("_layers")
        for m in cfg["models"][1:]:
            m.pop("_layers")
    models = cfg.get("models") or []
    if not isinstance(models, list) or not models:
        raise ValueError("models: expected a list of {model: <path>, parameters: {...}} entries")
    top = dict(cfg.get("parameters") or {})
    bad = sorted(set(top) - METHOD_KEYS)
    if bad:
        raise ValueError(f"parameters {bad}: expected some of {sorted(METHOD_KEYS)}")
    base = _path(cfg["base_model"], root, "base_model") if "base_model" in cfg else None
    base_is_input = impl.base == "none"  # linear: a base_model listed under models is one more input
    needs_weight = impl.whole is False or name == "linear"
    top_weight = _param(top["weight"], "parameters.weight") if "weight" in top else None
    top_density = _param(top["density"], "parameters.density") if "density" in top else None
    own_options = {o: (_param(top[o], f"parameters.{o}") if o in top else None) for o in impl.model_options}
    paths, weights, densities = [], [], []
    options: dict = {o: [] for o in impl.model_options}
    for i, m in enumerate(models):
        if not isinstance(m, dict) or "model" not in m:
            raise ValueError(f"models[{i}]: {m!r}: expected {{model: <path>, parameters: {{weight, density}}}}")
        params = dict(m.get("parameters") or {})
        extra = sorted(set(params) - MODEL_KEYS)
        if extra:
            raise ValueError(f"models[{i}].parameters {extra}: expected some of {sorted(MODEL_KEYS)}")
        path = _path(m["model"], root, f"models[{i}].model", base)
        if base is not None and not base_is_input and (path == base or Path(path).resolve() == Path(base).resolve()):
            if params:
                notes.append(f"models[{i}] is the base model: its parameters {sorted(params)} are not used "
                             "(as in mergekit)")
            continue
        paths.append(path)
        weight = _resolve(_param(params["weight"], f"models[{i}].weight") if "weight" in params else None,
                          top_weight, None if needs_weight else 1.0)
        if weight is None:
            raise ValueError(f"models[{i}] ({m['model']}): no weight: mergekit requires one for every model "
                             "(parameters: {weight: 1.0} on the model, or in the top-level parameters)")
        weights.append(weight)
        densities.append(_resolve(_param(params["density"], f"models[{i}].density") if "density" in params else None,
                                  top_density, 1.0))
        for o, default in impl.model_options.items():
            options[o].append(_resolve(_param(params[o], f"models[{i}].{o}") if o in params else None,
                                       own_options[o], default))
    if not paths:
        raise ValueError("models: only the base model is listed: expected at least one model to merge into it")
    if name == "slerp" and len(paths) != 1:
        raise ValueError(f"slerp interpolates between the base and one other model: got {len(paths)} other models")
    if name == "model_stock" and len(paths) < 2:
        raise ValueError(f"model_stock needs at least 2 fine-tuned models besides the base: got {len(paths)}")
    if base is None:  # linear without a base: the first model gives the layout, config and tokenizer
        base = paths[0]
    for o in impl.shared_options:
        if o in top:
            options[o] = top[o] if isinstance(top[o], bool) else _param(top[o], f"parameters.{o}")
    defaults = dict(impl.mergekit or {})
    normalize = top.get("normalize", defaults.get("normalize"))
    if isinstance(normalize, bool):
        normalize = ("weights" if name == "linear" else "signed_weights") if normalize else "none"
    rescale = top.get("rescale", defaults.get("rescale"))
    if isinstance(rescale, bool):
        rescale = "l1" if rescale else "none"
    if top.get("int8_mask"):
        notes.append("int8_mask ignored: tvlib's masks are boolean already")
    recipe = Recipe(
        name, weights, densities if impl.densities else None, options=options,
        lam=_param(top.get("lambda", 1.0), "lambda"), normalize=normalize,
        scope=top.get("scope", defaults.get("scope", "global")), rescale=rescale,
        rounding=top.get("rounding", defaults.get("rounding", "nearest")), rank=top.get("rank"),
        seed=int(top.get("seed", 0)), zero_sum=top.get("zero_sum", defaults.get("zero_sum", "drop")),
        include=tuple(cfg.get("include") or ("*",)), exclude=tuple(cfg.get("exclude") or ()), layers=layers,
    )
    if cfg.get("tokenizer_source") not in (None, "base"):
        raise ValueError(f"tokenizer_source={cfg['tokenizer_source']!r}: tvlib copies the base's tokenizer ('base')")
    dtype = cfg.get("out_dtype") or cfg.get("dtype")
    return MergeJob(base, paths, recipe, resolve_dtype(dtype) if dtype else None, cfg.get("shard_size", "2GB"),
                    bool(cfg.get("strict", True)), bool(cfg.get("allow_nonfinite", False)), text, notes, layers)


def load_config(path: str | os.PathLike) -> MergeJob:
    """Read a merge config file (YAML)."""
    import yaml

    text = Path(path).read_text()
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    return parse_config(cfg, root=Path(path).resolve().parent, text=text)
