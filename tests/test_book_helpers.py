"""tvlib.book: glued values are plain, tables are formatted and deterministic."""

import numpy as np
import pandas as pd
import pytest

from tvlib.book import _plain, table
from tvlib.rules import agreement


def test_plain_values():
    assert _plain(np.float32(0.5)) == 0.5 and type(_plain(np.float32(0.5))) is float
    assert type(_plain(np.int64(3))) is int
    assert _plain(agreement([1.0, 1.0], 1.0, tol=0.1)) == "agrees"
    with pytest.raises(TypeError, match="list"):
        _plain([1, 2])


def test_table_formats_columns_and_hides_the_index():
    df = pd.DataFrame({"lam": [0.2, -1.0], "error": [0.12345, float("nan")]}, index=[7, 8])
    t1, t2 = table(df, {"lam": "{:.1f}", "error": "{:.3f}"}), table(df, {"lam": "{:.1f}", "error": "{:.3f}"})
    assert t1.html == t2.html and "0.123" in t1.html and "0.12345" not in t1.html
    assert "–" in t1.text and "7" not in t1.text
    with pytest.raises(ValueError, match="nope"):
        table(df, {"nope": "{:.1f}"})


def test_table_headers_rename_columns_for_the_reader():
    df = pd.DataFrame({"frac_large": [0.25], "lam": [1.0]})
    t = table(df, {"frac_large": "{:.1%}", "λ": "{:.2f}"}, headers={"frac_large": "large entries", "lam": "λ"})
    assert "large entries" in t.html and "frac_large" not in t.html and "frac_large" not in t.text
    assert "25.0%" in t.text and "1.00" in t.text
    assert table(df, {}).html == table(df, {}, headers=None).html  # without headers: unchanged
    with pytest.raises(ValueError, match="headers name columns \\['nope'\\]"):
        table(df, {}, headers={"nope": "x"})
    with pytest.raises(ValueError, match="same header"):
        table(df, {}, headers={"frac_large": "lam"})


def test_glue_writes_what_myst_nb_glue_writes(monkeypatch):
    """tvlib.book glues without importing myst_nb (Colab needs no Sphinx), in myst-nb's own format."""
    import IPython.display
    myst_glue = pytest.importorskip("myst_nb.ext.glue")
    import matplotlib.pyplot as plt

    from tvlib import book

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    for value in (0.25, "agrees", fig):
        calls = []
        monkeypatch.setattr(IPython.display, "display", lambda *a, **k: calls.append((a, k)))
        monkeypatch.setattr(myst_glue, "ipy_display", lambda *a, **k: calls.append((a, k)))
        book._glue("x", value)
        myst_glue.glue("x", value, display=False)
        assert len(calls) == 2 and calls[0] == calls[1]
    plt.close(fig)


