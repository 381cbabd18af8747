"""Every chapter runs end to end through papermill at tiny sizes, with reduced grids, in seconds.

A parameter change that breaks a chapter (a grid that no longer contains what a later cell looks up,
a renamed function) fails here, naming the chapter and the cell, before nbval or the site build.
The overrides shrink sizes and grids; they never change what a chapter computes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# chapter -> papermill parameters for a run of a few seconds
SMOKE: dict[str, dict] = {
    "setting": dict(m=16, steps=20),
    "finetuning": dict(m=16, steps=20, runs=2, n_eval=200, runs_per_lr=2, delta_stars=[0.3, 0.4],
                       lrs=[0.5, 1.0], v_stds=[0.01, 0.3]),
    "addition": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "negation": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "ood": dict(m=16, steps=20, seeds=[0, 1], n_eval=40, lam_step=0.5),
    "lowrank": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "sparse": dict(m=32, steps=20, seeds=[0, 1], n_eval=40),
    "images": dict(pre_epochs=1, ft_epochs=1, seeds=[0, 1], lam_min=-0.4, lam_max=1.0, ood_min=-0.4,
                   ood_max=0.4, dim=16, depth=1, heads=2, mlp_dim=32),
    "unlearning": dict(n_sentences=40, base_epochs=1.0, epochs=1.0, lora_epochs=1.0, n_prompts=4,
                       lams=[0.0, -1.0], n_alpha_blocks=4),
    "scale": dict(delta_hashes=[0.05], seeds=[0]),
}


def _chapters() -> list[str]:
    from test_params import CHAPTERS  # the chapters with a parameters cell

    return CHAPTERS


@pytest.mark.parametrize("chapter", _chapters())
def test_chapter_runs_at_tiny_sizes(chapter, tmp_path):
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    assert chapter in SMOKE, f"book/{chapter}.md has no tiny parameters in tests/test_smoke.py SMOKE"
    nb = jupytext.read(ROOT / "book" / f"{chapter}.md")
    params = dict(SMOKE[chapter])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    papermill.execute_notebook(nb, str(tmp_path / f"{chapter}.ipynb"), parameters=params, cwd=str(ROOT / "book"),
                               kernel_name="python3", progress_bar=False, log_output=False)
