"""The chapters' bookkeeping in one place: glue numbers, words and figures into the text; show tables.

Cells that call these are tagged `remove-cell` (they still run, and nbval still checks them), so the
page shows prose with the glued values, never the calls:

    from tvlib import book
    book.glue(beta_hat=0.021, verdict_add=verdict)  # read by glue:text roles
    book.glue_figure("fig-addition-curves", fig)    # placed by a glue:figure directive
    book.table(df, {"lam": "{:.1f}", "error": "{:.3f}"})  # formatted, no index
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["glue", "glue_figure", "table", "Table"]


def _plain(value: Any) -> Any:
    """NumPy/torch scalars as Python floats/ints (myst-nb formats only plain numbers); Verdicts as words."""
    if hasattr(value, "word") and hasattr(value, "holds"):
        return str(value.word)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cannot glue a {type(value).__name__}: expected a number, a string or a Verdict")


def glue(**values: Any) -> None:
    """Glue each keyword as a plain number or word, without displaying it."""
    from myst_nb import glue as _glue

    for key, value in values.items():
        v = _plain(value)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{key}={v}: a glued number must be finite (it is printed in the text)")
        _glue(key, v, display=False)


def glue_figure(name: str, fig: Any) -> None:
    """Glue a matplotlib figure (or any displayable, e.g. a tvlib.explore.Explorer) for a glue:figure directive."""
    from myst_nb import glue as _glue

    _glue(name, fig, display=False)
    if hasattr(fig, "savefig"):
        import matplotlib.pyplot as plt

        plt.close(fig)


class Table:
    """A formatted table: HTML for the page, aligned text for a terminal (both deterministic, for nbval)."""

    def __init__(self, html: str, text: str) -> None:
        self.html, self.text = html, text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.html, "text/plain": self.text}


def table(df: Any, formats: Mapping[str, str] | str, *, index: bool = False) -> Table:
    """df with each column formatted (one format string for all, or one per column), without the index."""
    import hashlib

    if isinstance(formats, Mapping):
        missing = [c for c in formats if c not in df.columns]
        if missing:
            raise ValueError(f"formats name columns {missing} that df does not have: expected some of {list(df.columns)}")
    styler = df.style.format(formats, na_rep="–")
    if not index:
        styler = styler.hide(axis="index")
    text = styler.data.to_string(index=index)
    styler = styler.set_uuid(hashlib.sha1(text.encode()).hexdigest()[:8])
    shown = df.copy()
    for col in shown.columns:
        fmt = formats.get(col) if isinstance(formats, Mapping) else formats
        if fmt:
            shown[col] = [("–" if isinstance(v, float) and math.isnan(v) else fmt.format(v)) for v in shown[col]]
    return Table(styler.to_html(), shown.to_string(index=index))
