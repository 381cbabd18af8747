"""Figures of the task-arithmetic sweeps of Theorems 1 and 2 (addition and negation chapters).

Each plot_* function returns a matplotlib Figure drawn with tvlib.style (fixed colours for T1 and T2,
mathtext labels, at most three panels per row, one legend outside the data); `merge_explorer`
returns a browser-side explorer (tvlib.explore) over a sweep's precomputed curves.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure

from .. import style
from ..figures import _edges, band

__all__ = [
    "plot_lambda_curves",
    "plot_side_effect",
    "plot_phase_diagram",
    "plot_thresholds",
    "plot_worst_task",
    "plot_alpha_hat",
    "plot_negation_bounds",
    "plot_pattern_ratios",
    "plot_negation_parts",
    "merge_explorer",
]

L = style.LABELS
_TASK_COLORS = {"T1": style.COLORS["T1"], "T2": style.COLORS["T2"]}
_GREY = "0.55"


def _seed_matrix(curves: Any, alpha: float, task: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """lams (L,) and a (seeds, L) matrix of `metric` for one alpha and task of a sweep's curves."""
    c = curves[np.isclose(curves["alpha"], alpha) & (curves["task"] == task)]
    table = c.pivot(index="seed", columns="lam", values=metric)
    return table.columns.to_numpy(dtype=float), table.to_numpy()


def plot_lambda_curves(
    curves: Any,
    alphas: list[float],
    *,
    vlines: dict[float, float] | None = None,
    vline_label: str = "theory",
    shade: dict[float, tuple[float, float]] | None = None,
    shade_label: str = "measured region",
    level: float | None = None,
    level_label: str = r"$\Theta(\epsilon) = 2\epsilon$",
) -> Figure:
    """Hinge error (top) and accuracy (bottom) of the merged model on T1 and T2 against lam, one column per
    alpha (at most three). Seed means with min-max bands; `vlines` maps alpha to a lam drawn dashed,
    `shade` maps alpha to a (lo, hi) lam interval shaded; `level` draws a hinge-error level."""
    fig, axes = style.subplots(ncols=len(alphas), nrows=2, sharex=True, sharey="row", squeeze=False, aspect=0.8)
    for j, alpha in enumerate(alphas):
        for i, metric in enumerate(("error", "accuracy")):
            ax = axes[i, j]
            if shade and alpha in shade and np.all(np.isfinite(shade[alpha])):
                ax.axvspan(*shade[alpha], color="0.88", lw=0, label=shade_label)
            for task, color in _TASK_COLORS.items():
                lams, runs = _seed_matrix(curves, alpha, task, metric)
                band(ax, lams, runs, label=L[task], color=color, ls=style.LINESTYLES[task])
            if vlines and alpha in vlines and np.isfinite(vlines[alpha]):
                ax.axvline(vlines[alpha], color=style.COLORS["theory"], ls="--", lw=1.2, label=vline_label)
            ax.axvline(0, color=_GREY, lw=0.5)
            if metric == "accuracy":
                ax.axhline(0.5, color=_GREY, ls=":", lw=1)
                ax.set_xlabel(L["lam"])
            else:
                if level is not None:
                    ax.axhline(level, color=style.COLORS["base"], ls=":", lw=1.2, label=level_label)
                ax.set_yscale("symlog", linthresh=0.05)
                ax.set_ylim(bottom=0)
                ax.set_title(rf"$\alpha = {alpha:+.1f}$")
    axes[0, 0].set_ylabel("hinge error (symlog)")
    axes[1, 0].set_ylabel("accuracy")
    style.legend_outside(fig)
    return fig


