"""Task vectors of the encoder as real checkpoints: written with save_pretrained, merged by the `tvlib merge`
command from a YAML config, loaded back with transformers' from_pretrained."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from ..vectors.task_vector import TaskVector

__all__ = ["save_model", "merge_config", "tvlib_merge"]


def save_model(encoder: nn.Module, state_dict: Mapping[str, Tensor], folder: str | os.PathLike) -> Path:
    """encoder's config with the weights state_dict, as a safetensors checkpoint folder."""
    folder = Path(folder)
    encoder.save_pretrained(folder, state_dict={k: v.contiguous() for k, v in state_dict.items()})
    return folder


def merge_config(base: str | os.PathLike, models: Sequence[str | os.PathLike], weights: Sequence[float],
                 method: str = "task_arithmetic", **parameters: object) -> str:
    """The YAML of a `tvlib merge` job: base + sum_i weights_i (models_i - base), by `method`."""
    import yaml

    if len(models) != len(weights):
        raise ValueError(f"{len(models)} models and {len(weights)} weights: expected one weight per model")
    job = {"merge_method": method, "base_model": str(base),
           "models": [{"model": str(m), "parameters": {"weight": float(w)}} for m, w in zip(models, weights)],
           "dtype": "float32"}
    if parameters:
        job["parameters"] = dict(parameters)
    return yaml.safe_dump(job, sort_keys=False)


def tvlib_merge(config: str, out: str | os.PathLike, workdir: str | os.PathLike) -> str:
    """Run `tvlib merge` on the config text (written to workdir/merge.yaml) into out; its standard output."""
    cfg = Path(workdir) / "merge.yaml"
    cfg.write_text(config)
    exe = shutil.which("tvlib", path=str(Path(sys.executable).parent)) or shutil.which("tvlib")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from tvlib.vectors.cli import main; sys.exit(main())"]
    done = subprocess.run([*cmd, "merge", str(cfg), str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tvlib merge failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def vector_of(run_base: Mapping[str, Tensor], tv: TaskVector) -> dict[str, Tensor]:
    """Psi0 + tv as a full state dict (the frozen tensors are the base's)."""
    return tv.apply_to(dict(run_base), strict=False)
