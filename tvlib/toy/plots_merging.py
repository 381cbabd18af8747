"""Figures of the low-rank and sparse chapters (Corollaries 1 and 2), in the book's style (tvlib.style).

Each plot_* returns a matplotlib Figure; lambda_explorer returns a browser-side explorer (tvlib.explore).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .. import style
from ..figures import band

__all__ = ["plot_rank_errors", "plot_sparsity_curves", "plot_lambda_compare", "plot_row_norms_by_width",
           "lambda_explorer", "pruning_explorer"]

_TASKS = {"T1": "T1", "T2": "T2", "T'": "Tprime"}  # task name in a sweep -> key of style.COLORS / LABELS


def _seed_matrix(curves: Any, alpha: float, task: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """lams (L,) and a (seeds, L) matrix of `metric` for one alpha and task of a sweep's curves."""
    c = curves[np.isclose(curves["alpha"], alpha) & (curves["task"] == task)]
    table = c.pivot(index="seed", columns="lam", values=metric)
    return table.columns.to_numpy(dtype=float), table.to_numpy()


def plot_rank_errors(ranks: Any, rel_W: np.ndarray, rel_V: np.ndarray) -> Figure:
    """Relative truncation errors ||D - D_r||_F / ||D||_F against r for dW and dV (rows: runs), mean and min-max band."""
    with style.context():
        fig, ax = style.subplots(aspect=0.6)
        r = np.asarray(ranks)
        band(ax, r, rel_W, label=r"$\Delta W$", marker="o", color=style.COLORS["T1"])
        band(ax, r, rel_V, label=r"$\Delta V$", marker="s", ls="--", color=style.COLORS["merged"])
        ax.set_yscale("log")
        ax.set_xlabel(style.LABELS["rank"])
        ax.set_ylabel(r"$\|\Delta - \Delta_r\|_F \,/\, \|\Delta\|_F$")
        style.legend_outside(fig, loc="outside right upper")
    return fig


def plot_lambda_compare(curves: dict[str, Any], alphas: list[float], *, title: str = "") -> Figure:
    """Hinge error (top) and accuracy (bottom) on T1 and T2 against lam, seed means, for several versions of the
    task vectors (`curves` maps a label to a sweep's curves; one line style each), one column per alpha (<= 3)."""
    styles = ["-", "--", ":", "-."]
    with style.context():
        fig, axes = style.subplots(ncols=len(alphas), nrows=2, aspect=0.8, sharex=True, sharey="row", squeeze=False)
        for j, alpha in enumerate(alphas):
            for i, metric in enumerate(("error", "accuracy")):
                ax = axes[i, j]
                for k, (label, c) in enumerate(curves.items()):
                    for task in ("T1", "T2"):
                        lams, runs = _seed_matrix(c, alpha, task, metric)
                        ax.plot(lams, runs.mean(0), styles[k % len(styles)], color=style.COLORS[task], lw=1.4,
                                label=f"{style.LABELS[task]}, {label}")
                ax.axvline(0, color="0.6", lw=0.5)
                if metric == "error":
                    ax.set_yscale("symlog", linthresh=0.05)
                    ax.set_title(rf"$\alpha = {alpha:+.1f}$")
                else:
                    ax.axhline(0.5, color="0.6", ls=":", lw=1)
                    ax.set_xlabel(style.LABELS["lam"])
        axes[0, 0].set_ylabel("hinge error (symlog)")
        axes[1, 0].set_ylabel("accuracy")
        if title:
            fig.suptitle(title)
        style.legend_outside(fig)
    return fig