def plot_side_effect(lams: np.ndarray, t1_error: np.ndarray, eps: np.ndarray, beta: np.ndarray, *,
                     fit_max: float, predict_max: float) -> Figure:
    """T1's excess hinge error err - eps against |lam| for lam < 0 (rows of t1_error: seeds), with the
    line beta-hat |lam| fitted on |lam| <= fit_max and extrapolated to predict_max."""
    neg = lams < 0
    x = -lams[neg]
    excess = t1_error[:, neg] - eps[:, None]
    fig, ax = style.subplots()
    ax.axvspan(0, fit_max, color="0.92", lw=0, label=r"fit: $|\lambda| \leq %g$" % fit_max)
    ax.axvspan(fit_max, predict_max, color=style.COLORS["theory"], alpha=0.12, lw=0,
               label=r"prediction: $%g < |\lambda| \leq %g$" % (fit_max, predict_max))
    band(ax, x, excess, color=style.COLORS["T1"], marker="o", ms=2.5, label=L["T1"] + ", measured (seed mean)")
    xs = np.linspace(0, x.max(), 50)
    ax.plot(xs, float(np.mean(beta)) * xs, ls="--", color=style.COLORS["theory"],
            label=r"$\hat\beta\,|\lambda|$, $\hat\beta = %.3f$" % float(np.mean(beta)))
    ax.set_xlabel(r"$|\lambda|$ ($\lambda < 0$)")
    ax.set_ylabel(r"excess hinge error of $T_1$: err $- \epsilon$")
    style.legend_outside(fig)
    return fig


def plot_phase_diagram(
    learned: Any,
    *,
    beta: float | None = None,
    thresholds: Any = None,
    labels: tuple[str, str] = (r"hinge error $\leq \Theta(\epsilon)$", r"accuracy $\geq 0.95$"),
) -> Figure:
    """Fraction of seeds learning both tasks over (lam, alpha), by hinge error and by accuracy.

    `learned` is tvlib.toy.measured.learned_map's frame; `beta` draws Theorem 1's boundary lam = 1 - alpha + beta
    (alpha >= 0); `thresholds` (columns alpha, lam_star_error, lam_star_accuracy) adds the measured lam*.
    """
    alphas = np.sort(learned["alpha"].unique())
    lams = np.sort(learned["lam"].unique())
    fig, axes = style.subplots(ncols=2, sharey=True)
    for ax, col, name in zip(axes, ("both_error", "both_accuracy"), labels):
        grid = learned.pivot(index="alpha", columns="lam", values=col).reindex(index=alphas, columns=lams).to_numpy()
        im = ax.pcolormesh(_edges(lams), _edges(alphas), grid, cmap=style.SEQUENTIAL, vmin=0, vmax=1, shading="flat")
        if beta is not None:
            a = alphas[alphas >= 0]
            ax.plot(1 - a + beta, a, color=style.COLORS["theory"], ls="--", lw=2,
                    label=r"Theorem 1: $\lambda = 1 - \alpha + \hat\beta$")
        key = "lam_star_error" if col == "both_error" else "lam_star_accuracy"
        if thresholds is not None and key in thresholds:
            ax.plot(thresholds[key], thresholds["alpha"], "o", color=style.COLORS["merged"], mec="k", ms=4,
                    label=r"measured $\lambda^*(\alpha)$ of $T_2$")
        ax.axhline(-0.1, color="w", lw=0.8)
        ax.set_xlabel(L["lam"])
        ax.set_title(name)
    axes[0].set_ylabel(r"task correlation $\alpha$")
    fig.colorbar(im, ax=axes, shrink=0.8, label="fraction of seeds: both learned")
    style.legend_outside(fig)
    return fig


def plot_thresholds(summaries: dict[float, Any], *, beta: float) -> Figure:
    """Measured lam*(alpha) (seed mean +- SD) at several tolerance factors against Theorem 1's 1 - alpha + beta.

    summaries maps a factor (Theta(eps) = factor * eps) to addition_summary's frame at that factor."""
    import matplotlib as mpl

    fig, ax = style.subplots(width=0.8)
    cmap = mpl.colormaps[style.SEQUENTIAL_ALT]
    for k, (factor, s) in enumerate(sorted(summaries.items())):
        g = s[s["alpha"] >= 0].groupby("alpha")["lam_star_error"]
        a = np.asarray(g.mean().index, dtype=float)
        ax.errorbar(a, g.mean(), yerr=g.std(), fmt="o-", capsize=2, ms=3.5,
                    color=cmap(0.1 + 0.75 * k / max(1, len(summaries) - 1)),
                    label=rf"$\lambda^*$: $T_2$ error $\leq {factor:g}\,\epsilon$")
        alphas = a
    ax.plot(alphas, 1 - alphas + beta, color=style.COLORS["theory"], ls="--", lw=1.8,
            label=r"Theorem 1: $1 - \alpha + \hat\beta$")
    ax.set_xlabel(r"task correlation $\alpha$")
    ax.set_ylabel(r"threshold $\lambda^*$")
    style.legend_outside(fig, loc="outside right upper")
    return fig


