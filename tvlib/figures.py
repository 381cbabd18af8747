"""Figure helpers shared by several experiments: bands over seeds, out-of-domain heatmaps, live explorers.

The book's presentation layer: imports matplotlib, never the experiments."""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["live_explorer", "band", "plot_ood_grid", "plot_ood_edges", "ood_explorer"]


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


def _shade_region(ax: plt.Axes, l1: np.ndarray, l2: np.ndarray, region: np.ndarray, label: str) -> None:
    """Hatch the cells of a boolean (L1, L2) region and outline it, in the style's theory colour."""
    import matplotlib as mpl

    from . import style

    z = np.asarray(region, dtype=float).T
    with mpl.rc_context({"hatch.color": style.COLORS["theory"], "hatch.linewidth": 0.8}):
        ax.contourf(l1, l2, z, levels=[0.5, 1.5], colors="none", hatches=["////"])
    ax.contour(l1, l2, z, levels=[0.5], colors=style.COLORS["theory"], linewidths=1.5, linestyles="--")
    ax.plot([], [], color=style.COLORS["theory"], ls="--", lw=1.5, label=label)


def plot_ood_grid(
    lams1: Any,
    lams2: Any,
    accuracy: np.ndarray,
    error: np.ndarray,
    *,
    region: np.ndarray | None = None,
    level: float | None = None,
    best: tuple[float, float] | None = None,
    best_label: str = r"best $\lambda$",
    title: str = "",
    region_label: str = "target region",
) -> Figure:
    """Accuracy and hinge error on T' over the (lam1, lam2) grid, arrays (L1, L2), in the book's style.

    Accuracy on a diverging map centred on chance (0.5), the hinge error on a log viridis map;
    `region` (boolean) hatched and outlined as condition (7), the contour error = `level` in white
    (the target is learned inside it) and a `best` point marked; one legend below the panels.
    """
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    from . import style

    l1, l2 = np.asarray(lams1, dtype=float), np.asarray(lams2, dtype=float)
    err = np.asarray(error, dtype=float)
    with style.context():
        fig, axes = style.subplots(ncols=2, aspect=0.95, sharey=True)
        panels = ((accuracy, r"accuracy on $T'$", dict(cmap=style.DIVERGING, norm=TwoSlopeNorm(0.5, 0.0, 1.0))),
                  (np.clip(err, 1e-2, 3.0), r"hinge error on $T'$", dict(cmap=style.SEQUENTIAL, norm=LogNorm(1e-2, 3.0))))
        for ax, (z, name, kw) in zip(axes, panels):
            im = ax.pcolormesh(_edges(l1), _edges(l2), np.asarray(z).T, shading="flat", rasterized=True, **kw)
            fig.colorbar(im, ax=ax, shrink=0.9)
            if level is not None and (err <= level).any():
                ax.contour(l1, l2, err.T, levels=[level], colors="w", linewidths=1.8)
                ax.plot([], [], color="0.35", lw=1.8, label=f"learned: error $\\leq$ {level:.3f} (white)")
            if region is not None and np.any(region):
                _shade_region(ax, l1, l2, region, region_label)
            if best is not None:
                ax.plot([best[0]], [best[1]], "*", color=style.COLORS["merged"], mec="k", ms=11,
                        label=f"{best_label} = ({best[0]:.1f}, {best[1]:.1f})")
            ax.axhline(0, color="0.5", lw=0.5)
            ax.axvline(0, color="0.5", lw=0.5)
            ax.set_xlabel(style.LABELS["lam1"] + r" (weight of $\Delta\Psi_{T_1}$)")
            ax.set_title(name)
        axes[0].set_ylabel(style.LABELS["lam2"] + r" (weight of $\Delta\Psi_{T_2}$)")
        if title:
            fig.suptitle(title)
        if any(ax.get_legend_handles_labels()[0] for ax in axes):
            style.legend_outside(fig)
    return fig


