"""Collect tvlib-batch runs into one table (every scalar a notebook glued), and plot it."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure
    from nbformat import NotebookNode



from ..vectors.io import atomic_path
from .grid import _KEY, _WRAPPED_NUMBER, MANIFEST, METRICS

__all__ = ["scrape_metrics", "collect", "plot_metric", "write_figures"]


def _finished(out: Path) -> dict[str, tuple[Path, str]]:
    """Run key -> (folder, status) of every complete run folder under `out`."""
    found: dict[str, tuple[Path, str]] = {}
    if not out.is_dir():
        return found
    for folder in sorted(out.iterdir()):
        match = _KEY.search(folder.name)
        if folder.name.startswith(".") or not match or not folder.is_dir():
            continue
        try:
            status = json.loads((folder / MANIFEST).read_text())["status"]
        except (OSError, ValueError, KeyError):
            status = "unreadable"
        found[match[1]] = (folder, status)
    return found


# ----------------------------------------------------------------------------------- metrics


def scrape_metrics(nb: NotebookNode) -> tuple[dict[str, float | int], list[str]]:
    """Scalars glued with myst_nb.glue (or scrapbook) in an executed notebook, and the names of non-scalar glues."""
    metrics: dict[str, float | int] = {}
    other: list[str] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            data = output.get("data", {})
            if not meta or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "")
            bundle = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in data.items()}
            value = None
            for mime, payload in bundle.items():
                if mime.endswith("scrapbook.scrap.json+json") and isinstance(payload, Mapping):
                    value = _as_number(payload.get("data"))
            if value is None and "application/json" in bundle:
                value = _as_number(bundle["application/json"])
            if value is None and "text/plain" in bundle:
                text = bundle["text/plain"]
                value = _parse_scalar("".join(text) if isinstance(text, list) else str(text))
            name = str(meta["name"])
            if value is None:
                metrics.pop(name, None)
                other.append(name)
            else:
                metrics[name] = value
                if name in other:
                    other.remove(name)
    return metrics, other


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


def _parse_scalar(text: str) -> float | int | None:
    """A number from a text/plain repr: 0.5, 3, True, nan, np.float64(0.5), tensor(0.5000)."""
    text = text.strip()
    try:
        return _as_number(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    match = _WRAPPED_NUMBER.match(text)
    number = match[1] if match else text
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value) if re.fullmatch(r"[-+]?\d+", number) else value


# ----------------------------------------------------------------------------------- collect


def collect(out_dir: str | os.PathLike[str] = "runs") -> pd.DataFrame:
    """One row per finished run under `out_dir`: swept parameters, then metrics, then status and wall time."""
    import pandas as pd

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"output folder '{out}' does not exist")
    rows, swept, metric_names = [], [], []
    for key, (folder, _) in sorted(_finished(out).items(), key=lambda kv: kv[1][0].name):
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        try:
            metrics = json.loads((folder / METRICS).read_text())
        except (OSError, ValueError):
            metrics = {}
        swept += [n for n in manifest.get("swept", []) if n not in swept]
        metric_names += [n for n in metrics if n not in metric_names]
        params = manifest.get("parameters", {})
        rows.append({"run": folder.name, **{n: params.get(n) for n in manifest.get("swept", [])}, **metrics,
                     "status": manifest.get("status"), "wall_s": manifest.get("wall_s")})
    metric_names = [m for m in metric_names if m not in swept and m not in ("run", "status", "wall_s")]
    df = pd.DataFrame(rows, columns=["run", *swept, *metric_names, "status", "wall_s"]).set_index("run")
    if swept and len(df):
        with contextlib.suppress(TypeError):
            df = df.sort_values(swept, kind="stable")
    df.attrs["swept"] = swept
    df.attrs["metrics"] = metric_names
    return df


def _is_seed(name: str) -> bool:
    return "seed" in name.lower()


def _plottable(df: pd.DataFrame) -> list[str]:
    """Swept parameters with numeric values and at least two of them (seeds are averaged over, not plotted)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [
        p for p in df.attrs.get("swept", [])
        if not _is_seed(p) and is_numeric_dtype(df[p]) and not is_bool_dtype(df[p]) and df[p].nunique() > 1
    ]


def plot_metric(df: pd.DataFrame, metric: str, param: str, ax: Any = None) -> Figure:
    """`metric` against `param` over the runs with status ok: mean as a line, min-max over the other parameters as a band."""
    import matplotlib.pyplot as plt

    for name in (metric, param):
        if name not in df.columns:
            raise KeyError(f"column {name!r} is not in the table; columns: {', '.join(map(str, df.columns))}")
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    stats = ok.groupby(param)[metric].agg(["mean", "min", "max", "count"]).sort_index()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    else:
        fig = ax.figure
    x = stats.index.to_numpy(dtype=float)
    (line,) = ax.plot(x, stats["mean"], "o-", label="mean")
    ax.fill_between(x, stats["min"], stats["max"], color=line.get_color(), alpha=0.2, lw=0, label="min-max")
    if len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 100:
        ax.set_xscale("log")
    if len(x) <= 8:
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
    counts = sorted(set(stats["count"].astype(int)))
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    ax.set(xlabel=param, ylabel=metric, title=f"{metric} vs {param} ({runs} runs per point)")
    ax.legend(frameon=False)
    if fig.get_layout_engine() is None:  # a figure made under tvlib.style already lays itself out
        fig.tight_layout()
    return fig


def write_figures(df: pd.DataFrame, directory: str | os.PathLike[str]) -> list[Path]:
    """One PNG per (metric, swept numeric parameter) from `plot_metric`, written atomically into `directory`."""
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for param in _plottable(df):
        for metric in df.attrs.get("metrics", []):
            if not df[metric].notna().any():
                continue
            fig = plot_metric(df, metric, param)
            path = directory / re.sub(r"[^A-Za-z0-9._=-]+", "-", f"{metric}__vs__{param}.png")
            try:
                with atomic_path(path, suffix=".png") as tmp:
                    fig.savefig(tmp, dpi=120, format="png")
            finally:
                plt.close(fig)
            written.append(path)
    return written
