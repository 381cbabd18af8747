"""Figures of the low-rank and sparse chapters (Corollaries 1 and 2); each returns a Figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..figures import band
from .plots import _TASK_COLORS, _seed_matrix

__all__ = ["plot_rank_errors", "plot_sparsity_curves", "plot_lambda_compare"]


def plot_rank_errors(ranks: Any, rel_W: np.ndarray, rel_V: np.ndarray) -> Figure:
    """Relative truncation errors ||D - D_r||_F / ||D||_F against r for ΔW and ΔV (rows: runs), mean and min-max band."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    r = np.asarray(ranks)
    band(ax, r, rel_W, label="ΔW", marker="o", ms=3)
    band(ax, r, rel_V, label="ΔV", marker="s", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("rank r")
    ax.set_ylabel("‖Δ − Δ_r‖_F / ‖Δ‖_F")
    ax.set_title("Best rank-r approximation error (runs: mean and min–max)")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_sparsity_curves(frame: Any, *, tasks: list[str], title: str, methods: list[str] | None = None,
                         reference: dict[str, float] | None = None) -> Figure:
    """Accuracy (top) and hinge error (bottom) against the fraction of entries kept, one line per method, one column per task.

    `frame` has columns method, level, kept (fraction of each task vector's entries kept), seed, task, error,
    accuracy (tvlib.merging.sparsity_sweep); x is the seed-mean of kept per level;
    lines are seed means with min-max bands; `reference` maps task to a dashed level (e.g. the dense merge's error).
    """
    methods = methods or list(dict.fromkeys(frame["method"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.4 * len(tasks) + 1, 6), sharex=True, squeeze=False)
    for j, task in enumerate(tasks):
        for i, metric in enumerate(("accuracy", "error")):
            ax = axes[i, j]
            for k, method in enumerate(methods):
                f = frame[(frame["method"] == method) & (frame["task"] == task)]
                table = f.pivot_table(index="seed", columns="level", values=metric)
                kept = f.groupby("level")["kept"].mean().reindex(table.columns).to_numpy()
                band(ax, kept, table.to_numpy(), label=method, color=f"C{k}", marker="o", ms=3)
            if reference and metric == "error" and task in reference:
                ax.axhline(reference[task], color="k", ls="--", lw=1, label="dense merge")
            ax.set_xscale("log")
            if metric == "accuracy":
                ax.axhline(0.5, color="0.6", ls=":", lw=1)
                ax.set_title(task)
                ax.set_ylim(-0.03, 1.03)
            else:
                ax.set_yscale("symlog", linthresh=0.05)
                ax.set_xlabel("fraction of each task vector's entries kept")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("hinge error (symlog)")
    axes[1, -1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lambda_compare(curves: dict[str, Any], alphas: list[float], *, title: str = "") -> Figure:
    """Hinge error (top) and accuracy (bottom) on T1 and T2 against lam, seed means, for several versions of the
    task vectors (`curves` maps a label to a sweep's curves; one line style each), one column per alpha."""
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, len(alphas), figsize=(3.2 * len(alphas) + 1, 5.6), sharex=True, sharey="row", squeeze=False)
    for j, alpha in enumerate(alphas):
        for i, metric in enumerate(("error", "accuracy")):
            ax = axes[i, j]
            for k, (label, c) in enumerate(curves.items()):
                for task, color in _TASK_COLORS.items():
                    lams, runs = _seed_matrix(c, alpha, task, metric)
                    ax.plot(lams, runs.mean(0), styles[k % len(styles)], color=color, lw=1.6, label=f"{task}, {label}")
            ax.axvline(0, color="0.6", lw=0.5)
            if metric == "error":
                ax.set_yscale("symlog", linthresh=0.05)
                ax.set_title(f"α = {alpha:+.1f}")
            else:
                ax.axhline(0.5, color="0.6", ls=":", lw=1)
                ax.set_xlabel("λ")
    axes[0, 0].set_ylabel("hinge error (symlog)")
    axes[1, 0].set_ylabel("accuracy")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "Ψ⁽⁰⁾ + ΔΨ_T1 + λ ΔΨ_T2 (seed means)")
    fig.tight_layout()
    return fig