def plot_row_norms_by_width(norms: dict[int, np.ndarray], *, small: float) -> Figure:
    """Histograms of the row norms of dV in units of m^-1/2, one panel per width m (`norms` maps m to the norms
    of all rows of all runs), with the corollary's two scales: 1 (large rows) and `small` = sqrt(log B / B);
    rows below small / 4 (zero included) are counted in the first bin."""
    widths = list(norms)
    with style.context():
        fig, axes = style.subplots(ncols=min(3, len(widths)), nrows=-(-len(widths) // 3), aspect=0.75,
                                   sharex=True, squeeze=False)
        top = max(float(np.max(v)) for v in norms.values())
        lo = small / 4  # rows below (zero included) are counted in the first bin
        bins = np.geomspace(lo, max(top, 2.0) * 1.1, 40)
        for ax, m in zip(axes.ravel(), widths):
            ax.hist(np.clip(np.asarray(norms[m]).ravel(), lo, None), bins=bins, color=style.COLORS["T1"])
            ax.axvline(1.0, color=style.COLORS["base"], ls="--", lw=1.2, label=r"$\|u_i\| = m^{-1/2}$ (large)")
            ax.axvline(small, color=style.COLORS["theory"], ls=":", lw=1.8,
                       label=r"$m^{-1/2}\sqrt{\log B/B}$ (small)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"$m = {m}$")
            ax.set_xlabel(r"$\|u_i\|\,\sqrt{m}$")
        axes[0, 0].set_ylabel("rows of $\\Delta V$")
        for ax in axes.ravel()[len(widths):]:
            ax.set_visible(False)
        style.legend_outside(fig)
    return fig


def plot_sparsity_curves(frame: Any, *, tasks: list[str], title: str = "", methods: list[str] | None = None,
                         reference: dict[str, float] | None = None) -> Figure:
    """Hinge error against the fraction of entries kept, one line per method, one panel per task (<= 3).

    `frame` has columns method, level, kept (fraction of each task vector's entries kept), seed, task, error
    (tvlib.toy.sparsity.sparsity_sweep); x is the seed-mean of kept per level; lines are seed means with
    min-max bands; `reference` maps a task to a dashed level (e.g. the dense merge's error).
    """
    methods = methods or list(dict.fromkeys(frame["method"]))
    colors = [style.COLORS[k] for k in ("merged", "T1", "theory", "control", "base")]
    with style.context():
        fig, axes = style.subplots(ncols=len(tasks), aspect=0.8, sharey=True, squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for k, method in enumerate(methods):
                f = frame[(frame["method"] == method) & (frame["task"] == task)]
                table = f.pivot_table(index="seed", columns="level", values="error")
                kept = f.groupby("level")["kept"].mean().reindex(table.columns).to_numpy()
                band(ax, kept, table.to_numpy(), label=method, color=colors[k % len(colors)], marker="o", ms=3)
            if reference and task in reference:
                ax.axhline(reference[task], color="k", ls="--", lw=1, label="dense merge")
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=0.05)
            ax.set_title(f"on {style.LABELS[_TASKS.get(task, task)]}" if task in _TASKS else task)
            ax.set_xlabel("fraction of entries kept")
        axes[0, 0].set_ylabel("hinge error (symlog)")
        if title:
            fig.suptitle(title)
        style.legend_outside(fig)
    return fig


def lambda_explorer(versions: dict[int, Any], dense: Any, *, name: str = "lowrank-explorer",
                    what: str = "rank") -> Any:
    """A browser-side explorer: seed-mean hinge error on T1 and T2 against lam with dense task vectors and with
    the version chosen in a menu (`versions` maps e.g. a rank to a sweep's curves), and a menu for alpha."""
    import altair as alt
    import pandas as pd

    from ..explore import explorer

    def tidy(curves: Any, version: str) -> Any:
        m = curves.groupby(["alpha", "lam", "task"], as_index=False)["error"].mean()
        return m.assign(version=version)

    keys = sorted(versions)
    df = pd.concat([tidy(dense, "dense")] + [tidy(versions[k], str(k)) for k in keys], ignore_index=True)
    df["error"] = df["error"].clip(lower=1e-2)
    alphas = sorted(float(a) for a in df["alpha"].unique())
    k_param = alt.param(name="k", value=int(keys[0]), bind=alt.binding_select(
        options=[int(k) for k in keys], labels=[f"{what} {k}" for k in keys], name=f"{what} "))
    a_param = alt.param(name="a", value=alphas[len(alphas) // 2], bind=alt.binding_select(
        options=alphas, labels=[f"α = {a:+.1f}" for a in alphas], name="task pair "))
    color = alt.Color("task:N", title="task", scale=alt.Scale(domain=["T1", "T2"],
                                                             range=[style.COLORS["T1"], style.COLORS["T2"]]))
    base = alt.Chart(df).transform_filter("abs(datum.alpha - a) < 1e-9").encode(
        x=alt.X("lam:Q", title="λ (weight of ΔΨ_T2)"),
        y=alt.Y("error:Q", title="hinge error (seed mean)", scale=alt.Scale(type="log")), color=color)
    dense_lines = base.transform_filter("datum.version == 'dense'").mark_line(strokeWidth=1.5, opacity=0.6)
    chosen = base.transform_filter("datum.version == '' + k").mark_line(strokeDash=[5, 3], strokeWidth=2)
    chart = (dense_lines + chosen).add_params(k_param, a_param).properties(height=300)
    with alt.data_transformers.enable("default", max_rows=None):
        chart = chart.to_dict()
    return explorer(chart, name=name, alt=f"Hinge error on T1 and T2 against lambda for dense task vectors (solid) "
                                          f"and for the {what} chosen in the menu (dashed), one task pair at a time.")


def pruning_explorer(projections: dict[tuple[str, float], np.ndarray], patterns: list[str], *,
                     name: str = "sparse-explorer") -> Any:
    """A browser-side explorer of what pruning keeps: rows of dV in the task's pattern basis (neurons x patterns),
    for the method and the fraction kept chosen in two menus. `projections` maps (method, level) to an array
    (neurons, len(patterns))."""
    import altair as alt
    import pandas as pd

    from ..explore import explorer

    rows = [(meth, float(level), i, patterns[j], float(v[i, j]))
            for (meth, level), v in projections.items() for i in range(v.shape[0]) for j in range(v.shape[1])]
    df = pd.DataFrame(rows, columns=["method", "level", "neuron", "pattern", "value"])
    methods = list(dict.fromkeys(df["method"]))
    levels = sorted(df["level"].unique(), reverse=True)
    # colours scaled to the least-pruned vectors (DARE's rescaled entries beyond it are clamped), and the
    # explorer opens at the largest fraction kept below 1, where every method's effect is visible
    span = float(np.abs(df.loc[df["level"] == levels[0], "value"]).max()) or 1.0
    start = next((x for x in levels if x < 1.0), levels[0])
    meth = alt.param(name="meth", value=methods[0], bind=alt.binding_select(options=methods, name="method "))
    lev = alt.param(name="lev", value=float(start), bind=alt.binding_select(
        options=[float(x) for x in levels], labels=[f"{x:.0%}" for x in levels], name="entries kept "))
    chart = alt.Chart(df).transform_filter("datum.method == meth && abs(datum.level - lev) < 1e-9").mark_rect().encode(
        x=alt.X("pattern:N", sort=patterns, title="pattern (μ, then the irrelevant v₁, v₂, …)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("neuron:O", title="neuron i (a_i > 0 first)", axis=alt.Axis(labels=False, ticks=False)),
        color=alt.Color("value:Q", title="ΔV component", scale=alt.Scale(scheme="redblue", domain=[-span, span],
                                                                          reverse=True, clamp=True)),
        tooltip=["neuron:O", "pattern:N", alt.Tooltip("value:Q", format=".3f")],
    ).add_params(meth, lev).properties(height=320)
    with alt.data_transformers.enable("default", max_rows=None):
        chart = chart.to_dict()
    return explorer(chart, name=name, alt="Heatmap of the rows of Delta V of one task vector in the basis of its "
                                          "patterns, after pruning with the chosen method down to the chosen fraction "
                                          "of entries; neurons with a positive output weight first.")