def plot_worst_task(frontier: Any, *, factor: float = 2.0, acc_level: float = 0.95) -> Figure:
    """Over lam, the best the merged model does on its worse task: min of max error/eps, max of min accuracy."""
    alphas = np.array(sorted(frontier["alpha"].unique()))
    fig, axes = style.subplots(ncols=2)
    band(axes[0], alphas, frontier.pivot(index="seed", columns="alpha", values="ratio").to_numpy(),
         color=style.COLORS["merged"], marker="o", ms=3, label="worse task, seed mean and min–max")
    axes[0].axhline(factor, color=style.COLORS["theory"], ls="--", lw=1.2,
                    label=rf"$\Theta(\epsilon) = {factor:g}\epsilon$ / accuracy ${acc_level:g}$")
    axes[0].set_yscale("symlog", linthresh=1.0)
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(r"$\min_\lambda \max_T\ \mathrm{err}_T / \epsilon_T$")
    band(axes[1], alphas, frontier.pivot(index="seed", columns="alpha", values="accuracy").to_numpy(),
         color=style.COLORS["merged"], marker="o", ms=3)
    axes[1].axhline(acc_level, color=style.COLORS["theory"], ls="--", lw=1.2)
    axes[1].set_ylabel(r"$\max_\lambda \min_T\ \mathrm{acc}_T$")
    axes[1].set_ylim(0.4, 1.02)
    for ax in axes:
        ax.axvline(0, color=_GREY, lw=0.5)
        ax.set_xlabel(r"task correlation $\alpha$")
    style.legend_outside(fig)
    return fig


def plot_alpha_hat(alpha_hat: Any, reference: Callable[[np.ndarray], np.ndarray] | None = None) -> Figure:
    """The estimate alpha-hat against the true alpha, one dot per seed, with the identity (and a reference curve)."""
    fig, ax = style.subplots(width=0.6, aspect=0.9)
    ax.plot([-1, 1], [-1, 1], color=style.COLORS["base"], ls=":", lw=1, label=r"identity $\hat\alpha = \alpha$")
    if reference is not None:
        a = np.linspace(-1, 1, 201)
        ax.plot(a, reference(a), color=style.COLORS["theory"], ls="--", lw=1.5, label=r"$2\alpha / (1 + \alpha^2)$")
    ax.plot(alpha_hat["alpha"], alpha_hat["alpha_hat"], "o", color=style.COLORS["merged"], alpha=0.7, ms=4,
            label=r"$\hat\alpha$, one dot per seed")
    ax.set_xlabel(r"$\alpha = \mu_{T_1}^\top \mu_{T_2}$")
    ax.set_ylabel(r"$\hat\alpha$ = cosine of the outputs of $\Psi^*_{T_1}$, $\Psi^*_{T_2}$")
    ax.set_aspect("equal")
    style.legend_outside(fig)
    return fig


