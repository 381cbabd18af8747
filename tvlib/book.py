"""The chapters' bookkeeping in one place: glue numbers, words and figures into the text; show tables.

Cells that call these are tagged `remove-cell` (they still run, and nbval still checks them), so the
page shows prose with the glued values, never the calls:

    from tvlib import book
    book.glue(beta_hat=0.021, verdict_add=verdict)  # read by glue:text roles
    book.glue_figure("fig-addition-curves", fig)    # placed by a glue:figure directive
    book.table(df, {"lam": "{:.1f}", "error": "{:.3f}"})  # formatted, no index
    book.table(df, {"lam": "{:.1f}"}, headers={"lam": "λ", "error": "hinge error"})  # the reader's headers
    book.glue(**book.seed_glues("sp_rows", per_seed))  # one number per seed, for tvlib-batch to collect

seed_frame reads such per-seed numbers back from one row of a tvlib-batch table.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["glue", "glue_or_na", "glue_figure", "figure_png", "seed_glues", "seed_frame", "table", "Table"]

# myst-nb's glue format: the value's display data under this mime prefix, named in the output's metadata.
# Written here rather than imported from myst_nb, so a chapter run in Colab or by papermill needs no
# Sphinx stack; tests/test_book_helpers.py checks that it stays identical to myst_nb.glue's output.
GLUE_PREFIX = "application/papermill.record/"


#: Figures are glued as PNGs drawn at this many times their dpi and shown at the size of one (the <img>
#: gets its width), so that high-density screens, phones included, show them sharp.
HIDPI = 2


def _glue(name: str, value: Any, bundle: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> None:
    """Store value's display data (or the given bundle) in the notebook under name, displaying nothing
    (myst_nb.glue, display=False)."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    if bundle is None:
        bundle, metadata = format_display_data(value)
    metadata = dict(metadata or {})
    metadata["scrapbook"] = dict(name=name, mime_prefix=GLUE_PREFIX)
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def figure_png(fig: Any, *, scale: int = HIDPI) -> tuple[bytes, dict[str, int]]:
    """fig as a PNG at scale x its dpi (tight bounding box, as Jupyter draws it), in a 256-colour palette to
    keep it light, and the width at which to show it: that of the PNG at 1x (no height, so that a narrow
    column shrinks the figure without distorting it)."""
    import io

    from PIL import Image

    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale={scale!r}: expected a whole number >= 1")
    dpi = scale * fig.dpi
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(io.BytesIO(raw.getvalue()))
    size = {"width": image.width // scale}
    out = io.BytesIO()
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(out, format="png", optimize=True, dpi=(dpi, dpi))
    return out.getvalue(), size


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
    for key, value in values.items():
        v = _plain(value)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{key}={v}: a glued number must be finite (it is printed in the text)")
        _glue(key, v)


def glue_or_na(**values: Any) -> None:
    """Like glue, except that a number left undefined (NaN or inf, e.g. by a tiny papermill run) is glued as "n/a"."""
    def defined(v: Any) -> bool:
        try:
            return math.isfinite(float(v))
        except (TypeError, ValueError):
            return True  # words and other values are glued as they are

    glue(**{k: (v if defined(v) else "n/a") for k, v in values.items()})


def glue_figure(name: str, fig: Any) -> None:
    """Glue a matplotlib figure (or any displayable, e.g. a tvlib.explore.Explorer) for a glue:figure directive.

    A figure is stored as a PNG at HIDPI x its dpi, shown at its 1x size (figure_png)."""
    if not hasattr(fig, "savefig"):
        _glue(name, fig)
        return
    import base64

    import matplotlib.pyplot as plt

    png, size = figure_png(fig)
    _glue(name, fig, {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": repr(fig)},
          {"image/png": size})
    plt.close(fig)


def seed_glues(prefix: str, frame: Any) -> dict[str, float]:
    """Per-seed numbers to glue (and for tvlib-batch to collect): <prefix>_<column>_s<i> for each finite value
    of a frame with one row per seed, and <prefix>_n_seeds."""
    import numpy as np

    out: dict[str, float] = {f"{prefix}_n_seeds": len(frame)}
    for i, row in frame.reset_index(drop=True).iterrows():
        out.update({f"{prefix}_{k}_s{i}": float(v) for k, v in row.items() if np.isfinite(v)})
    return out


def seed_frame(run: Any, prefix: str, columns: Sequence[str]) -> Any:
    """Inverse of seed_glues on one row of a tvlib-batch table: the per-seed frame (nan where not glued)."""
    import pandas as pd

    n = int(run[f"{prefix}_n_seeds"])
    return pd.DataFrame([{k: float(run.get(f"{prefix}_{k}_s{i}", math.nan)) for k in columns} for i in range(n)])


class Table:
    """A formatted table: HTML for the page, aligned text for a terminal (both deterministic, for nbval)."""

    def __init__(self, html: str, text: str) -> None:
        self.html, self.text = html, text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.html, "text/plain": self.text}


def table(
    df: Any, formats: Mapping[str, str] | str, *, index: bool = False, headers: Mapping[str, str] | None = None
) -> Table:
    """df with each column formatted (one format string for all, or one per column), without the index.

    headers maps column names to the headers the reader sees (words and units, e.g.
    ``{"frac_large": "large entries (%)"}``); formats may name a column by either.
    """
    import hashlib

    if isinstance(formats, Mapping):
        missing = [c for c in formats if c not in df.columns and c not in (headers or {}).values()]
        if missing:
            raise ValueError(f"formats name columns {missing} that df does not have: expected some of {list(df.columns)}")
    if headers:
        unknown = [c for c in headers if c not in df.columns]
        if unknown:
            raise ValueError(f"headers name columns {unknown} that df does not have: expected some of {list(df.columns)}")
        shown_names = [headers.get(c, c) for c in df.columns]
        if len(set(shown_names)) != len(shown_names):
            raise ValueError(f"headers give two columns the same header: {shown_names}")
        if isinstance(formats, Mapping):
            formats = {headers.get(c, c): f for c, f in formats.items()}
        df = df.rename(columns=dict(headers))
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
