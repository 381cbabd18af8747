"""Figures of the image chapter, in the book's style (tvlib.style): digits, Figure 1, Figure 2, explorer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from .. import style
from .params import RELATIONS

__all__ = ["plot_digits", "plot_curves", "plot_heat", "curves_frame", "curves_explorer"]

_TASK = {"T1": (style.COLORS["T1"], style.LABELS["T1"]), "T2": (style.COLORS["T2"], style.LABELS["T2"])}


#: how the two color channels are drawn: "red" digits in vermillion, "green" ones in blue (Okabe-Ito),
#: so that the figure reads for every color vision
SHOWN_AS = {"red": style.OKABE_ITO["vermillion"], "green": style.OKABE_ITO["blue"]}


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])


def plot_digits(images: Mapping[str, tuple[Tensor, Tensor]], n: int = 8) -> Figure:
    """The first n test digits of every task (one row each, labelled by its name), as the task paints them.

    Channel 0 ("red") is drawn in SHOWN_AS["red"], channel 1 ("green") in SHOWN_AS["green"], on white.
    """
    red, green = _rgb(SHOWN_AS["red"]), _rgb(SHOWN_AS["green"])
    fig, axes = plt.subplots(len(images), n, figsize=style.figsize(3, len(images), width=0.8, aspect=0.12 * n / 3),
                             layout="constrained", dpi=style.DPI, squeeze=False)
    for row, (name, (X, y)) in zip(axes, images.items()):
        for ax, i in zip(row, range(n)):
            x = X[i].clamp(0, 1).numpy()
            ink = x[0][..., None] * red + x[1][..., None] * green
            ax.imshow(1 - (x[0] + x[1])[..., None] + ink)
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            ax.spines[:].set_visible(False)
            ax.set_title("odd" if y[i] else "even", fontsize=7, pad=2)
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def _band(ax: plt.Axes, x: np.ndarray, runs: np.ndarray, task: str) -> None:
    """Mean over runs as a line, mean +- one standard deviation as a band."""
    color, label = _TASK[task]
    mean = runs.mean(0)
    sd = runs.std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
    ax.plot(x, mean, color=color, ls=style.LINESTYLES[task], label=label)
    ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)


def plot_curves(lams: np.ndarray, acc: Mapping[str, np.ndarray], err: Mapping[str, np.ndarray],
                best: Mapping[str, Mapping[str, float]], alpha: Mapping[str, np.ndarray]) -> Figure:
    """Figure 1: accuracy (top) and hinge error (bottom) of T1 and T2 against lambda, one column per relation.

    acc[rel], err[rel]: (runs, lams, 2); bands are mean +- sd over runs; best[rel] = {goal: lambda}.
    """
    fig, axes = style.subplots(3, 2, aspect=0.8, sharex=True, sharey="row")
    for j, rel in enumerate(RELATIONS):
        for i, (values, name) in enumerate(((acc[rel], "test accuracy"), (err[rel], "hinge error"))):
            ax = axes[i, j]
            for k, task in enumerate(("T1", "T2")):
                _band(ax, lams, values[:, :, k], task)
            for goal, ls in (("add", "--"), ("negate", ":")):
                ax.axvline(best[rel][goal], color="0.35", ls=ls, lw=1,
                           label=f"best {style.LABELS['lam']}, {'addition' if goal == 'add' else 'negation'}")
            if i == 0:
                ax.axhline(0.5, color="0.6", lw=0.8)
                a = np.asarray(alpha[rel])
                ax.set_title(f"{rel}\n" + r"$\hat\alpha$" + f" = {a.mean():.2f} ± {a.std(ddof=1) if a.size > 1 else 0:.2f}")
            else:
                ax.set_xlabel(style.LABELS["lam"])
            if j == 0:
                ax.set_ylabel(name)
    style.legend_outside(fig)
    return fig


def plot_heat(lams1: np.ndarray, lams2: np.ndarray, acc: np.ndarray, *, region: np.ndarray | None,
              best: tuple[float, float], paper_best: tuple[float, float] | None = None) -> Figure:
    """Figure 2: accuracy on T' over (lambda1, lambda2), centred on chance, with the target region (the paper's condition (7)) hatched."""
    fig, ax = style.subplots(1, width=0.75, aspect=0.85)
    edges = [np.concatenate([[g[0] - (g[1] - g[0]) / 2], (g[1:] + g[:-1]) / 2, [g[-1] + (g[-1] - g[-2]) / 2]])
             for g in (lams1, lams2)]
    im = ax.pcolormesh(*edges, acc.T, cmap=style.DIVERGING, norm=style.centered_norm([0.0, 1.0], 0.5))
    fig.colorbar(im, ax=ax, label=f"accuracy on {style.LABELS['Tprime']}")
    if region is not None and region.any():
        ax.contourf(lams1, lams2, region.T.astype(float), levels=[0.5, 1.5], colors="none", hatches=["///"])
        ax.contour(lams1, lams2, region.T.astype(float), levels=[0.5], colors="k", linewidths=1.2)
        ax.plot([], [], color="k", lw=1.2, label="target region")
    ax.plot(*best, "*", color=style.COLORS["merged"], mec="k", ms=11, label=f"best merge {best}")
    if paper_best is not None:
        ax.plot(*paper_best, "o", mfc="none", mec="k", ms=8, label=f"paper's best {tuple(paper_best)}")
    ax.axhline(0, color="0.5", lw=0.5), ax.axvline(0, color="0.5", lw=0.5), ax.grid(False)
    ax.set_xlabel(f"{style.LABELS['lam1']} (weight of {style.LABELS['dPsi_T1']})")
    ax.set_ylabel(f"{style.LABELS['lam2']} (weight of {style.LABELS['dPsi_T2']})")
    style.legend_outside(fig)
    return fig


def curves_frame(lams: np.ndarray, acc: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Tidy table of Figure 1's accuracy: relation, task, lambda, mean, lo, hi (mean -+ sd over runs)."""
    rows = []
    for rel in RELATIONS:
        runs = np.asarray(acc[rel])
        mean = runs.mean(0)
        sd = runs.std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
        for k, lam in enumerate(lams):
            for j, task in enumerate(("T1", "T2")):
                rows.append({"relation": rel, "task": task, "lam": float(lam), "mean": float(mean[k, j]),
                             "lo": float(mean[k, j] - sd[k, j]), "hi": float(mean[k, j] + sd[k, j])})
    return pd.DataFrame(rows)


