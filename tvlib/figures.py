"""Figure helpers shared by several experiments: bands over seeds, out-of-domain heatmaps, live explorers.

The book's presentation layer: imports matplotlib, never the experiments."""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["live_explorer", "band", "plot_ood_grid"]


def live_explorer(plot_fn: Callable[..., Figure], **controls: Any) -> None:
    """Show plot_fn(**defaults) as an ordinary figure, then the controls that redraw it in place.

    `controls` are ipywidgets (e.g. FloatSlider) whose current values are passed to `plot_fn` by
    name. The static site and headless runs show the figure at the controls' initial values; in a
    live kernel moving a control replaces that figure.
    """
    import ipywidgets as widgets
    from IPython.display import display

    def draw() -> Figure:
        fig = plot_fn(**{name: c.value for name, c in controls.items()})
        plt.close(fig)  # displayed through the handle only, never twice
        return fig

    handle = display(draw(), display_id=True)

    def update(_: Any) -> None:
        handle.update(draw())

    for c in controls.values():
        c.observe(update, names="value")
    display(widgets.HBox(list(controls.values())))


def band(ax: plt.Axes, x: np.ndarray, runs: np.ndarray, label: str | None = None, **kw: Any) -> None:
    """Mean over the first axis of `runs` as a line, with a min-max band."""
    runs = np.asarray(runs)
    (line,) = ax.plot(x, runs.mean(0), label=label, **kw)
    ax.fill_between(x, runs.min(0), runs.max(0), color=line.get_color(), alpha=0.2, lw=0)


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh around sorted centres x."""
    x = np.asarray(x, dtype=float)
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def plot_ood_grid(
    lams1: Any,
    lams2: Any,
    accuracy: np.ndarray,
    error: np.ndarray,
    *,
    region: np.ndarray | None = None,
    level: float | None = None,
    best: tuple[float, float] | None = None,
    best_label: str = "best λ",
    title: str = "",
) -> Figure:
    """Accuracy and hinge error on T' over the (lam1, lam2) grid, arrays (L1, L2), with condition (7) hatched
    (`region`, boolean), the contour error = `level` in white and a `best` point marked."""
    l1, l2 = np.asarray(lams1, dtype=float), np.asarray(lams2, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), sharey=True)
    panels = ((accuracy, "accuracy on T′", dict(cmap="RdYlGn", vmin=0, vmax=1)),
              (np.clip(error, 1e-3, None), "hinge error on T′ (log colour)",
               dict(cmap="magma_r", norm=plt.matplotlib.colors.LogNorm(vmin=1e-2, vmax=3))))
    for ax, (z, name, kw) in zip(axes, panels):
        im = ax.pcolormesh(_edges(l1), _edges(l2), np.asarray(z).T, shading="flat", **kw)
        fig.colorbar(im, ax=ax, fraction=0.046)
        if level is not None and (np.asarray(error) <= level).any():
            ax.contour(l1, l2, np.asarray(error).T, levels=[level], colors="w", linewidths=2)
            ax.plot([], [], color="w", lw=2, label=f"error = {level:.3f} (learned inside)")
        if region is not None and np.any(region):
            ax.contourf(l1, l2, np.asarray(region, dtype=float).T, levels=[0.5, 1.5], colors="none", hatches=["//"])
            ax.contour(l1, l2, np.asarray(region, dtype=float).T, levels=[0.5], colors="k", linewidths=1.5, linestyles="--")
            ax.plot([], [], "k--", lw=1.5, label="condition (7) (hatched)")
        if best is not None:
            ax.plot([best[0]], [best[1]], "*", color="C0", mec="k", ms=14, label=f"{best_label} = ({best[0]:.1f}, {best[1]:.1f})")
        ax.axhline(0, color="0.5", lw=0.5)
        ax.axvline(0, color="0.5", lw=0.5)
        ax.set_xlabel("λ₁ (weight of ΔΨ_T1)")
        ax.set_title(name)
    axes[0].set_ylabel("λ₂ (weight of ΔΨ_T2)")
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        leg = axes[1].legend(handles, labels, fontsize=8, loc="lower left", facecolor="0.85", framealpha=0.9)
        leg.get_frame().set_edgecolor("0.3")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