def plot_ood_edges(
    lams2: Any,
    edges: dict[str, np.ndarray],
    lines: dict[str, dict[str, float]],
    *,
    caps: dict[str, float] | None = None,
    lam1_range: tuple[float, float] | None = None,
) -> Figure:
    """Measured lower edges of the learned region against condition (7)'s two lines, one panel per target.

    `edges` maps a target's label to its measured lower edge lam1(lam2) (nan where none), `lines` to
    tvlib.toy.theory.ood_edge_lines of that target, `caps` to c / beta (a horizontal line). lam2 on the
    x-axis, lam1 on the y-axis; the region of (7) lies above both lines (shaded).
    """
    from . import style

    l2 = np.asarray(lams2, dtype=float)
    names = list(edges)
    ncols = 2 if len(names) in (2, 4) else min(3, len(names))
    nrows = -(-len(names) // ncols)
    with style.context():
        fig, axes = style.subplots(ncols=ncols, nrows=nrows, aspect=0.85, sharex=True, sharey=True, squeeze=False)
        for ax, name in zip(axes.ravel(), names):
            e = lines[name]
            vote = e["vote_a"] + e["vote_s"] * l2
            att = e["attention_a"] + e["attention_s"] * l2
            top = lam1_range[1] if lam1_range else float(np.nanmax([vote, att])) + 2
            ax.fill_between(l2, np.maximum(vote, att), top, color=style.COLORS["theory"], alpha=0.15, lw=0,
                            label="both sums $\\geq 1+c$")
            ax.plot(l2, vote, color=style.COLORS["theory"], ls="--", label="vote line")
            ax.plot(l2, att, color=style.COLORS["control"], ls=":", lw=2, label="attention line")
            ax.plot(l2, edges[name], "o-", color=style.COLORS["Tprime"], ms=3, label="measured edge")
            if caps and name in caps and np.isfinite(caps[name]):
                ax.axhline(caps[name], color=style.COLORS["base"], lw=1, ls="-.", label=r"cap $c/\hat\beta$")
            ax.set_title(name)
            if lam1_range:
                ax.set_ylim(*lam1_range)
        for ax in axes[-1]:
            ax.set_xlabel(style.LABELS["lam2"])
        for ax in axes[:, 0]:
            ax.set_ylabel(style.LABELS["lam1"])
        for ax in axes.ravel()[len(names):]:
            ax.set_visible(False)
        style.legend_outside(fig, ncols=3)
    return fig


def ood_explorer(
    lams1: Any,
    lams2: Any,
    error: np.ndarray,
    *,
    level: float,
    gammas: tuple[float, float],
    beta: float,
    c: float,
    name: str = "ood-explorer",
) -> Any:
    """A browser-side explorer (tvlib.explore) of the target region (the paper's condition (7)) over a precomputed error grid: a slider for c.

    The heatmap shows where T' is learned (error <= level) and where not; the cells of the target region
    for the chosen c are outlined. The region is recomputed in the browser from gammas and beta.
    """
    import altair as alt
    import pandas as pd

    from . import style
    from .explore import explorer

    l1, l2 = np.meshgrid(np.asarray(lams1, dtype=float), np.asarray(lams2, dtype=float), indexing="ij")
    err = np.asarray(error, dtype=float)
    df = pd.DataFrame({"lam1": l1.ravel(), "lam2": l2.ravel(), "error": err.ravel(),
                       "learned": np.where(err.ravel() <= level, "learned", "not learned")})
    g1, g2 = (float(g) for g in gammas)
    c_param = alt.param(name="c", value=float(c), bind=alt.binding_range(min=0.02, max=0.98, step=0.02, name="c "))
    inside = (f"datum.lam1 * {g1} + datum.lam2 * {g2} >= 1 + c && "
              f"datum.lam1 * {g1 * g1} + datum.lam2 * {g2 * g2} >= 1 + c && "
              f"abs(datum.lam1) * {beta} <= c && abs(datum.lam2) * {beta} <= c")
    base = alt.Chart(df).encode(
        x=alt.X("lam1:O", title="λ₁ (coefficient of T₁'s task vector)",
                axis=alt.Axis(values=[float(v) for v in np.unique(l1) if v == round(v)], labelAngle=0)),
        y=alt.Y("lam2:O", title="λ₂ (coefficient of T₂'s task vector)", sort="descending",
                axis=alt.Axis(values=[float(v) for v in np.unique(l2) if v == round(v)])),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("learned:N", title=f"hinge error ≤ {level:.3f}",
                        scale=alt.Scale(domain=["learned", "not learned"],
                                        range=[style.COLORS["Tprime"], "#dddddd"])),
        tooltip=["lam1:Q", "lam2:Q", alt.Tooltip("error:Q", format=".3f")],
    )
    region = base.transform_calculate(inside=inside).transform_filter("datum.inside").mark_point(
        shape="square", filled=False, color=style.COLORS["base"], size=30).encode()
    chart = (heat + region).add_params(c_param).properties(height=320)
    return explorer(chart, name=name,
                    alt=f"Grid of (lambda1, lambda2): cells where the target T' is learned, with the cells of "
                        f"the target region (the paper's condition (7)) for the chosen c outlined (gamma = ({g1:.2f}, {g2:.2f}), beta = {beta:.3f}).")