def curves_explorer(frame: pd.DataFrame, *, lam0: float = 1.0, relation0: str = "aligned") -> object:
    """An Altair chart: pick a relation and a lambda; the curves of that relation, the chosen lambda
    marked, and the two accuracies there as labelled points (drawn in the browser, no kernel)."""
    import altair as alt

    lams = sorted(frame["lam"].unique())
    step = round(float(np.diff(lams).min()), 6) if len(lams) > 1 else 1.0
    rel = alt.param(name="relation", value=relation0,
                    bind=alt.binding_select(options=list(RELATIONS), name="relation "))
    lam = alt.param(name="lam", value=lam0, bind=alt.binding_range(min=lams[0], max=lams[-1], step=step, name="λ "))
    color = alt.Color("task:N", scale=alt.Scale(domain=["T1", "T2"], range=[style.COLORS["T1"], style.COLORS["T2"]]),
                      legend=alt.Legend(title=None, orient="bottom"))
    base = alt.Chart(frame).transform_filter(alt.datum.relation == rel)
    x = alt.X("lam:Q", title="λ")
    y = alt.Y("mean:Q", title="test accuracy (mean over pre-training seeds)", scale=alt.Scale(domain=[0, 1]))
    band = base.mark_area(opacity=0.2).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    line = base.mark_line().encode(x=x, y=y, color=color)
    at = base.transform_filter(alt.expr.abs(alt.datum.lam - lam) < step / 2)
    dots = at.mark_point(filled=True, size=70).encode(x=x, y=y, color=color)
    text = at.mark_text(dx=8, dy=-8, align="left").encode(x=x, y=y, color=color,
                                                          text=alt.Text("mean:Q", format=".1%"))
    rule = alt.Chart(pd.DataFrame({"z": [0]})).transform_calculate(at="lam").mark_rule(color="gray").encode(x="at:Q")
    return (band + line + rule + dots + text).add_params(rel, lam).properties(height=280)