def plot_negation_bounds(summary: Any, *, c_lower: float, c_upper: float, lam_range: tuple[float, float]) -> Figure:
    """Measured lam intervals of negation per alpha (T1 kept, T2 forgotten, both) against Theorem 2's edges.

    `summary` is tvlib.toy.measured.negation_summary's frame; c_lower, c_upper scale -c/alpha^2 and C/|alpha|.
    """
    m = summary.groupby("alpha").mean()
    alphas = m.index.to_numpy()
    fig, ax = style.subplots(width=1.0, aspect=0.5)
    off = 0.012
    ax.vlines(alphas - off, m["keep_lo"], m["keep_hi"], color=style.COLORS["T1"], lw=3.5, alpha=0.75,
              label=r"$T_1$ kept: error $\leq \Theta(\epsilon) + |\lambda|\hat\beta$")
    ax.vlines(alphas + off, m["forget_lo"], m["forget_hi"], color=style.COLORS["T2"], lw=3.5, alpha=0.75,
              label=r"$T_2$ forgotten: error $\geq$ 0.95 $\times$ " + L["Psi0"] + "'s")
    ok = np.isfinite(m["region_lo_error"]).to_numpy()
    ax.plot(alphas[ok], m["region_lo_error"][ok], "^", color=style.COLORS["base"], ms=5, label="both: window edges")
    ax.plot(alphas[ok], m["region_hi_error"][ok], "v", color=style.COLORS["base"], ms=5)
    a = np.linspace(alphas.min(), -0.05, 200)
    a = a[(a < 0) & (-c_lower / a**2 >= lam_range[0])]
    ax.plot(a, -c_lower / a**2, color=style.COLORS["theory"], ls="--", lw=1.5,
            label=rf"$-c/\alpha^2$, $c = {c_lower:.2f}$ (fitted)")
    a = np.linspace(alphas.min(), -0.05, 200)
    a = a[(a < 0) & (c_upper / np.abs(a) <= lam_range[1])]
    ax.plot(a, c_upper / np.abs(a), color=style.COLORS["theory"], ls=":", lw=1.8,
            label=rf"$C/|\alpha|$, $C = {c_upper:.2f}$ (fitted)")
    ax.set_ylim(lam_range[0] - 0.4, lam_range[1] + 0.4)
    for y in lam_range:
        ax.axhline(y, color=_GREY, lw=0.5, ls=":")
    ax.axhline(0, color=_GREY, lw=0.5)
    ax.set_xlabel(r"task correlation $\alpha$")
    ax.set_ylabel(L["lam"])
    style.legend_outside(fig, loc="outside right upper")
    return fig


def plot_pattern_ratios(ratios: Any) -> Figure:
    """How much of T1's attention (mu1^T dW mu1) and value read-out (dV mu1) the T2 vector carries, against alpha.

    `ratios` has columns alpha, seed, attention, value (tvlib.toy.vector_stats.pattern_ratios per seed).
    """
    fig, axes = style.subplots(ncols=2, sharex=True)
    a = np.linspace(-1, 1, 201)
    for ax, col, ref, label in ((axes[0], "attention", a**2, r"$\alpha^2$"), (axes[1], "value", a, r"$\alpha$")):
        ax.plot(a, ref, color=style.COLORS["theory"], ls="--", lw=1.5, label=f"first-order picture: {label}")
        ax.plot(ratios["alpha"], ratios[col], "o", color=style.COLORS["T2"], alpha=0.6, ms=4,
                label=L["dPsi_T2"] + ", one dot per seed")
        ax.axhline(0, color=_GREY, lw=0.5)
        ax.axvline(0, color=_GREY, lw=0.5)
        ax.set_xlabel(r"task correlation $\alpha$")
    axes[0].set_ylabel(r"$\mu_1^\top \Delta W_{T_2} \mu_1 \,/\, \mu_1^\top \Delta W_{T_1} \mu_1$")
    axes[0].set_title("attention part: sign-blind")
    axes[1].set_ylabel(r"$(\Delta V_{T_2}\mu_1)\cdot(\Delta V_{T_1}\mu_1) / \|\Delta V_{T_1}\mu_1\|^2$")
    axes[1].set_title("value part: carries the sign")
    style.legend_outside(fig)
    return fig


