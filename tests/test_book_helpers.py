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
