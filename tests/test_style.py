"""The book's figure style (tvlib.style): sizes for the column, palette, norms, legends."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from tvlib import style  # noqa: E402


def _png_size(fig) -> tuple[int, int]:
    """Pixel size of the PNG Jupyter's inline backend would make (fig.dpi, tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).size


@pytest.mark.parametrize("ncols", [1, 2, 3])
def test_figure_fits_the_column(ncols):
    with style.context():
        fig, axes = style.subplots(ncols=ncols, nrows=2)
        for i, ax in enumerate(np.ravel(axes)):
            ax.plot([0, 1], [0, 1], color=style.COLORS["T1"], label=style.LABELS["T1"])
            ax.plot([0, 1], [1, 0], color=style.COLORS["T2"], label=style.LABELS["T2"])
            ax.set_xlabel(style.LABELS["lam"])
            ax.set_ylabel(f"accuracy on {style.LABELS['T1']}")
            ax.set_title(f"{style.LABELS['dPsi_T1']} panel {i}")
        style.legend_outside(fig)
        width, _ = _png_size(fig)
    assert fig.dpi >= 150
    assert width <= 800, f"{ncols}-panel figure is {width} px wide"


def test_colorbar_and_right_legend_stay_in_the_column():
    with style.context():
        fig, axes = style.subplots(ncols=3)
        for ax in axes:
            im = ax.imshow(np.random.default_rng(0).normal(size=(8, 8)), cmap=style.DIVERGING,
                           norm=style.centered_norm([-1, 2], 0.0))
            ax.plot([0, 7], [0, 7], color=style.COLORS["Tprime"], label=style.LABELS["Tprime"])
        fig.colorbar(im, ax=axes)
        style.legend_outside(axes[0], loc="outside right upper")
        assert _png_size(fig)[0] <= 800


def test_more_than_three_panels_per_row_is_refused():
    with pytest.raises(ValueError, match="at most 3 panels per row"):
        style.subplots(ncols=4)
    with pytest.raises(ValueError, match="at most 3 panels per row"):
        style.figsize(ncols=4)
    with pytest.raises(ValueError, match="fraction of the column"):
        style.figsize(ncols=1, width=1.5)


def test_text_is_readable_when_displayed():
    keys = ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize",
            "legend.fontsize", "figure.titlesize")
    sizes = [style.RC[k] for k in keys]
    assert sizes and min(sizes) >= style.MIN_FONT_PT
    assert style.displayed_pt(style.MIN_FONT_PT) >= 9
    # a full-width figure is shown at its own size: no downscaling that would shrink the text
    assert style.FULL_WIDTH * style.DPI <= 800


def test_task_colours_are_distinct_okabe_ito():
    palette = {c.upper() for c in style.OKABE_ITO.values()}
    roles = [style.COLORS[k].upper() for k in ("T1", "T2", "Tprime")]
    assert len(set(roles)) == 3
    assert set(roles) <= palette
    assert style.COLORS["T'"] == style.COLORS["T′"] == style.COLORS["Tprime"]
    assert {style.COLORS[k].upper() for k in ("base", "merged", "control", "theory")} <= palette


def test_colormaps_are_perceptually_uniform_or_diverging():
    assert style.SEQUENTIAL in {"viridis", "cividis"} and style.SEQUENTIAL_ALT in {"viridis", "cividis"}
    assert style.DIVERGING in {"RdBu", "RdBu_r", "PuOr", "PuOr_r"}
    assert matplotlib.colormaps[style.DIVERGING] is not None


@pytest.mark.parametrize("values, center", [([0.2, 0.9], 0.5), ([0.6, 0.9], 0.5), ([0.1, 0.3], 0.5), ([0.5], 0.5)])
def test_centered_norm_maps_the_threshold_to_the_middle(values, center):
    norm = style.centered_norm(values, center)
    assert norm(center) == pytest.approx(0.5)
    assert norm.vmin < center < norm.vmax
    for v in values:  # each value on its own side of the middle
        assert (norm(v) - 0.5) * (v - center) >= 0


def test_legend_outside_collects_each_label_once():
    with style.context():
        fig, axes = style.subplots(ncols=2)
        for ax in axes:
            ax.plot([0, 1], [0, 1], label=style.LABELS["T1"])
            ax.plot([0, 1], [1, 0], label=style.LABELS["T2"])
            ax.legend()
        legend = style.legend_outside(fig)
        assert [t.get_text() for t in legend.get_texts()] == [style.LABELS["T1"], style.LABELS["T2"]]
        assert all(ax.get_legend() is None for ax in axes)
        plt.close(fig)


def test_labels_are_mathtext_that_renders():
    for key, label in style.LABELS.items():
        assert "$" in label, key
        matplotlib.mathtext.math_to_image(label, io.BytesIO(), format="png")


def test_use_sets_the_style_and_context_restores():
    before = dict(matplotlib.rcParams)
    with style.context():
        assert matplotlib.rcParams["figure.dpi"] == style.DPI
        assert mcolors.to_hex(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0]).upper() == style.COLORS["T1"]
    assert matplotlib.rcParams["figure.dpi"] == before["figure.dpi"]
    try:
        style.use()
        assert matplotlib.rcParams["savefig.dpi"] == style.DPI
    finally:
        matplotlib.rcParams.update(before)


def test_site_checks_use_the_style_sizes():
    """The website's figure-legibility script and the browser test assume the style's smallest font and dpi."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    js = (root / "book" / "_static" / "tvlib.js").read_text()
    m = re.search(r"MIN_FONT_PT = (\d+), STYLE_DPI = (\d+), DEFAULT_DPI = (\d+)", js)
    from tvlib import book  # figures are glued at HIDPI x the style's dpi: an unreadable PNG is taken to be one

    assert m and (int(m[1]), int(m[2]), int(m[3])) == (style.MIN_FONT_PT, style.DPI, style.DPI * book.HIDPI)
    test = (root / "tests" / "test_browser.py").read_text()
    m = re.search(r"^MIN_FONT_PT, FIGURE_DPI = (\d+), (\d+)", test, re.M)
    assert m and (int(m[1]), int(m[2])) == (style.MIN_FONT_PT, style.DPI)