def plot_negation_parts(lams: np.ndarray, runs: dict[str, np.ndarray], metric: str = "accuracy") -> Figure:
    """T2's accuracy (or error) when negating the whole T2 vector, only its attention part or only its value part.

    `runs` maps a (mathtext) label to a (seeds, L) array over `lams`.
    """
    fig, ax = style.subplots()
    colors = (style.COLORS["T2"], style.COLORS["theory"], style.COLORS["merged"])
    for (label, values), color, ls in zip(runs.items(), colors, ("-", "--", "-.")):
        band(ax, lams, values, label=label, color=color, ls=ls)
    ax.axhline(0.5, color=_GREY, ls=":", lw=1)
    ax.set_xlabel(r"$\lambda$ (weight of the negated part of $\Delta\Psi_{T_2}$)")
    ax.set_ylabel(f"{L['T2']} {metric}")
    style.legend_outside(fig)
    return fig


def merge_explorer(curves: Any, *, alpha: float, lam: float, name: str, alt_text: str) -> Any:
    """A browser-side explorer of a sweep: sliders for alpha and lam over its seed-mean error and accuracy.

    One panel: hinge error (solid) and accuracy (dashed) of T1 and T2 against lam for the chosen alpha,
    the chosen lam marked and its four values printed; the data is the sweep's seed means, filtered in
    the browser (tvlib.explore), so the picture changes on the static site.
    """
    import altair as alt

    from ..explore import explorer

    mean = curves.groupby(["alpha", "lam", "task"], as_index=False)[["error", "accuracy"]].mean()
    tidy = mean.melt(id_vars=["alpha", "lam", "task"], value_vars=["error", "accuracy"], var_name="metric")
    tidy["series"] = tidy["task"] + " " + tidy["metric"]
    alphas, lams = np.sort(mean["alpha"].unique()), np.sort(mean["lam"].unique())
    a_step = round(float(np.min(np.diff(alphas))), 3) if alphas.size > 1 else 0.1
    a_par = alt.param(name="alpha", value=float(alpha), bind=alt.binding_range(
        min=float(alphas[0]), max=float(alphas[-1]), step=a_step, name="α "))
    l_par = alt.param(name="lam", value=float(lam), bind=alt.binding_range(
        min=float(lams[0]), max=float(lams[-1]), step=0.1, name="λ "))
    color = alt.Color("task:N", title=None, scale=alt.Scale(domain=["T1", "T2"], range=list(_TASK_COLORS.values())))
    dash = alt.StrokeDash("metric:N", title=None, sort=["error", "accuracy"],
                          scale=alt.Scale(domain=["error", "accuracy"], range=[[1, 0], [5, 3]]))
    base = alt.Chart(tidy).transform_calculate(adist="abs(datum.alpha - alpha)").transform_joinaggregate(
        amin="min(adist)").transform_filter("datum.adist == datum.amin")  # the sweep's alpha nearest the slider
    lines = base.mark_line().encode(x=alt.X("lam:Q", title="λ"),
                                    y=alt.Y("value:Q", title="hinge error (solid), accuracy (dashed)"),
                                    color=color, strokeDash=dash, detail="series:N")
    here = base.transform_calculate(dist="abs(datum.lam - lam)").transform_joinaggregate(
        dmin="min(dist)", groupby=["series"]).transform_filter("datum.dist == datum.dmin")
    dots = here.mark_point(filled=True, size=50).encode(
        x="lam:Q", y="value:Q", color=color,
        tooltip=["series:N", alt.Tooltip("lam:Q", format=".1f"), alt.Tooltip("value:Q", format=".3f")])
    text = here.mark_text(align="left", dx=7, fontSize=11).encode(
        x="lam:Q", y="value:Q", color=color, text=alt.Text("value:Q", format=".3f"))
    rule = base.transform_aggregate(n="count()").transform_calculate(at="lam").mark_rule(
        color="#555", strokeDash=[2, 2]).encode(x="at:Q")
    title = base.transform_aggregate(shown="mean(alpha)").transform_calculate(
        label="'α = ' + format(datum.shown, '+.1f') + ',  λ = ' + format(lam, '+.1f')").mark_text(
        align="left", baseline="top", fontSize=12).encode(x=alt.value(4), y=alt.value(2), text="label:N")
    # a fixed width: inside a numbered figure the container's width is not known when vega-embed measures it
    chart = (lines + rule + dots + text + title).add_params(a_par, l_par).properties(width=560, height=300)
    return explorer(chart, name=name, alt=alt_text)