def _book_extension():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "book" / "_ext" / "tvlib_book.py"
    pytest.importorskip("sphinx")
    pytest.importorskip("pybtex")
    spec = importlib.util.spec_from_file_location("tvlib_book_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_box_titles_are_flat():
    """Restatements read "Theorem 3 of the paper: ..."; the book's own unnumbered box shows its title only;
    numbered boxes are left alone."""
    ext = _book_extension()
    body = (
        '<p class="admonition-title" id="thm-ood"><span class="caption-number">Theorem </span> '
        "(Out-of-domain generalization (Theorem 3 of the paper))</p>\n"
        '<p class="admonition-title"><span class="caption-number">Definition </span> (Conventions)</p>\n'
        '<p class="admonition-title"><span class="caption-number">Definition 2 </span> (Numbered)</p>'
    )
    context = {"body": body}
    ext._flat_box_titles(None, "page", None, context, None)
    out = context["body"]
    assert "Theorem 3 of the paper: Out-of-domain generalization</span>" in out
    assert '<span class="tvlib-box-title">Conventions</span>' in out
    assert "Definition 2 </span> (Numbered)" in out and "((" not in out


def test_fontawesome_icons_are_read_from_the_theme_script():
    ext = _book_extension()
    script = ('var p={bars:[448,512,["navicon"],"f0c9","M0 96z"],"circle-half-stroke":[512,512,[],"f042","M1 2z"]};'
              'd("fas",p);var p={github:[496,512,[],"f09b","M3 4z"]};d("fab",p)')
    packs = ext._fontawesome_packs(script)
    assert packs["fas"]["bars"] == packs["fas"]["navicon"] == (448, 512, "M0 96z")
    assert packs["fas"]["circle-half-stroke"][2] == "M1 2z" and packs["fab"]["github"][2] == "M3 4z"
    assert "github" not in packs["fas"]


def test_references_to_unnumbered_boxes_name_the_box():
    """sphinx-proof writes a bare "Theorem " for a reference to an unnumbered box: it becomes the box's name."""
    from types import SimpleNamespace

    ext = _book_extension()
    from docutils import nodes

    def box(label, title):
        node = nodes.container()
        node["label"], node["title"] = label, title
        return node

    pages = {"book/ood": box("thm-ood", " (Out-of-domain generalization (Theorem 3 of the paper))"),
             "book/setting": box("def-conventions", " (Conventions)")}
    env = SimpleNamespace(proof_list={"thm-ood": {"docname": "book/ood", "nonumber": True},
                                      "def-conventions": {"docname": "book/setting", "nonumber": True}},
                          get_doctree=lambda doc: pages[doc])
    context = {"body": '<a class="reference internal" href="ood.html#thm-ood">Theorem </a>, '
                       '<a class="reference internal" href="setting.html#def-conventions">Definition </a>, '
                       '<a class="reference internal" href="x.html#other">Theorem </a>'}
    ext._name_box_references(SimpleNamespace(env=env), "page", None, context, None)
    assert ">Theorem 3 of the paper</a>" in context["body"] and ">Conventions</a>" in context["body"]
    assert "#other\">Theorem </a>" in context["body"]  # a label it does not know is left alone


def test_figures_are_glued_at_twice_their_dpi_and_shown_at_their_size(monkeypatch):
    """A glued figure is a PNG at HIDPI x its dpi (pHYs says so, for the page's legibility check), with
    the width of the 1x PNG in its metadata (myst-nb writes it on the <img>), and light."""
    import base64
    import io

    import IPython.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from tvlib import book

    fig, ax = plt.subplots(figsize=(4, 3), dpi=150)
    ax.plot(np.linspace(0, 1, 50), np.sin(np.linspace(0, 6, 50)), label="T1")
    ax.legend()
    one = io.BytesIO()
    fig.savefig(one, format="png", dpi=150, bbox_inches="tight")
    w1, h1 = Image.open(io.BytesIO(one.getvalue())).size
    png, size = book.figure_png(fig)
    image = Image.open(io.BytesIO(png))
    assert abs(image.width - 2 * w1) <= 2 and abs(image.height - 2 * h1) <= 2  # tight box: a pixel of rounding
    assert size == {"width": image.width // 2}  # no height: a narrow column keeps the aspect ratio
    assert round(image.info["dpi"][0]) == 300 and image.mode == "P"
    assert len(png) < 2 * len(one.getvalue())  # the palette keeps the 2x PNG about as light as the 1x one
    calls = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: calls.append((a, k)))
    book.glue_figure("fig-x", fig)
    (bundle,), kw = calls[0]
    assert kw["metadata"]["image/png"] == size and kw["metadata"]["scrapbook"]["name"] == "fig-x"
    assert base64.b64decode(bundle[book.GLUE_PREFIX + "image/png"]) == png
    assert fig.number not in plt.get_fignums()  # closed once glued
    with pytest.raises(ValueError, match="scale"):
        book.figure_png(plt.figure(), scale=0)
    plt.close("all")
