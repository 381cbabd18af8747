"""Figures of the unlearning chapter, drawn from its multi-seed table with the book's style (tvlib.style)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import style
from . import study
from .experiment import VECTORS
from .params import TEXTS

__all__ = ["TEXT_COLORS", "TEXT_STYLES", "TEXT_LABELS", "VECTOR_LABELS", "plot_lambda_curves", "plot_controls",
           "plot_dose_response", "curves_frame", "curves_explorer"]

#: the forget text is Theorem 2's T2; the two evaluation texts are T1s (blue: aligned, light blue: less aligned)
TEXT_COLORS = {"forget": style.COLORS["T2"], "aligned": style.COLORS["T1"], "less_aligned": style.OKABE_ITO["sky_blue"]}
TEXT_STYLES = {"forget": "--", "aligned": "-", "less_aligned": "-."}
TEXT_LABELS = {"forget": "forget", "aligned": "aligned", "less_aligned": "less aligned"}
VECTOR_LABELS = {"full": "full rank", "lora": "LoRA", "lora_emb": "LoRA + embeddings", "random": "random, same norms",
                 "own_aligned": "aligned's own", "own_less_aligned": "less aligned's own"}


def _band(ax, x, runs, text, label=None):
    mean, sd = runs.mean(0), runs.std(0, ddof=1)
    ax.plot(x, mean, TEXT_STYLES[text], color=TEXT_COLORS[text], marker="o", ms=3, label=label)
    ax.fill_between(x, mean - sd, mean + sd, color=TEXT_COLORS[text], alpha=0.2, lw=0)


def plot_lambda_curves(df: pd.DataFrame, lams: Sequence[float]):
    """Rouge-L and token-loss change along lambda for the full-rank and LoRA vectors: mean ± sd over seeds."""
    fig, axes = style.subplots(ncols=2, nrows=2, aspect=0.7, sharex=True)
    x = np.asarray(lams, dtype=float)
    for row, vector in enumerate(("full", "lora")):
        for t in TEXTS:
            _band(axes[row, 0], x, study.curve(df, "rouge", vector, t), t, TEXT_LABELS[t])
            nll = study.curve(df, "nll", vector, t)
            _band(axes[row, 1], x, nll - nll[:, :1], t)
        axes[row, 0].set_ylabel(f"Rouge-L, {VECTOR_LABELS[vector]}")
        axes[row, 1].set_ylabel(f"loss change (nats), {VECTOR_LABELS[vector]}")
    for ax in axes[1]:
        ax.set_xlabel(f"{style.LABELS['lam']} in $\\Psi^{{(0)\\prime}} + \\lambda\\,\\Delta\\Psi$")
    axes[0, 0].invert_xaxis()
    style.legend_outside(fig)
    return fig


def plot_controls(df: pd.DataFrame, vectors: Sequence[str] = VECTORS):
    """Loss rise at the last lambda on each text, per negated vector: mean ± sd and one dot per seed (symlog axis)."""
    fig, ax = style.subplots(ncols=1, width=1.0, aspect=0.5)
    width = 0.26
    rng = np.random.default_rng(0)
    for j, t in enumerate(TEXTS):
        for i, v in enumerate(vectors):
            y = study.rise(df, v, t)
            xi = i + (j - 1) * width
            ax.bar(xi, y.mean(), width * 0.9, color=TEXT_COLORS[t], alpha=0.35, lw=0,
                   label=TEXT_LABELS[t] if i == 0 else None)
            ax.errorbar(xi, y.mean(), yerr=y.std(ddof=1), color=TEXT_COLORS[t], capsize=2, lw=1)
            ax.plot(xi + rng.uniform(-0.06, 0.06, len(y)), y, ".", color=TEXT_COLORS[t], ms=3)
    ax.set_xticks(range(len(vectors)), [VECTOR_LABELS[v] for v in vectors], rotation=20, ha="right")
    ax.set_ylabel("loss rise at $\\lambda = -1$ (nats)")
    ax.set_yscale("symlog", linthresh=0.01, linscale=0.5)
    ax.set_ylim(bottom=0)
    style.legend_outside(fig, title="text")
    return fig


def plot_dose_response(df: pd.DataFrame, less_share: float):
    """The other texts' loss rise and Rouge-L drop at the last lambda against alpha-hat, one point per run.

    Aligned text: circles coloured by share; less aligned text: diamonds. Right panel: the loss rise
    against alpha-hat measured without the embeddings and the output layer.
    """
    import matplotlib as mpl

    fig, axes = style.subplots(ncols=3, aspect=0.9)
    norm = mpl.colors.Normalize(0, 1)
    cmap = mpl.colormaps[style.SEQUENTIAL]
    panels = (("tv", "rise", "loss rise (nats)"), ("tv", "drop", "Rouge-L drop (%)"),
              ("blocks", "rise", "loss rise (nats)"))
    for ax, (est, measure, ylabel) in zip(axes, panels):
        for t, marker in (("aligned", "o"), ("less_aligned", "D")):
            y = study.rise(df, "full", t) if measure == "rise" else study.drop(df, "full", t)
            x = df[f"alpha_{est}_{t}"].to_numpy(dtype=float)
            c = cmap(norm(df["share"].to_numpy(dtype=float))) if t == "aligned" else TEXT_COLORS[t]
            ax.scatter(x, y, s=14 if t == "aligned" else 12, marker=marker, c=c, edgecolors="none",
                       label=f"{TEXT_LABELS[t]} text")
        ax.set_xlabel(f"{style.LABELS['alpha_hat']} ({'whole vector' if est == 'tv' else 'blocks only'})")
        ax.set_ylabel(ylabel)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="share (aligned text)", shrink=0.8)
    style.legend_outside(fig)
    return fig


def curves_frame(df: pd.DataFrame, lams: Sequence[float]) -> pd.DataFrame:
    """Tidy table for the explorer: share, vector, text, lambda, mean, lo, hi of the loss change (mean ± sd)."""
    rows = []
    for share, part in df.groupby("share"):
        for v in VECTORS:
            for t in TEXTS:
                nll = study.curve(part, "nll", v, t)
                change = nll - nll[:, :1]
                mean, sd = change.mean(0), change.std(0, ddof=1) if len(change) > 1 else np.zeros(change.shape[1])
                for k, lam in enumerate(lams):
                    rows.append({"share": float(share), "vector": VECTOR_LABELS[v], "text": TEXT_LABELS[t],
                                 "lam": float(lam), "mean": float(mean[k]), "lo": float(mean[k] - sd[k]),
                                 "hi": float(mean[k] + sd[k])})
    return pd.DataFrame(rows)


def curves_explorer(frame: pd.DataFrame, *, share0: float = 0.8, vector0: str = "full rank"):
    """An Altair chart: pick the aligned text's share and the negated vector; each text's loss change
    along lambda, mean ± sd over seeds (drawn in the browser from the precomputed table, no kernel)."""
    import altair as alt

    shares = sorted(frame["share"].unique())
    step = round(float(np.diff(shares).min()), 6) if len(shares) > 1 else 1.0
    share = alt.param(name="share", value=share0,
                      bind=alt.binding_range(min=shares[0], max=shares[-1], step=step, name="share "))
    vector = alt.param(name="vector", value=vector0,
                       bind=alt.binding_select(options=list(frame["vector"].unique()), name="vector "))
    names = [TEXT_LABELS[t] for t in TEXTS]
    color = alt.Color("text:N", scale=alt.Scale(domain=names, range=[TEXT_COLORS[t] for t in TEXTS]),
                      legend=alt.Legend(title=None, orient="bottom"))
    base = alt.Chart(frame).transform_filter(
        (alt.expr.abs(alt.datum.share - share) < step / 2) & (alt.datum.vector == vector))
    x = alt.X("lam:Q", title="λ", scale=alt.Scale(reverse=True))
    y = alt.Y("mean:Q", title="loss change from Ψ0′ (nats, mean ± sd over seeds)")
    band = base.mark_area(opacity=0.2).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    line = base.mark_line(point=True).encode(x=x, y=y, color=color)
    # a fixed width: inside a numbered figure the container's width is not known when vega-embed measures it
    return (band + line).add_params(share, vector).properties(width=560, height=280)
