"""One figure style for the whole book: colour-blind-safe colours, readable sizes, mathtext labels.

Drawn for the website's ~800 px text column: a full-width figure is ``FULL_WIDTH`` inches at
``DPI`` dots per inch (750 px), so it is shown at its own size and its text (7-8 pt at 150 dpi) is
displayed at 10-12 pt; at most three panels per row. Usage in a chapter::

    from tvlib import style

    style.use()                                      # once, in the imports cell
    fig, axes = style.subplots(ncols=2)              # sized for the column, at most 3 per row
    axes[0].plot(lams, acc1, color=style.COLORS["T1"], label=style.LABELS["T1"])
    axes[0].plot(lams, acc2, color=style.COLORS["T2"], label=style.LABELS["T2"])
    axes[0].set_xlabel(style.LABELS["lam"])
    im = axes[1].imshow(margin, cmap=style.DIVERGING, norm=style.centered_norm(margin, 0.0))
    fig.colorbar(im, ax=axes[1])
    style.legend_outside(fig)                        # one legend, below the panels

``with style.context(): ...`` applies the style to one block only. Colours are Okabe & Ito's
palette (distinguishable with every common colour-vision deficiency); sequential maps are viridis
or cividis; diverging maps use ``DIVERGING`` with a norm centred on the threshold that matters.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.colors import TwoSlopeNorm

DPI = 150
COLUMN_PX = 750  # + matplotlib's 0.1 in "tight" padding per side: at most 780 px
FULL_WIDTH = COLUMN_PX / DPI  # inches: a full-width figure renders COLUMN_PX pixels wide
MAX_COLS = 3

#: Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: A fixed colour for every role, the same in every chapter.
COLORS = {
    "T1": OKABE_ITO["blue"],
    "T2": OKABE_ITO["vermillion"],
    "Tprime": OKABE_ITO["bluish_green"],
    "base": OKABE_ITO["black"],
    "merged": OKABE_ITO["orange"],
    "control": OKABE_ITO["reddish_purple"],
    "theory": OKABE_ITO["sky_blue"],
}
COLORS["T'"] = COLORS["T′"] = COLORS["Tprime"]

#: Line styles that tell the roles apart without colour (print, colour-vision deficiencies).
LINESTYLES = {"T1": "-", "T2": "--", "Tprime": "-.", "base": ":", "merged": "-", "control": ":", "theory": "--"}

SEQUENTIAL = "viridis"
SEQUENTIAL_ALT = "cividis"
DIVERGING = "RdBu"  # red below the centre, blue above; never red against green

#: Mathtext labels in the paper's notation.
LABELS = {
    "T1": r"$T_1$",
    "T2": r"$T_2$",
    "Tprime": r"$T'$",
    "Psi0": r"$\Psi^{(0)}$",
    "PsiStar_T1": r"$\Psi^*_{T_1}$",
    "PsiStar_T2": r"$\Psi^*_{T_2}$",
    "dPsi": r"$\Delta\Psi$",
    "dPsi_T1": r"$\Delta\Psi_{T_1}$",
    "dPsi_T2": r"$\Delta\Psi_{T_2}$",
    "dPsi_Tprime": r"$\Delta\Psi_{T'}$",
    "dPsi_forget": r"$\Delta\Psi_{\mathrm{forget}}$",
    "dW": r"$\Delta W$",
    "lam": r"$\lambda$",
    "lam1": r"$\lambda_1$",
    "lam2": r"$\lambda_2$",
    "alpha": r"$\alpha$",
    "alpha_hat": r"$\hat\alpha$",
    "beta": r"$\beta$",
    "beta_hat": r"$\hat\beta$",
    "rank": r"rank $r$",
    "delta_star": r"$\delta_*$",
}
LABELS["T'"] = LABELS["Tprime"]

RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (FULL_WIDTH * 0.7, FULL_WIDTH * 0.7 * 0.7),
    "figure.constrained_layout.use": True,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
    "image.cmap": SEQUENTIAL,
    "axes.prop_cycle": mpl.cycler(
        color=[COLORS[k] for k in ("T1", "T2", "Tprime", "merged", "theory", "control", "base")]
    ),
}
MIN_FONT_PT = 7  # at DPI, shown at its own size: 7 pt * 150/96 = 10.9 pt displayed (>= 9 pt)


def use() -> None:
    """Apply the book's style to every figure drawn from now on."""
    mpl.rcParams.update(RC)


def context():
    """The book's style for one ``with`` block only."""
    return mpl.rc_context(RC)


def figsize(ncols: int = 1, nrows: int = 1, width: float | None = None, aspect: float = 0.75) -> tuple[float, float]:
    """Figure size in inches for ``nrows`` x ``ncols`` panels in the column (at most 3 per row).

    ``width`` is the fraction of the column (default: 0.7 for one panel, the full column otherwise);
    ``aspect`` is each panel's height over its width.
    """
    if not 1 <= ncols <= MAX_COLS:
        raise ValueError(
            f"ncols={ncols}: at most {MAX_COLS} panels per row fit the ~800 px column; "
            "use more rows, or split the figure"
        )
    if nrows < 1:
        raise ValueError(f"nrows={nrows}: expected at least 1")
    fraction = (0.7 if ncols == 1 else 1.0) if width is None else width
    if not 0 < fraction <= 1:
        raise ValueError(f"width={width}: a fraction of the column, in (0, 1]")
    w = FULL_WIDTH * fraction
    return (w, nrows * (w / ncols) * aspect + 0.35)


def subplots(ncols: int = 1, nrows: int = 1, *, width: float | None = None, aspect: float = 0.75, **kwargs):
    """``plt.subplots`` sized for the column with at most three panels per row (``ValueError`` above)."""
    import matplotlib.pyplot as plt

    kwargs.setdefault("layout", "constrained")
    kwargs.setdefault("dpi", DPI)
    return plt.subplots(nrows, ncols, figsize=figsize(ncols, nrows, width, aspect), **kwargs)


def legend_outside(where, loc: str = "outside lower center", **kwargs):
    """One legend for a figure (or for one Axes' figure) outside the data, without duplicate labels.

    Needs a constrained layout (``subplots`` sets it); ``loc`` is any of matplotlib's
    ``"outside ..."`` locations, e.g. ``"outside right upper"``.
    """
    fig = where.figure if hasattr(where, "get_legend_handles_labels") else where
    axes = [where] if fig is not where else fig.axes
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if "lower" in loc or "upper center" in loc:
        kwargs.setdefault("ncols", min(len(seen), 4) or 1)
    return fig.legend(list(seen.values()), list(seen.keys()), loc=loc, **kwargs)


def centered_norm(values, center: float = 0.0) -> TwoSlopeNorm:
    """A diverging norm with ``center`` (e.g. a theorem's threshold) at the colormap's midpoint."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (center - 1.0, center + 1.0)
    span = max(center - lo, hi - center, 1e-12)  # a side with no data mirrors the other
    return TwoSlopeNorm(vcenter=center, vmin=lo if lo < center else center - span, vmax=hi if hi > center else center + span)


def displayed_pt(font_pt: float, dpi: float = DPI, scale: float = 1.0) -> float:
    """Size in CSS points at which text of ``font_pt`` appears in a PNG drawn at ``dpi`` and shown at ``scale``."""
    return font_pt * dpi / 96 * scale
