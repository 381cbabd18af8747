"""Figures of the pre-trained-encoder chapter that the image chapter does not have: the corollaries' curves.

Figure 1 and Figure 2 of the chapter are tvlib.images.plots.plot_curves and plot_heat on this
chapter's arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .. import style

__all__ = ["plot_compressed"]


def plot_compressed(x: np.ndarray, acc: Mapping[str, Mapping[str, np.ndarray]], *, xlabel: str, log: bool,
                    reference: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> Figure:
    """Accuracy of T1 and T2 against a compression level, one panel per goal, full and LoRA as line styles.

    acc[goal][method]: (seeds, levels, 2); lines are seed means, bands +- one sd; reference[goal][method]:
    (seeds, 2), the uncompressed merge, drawn as thin horizontal lines.
    """
    goals = list(acc)
    fig, axes = style.subplots(len(goals), sharey=True, aspect=0.9)
    axes = np.atleast_1d(axes)
    marks = {"full": ("-", "o"), "lora": ("--", "s")}
    for ax, goal in zip(axes, goals):
        for method, values in acc[goal].items():
            ls, mk = marks[method]
            for k, task in enumerate(("T1", "T2")):
                mean = values[:, :, k].mean(0)
                sd = values[:, :, k].std(0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
                ax.plot(x, mean, ls=ls, marker=mk, ms=4, color=style.COLORS[task],
                        label=f"{style.LABELS[task]}, {'full' if method == 'full' else 'LoRA'}")
                ax.fill_between(x, mean - sd, mean + sd, color=style.COLORS[task], alpha=0.15, lw=0)
                if reference is not None:
                    ax.axhline(reference[goal][method][:, k].mean(), color=style.COLORS[task], lw=0.6, ls=ls)
        ax.axhline(0.5, color="0.6", lw=0.8)
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_title(goal)
    axes[0].set_ylabel("test accuracy")
    style.legend_outside(fig, ncols=4)
    return fig
