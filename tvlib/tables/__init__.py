"""The committed multi-seed tables the chapters read, shipped inside the package.

A chapter's table parameter is either the *name* of a table in this folder (`"images-seeds.csv"`),
found through the installed package wherever the chapter runs (a clone, papermill from any folder,
an installed wheel, Colab), or a *path* to a CSV of your own (it contains a `/`), for example the
output of `tvlib-batch collect` after regenerating a table:

    from tvlib import tables
    runs = tables.read("images-seeds.csv")            # the committed table
    runs = tables.read("runs/my-images-seeds.csv")    # a table you made
    manifest = tables.manifest("images-seeds.csv")    # its grid, command and per-run parameters

`tables.names()` lists the committed tables; `tables.folder()` is where they live in a clone, the
place to write a regenerated table (`tvlib-batch collect --csv tvlib/tables/<name>`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["path", "read", "manifest", "names", "folder"]


def folder() -> Path:
    """The folder of the committed tables (inside the installed package)."""
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The committed tables and manifests, sorted."""
    return sorted(p.name for p in folder().iterdir() if p.suffix in (".csv", ".json"))


def path(name: str) -> Path:
    """The file a table parameter names: a committed table's name, or a path (with a '/') to a CSV of one's own."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"table={name!r}: expected the name of a committed table ({', '.join(names())}) "
                         "or a path to a CSV file")
    if "/" in name or "\\" in name:
        p = Path(name).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"table {name!r}: no such file (looked for {p.resolve()}); expected a path to "
                                    f"a CSV file, or the name of a committed table: {', '.join(names())}")
        return p
    p = folder() / name
    if not p.is_file():
        raise FileNotFoundError(f"table {name!r} is not one of the committed tables ({', '.join(names())}); "
                                "a table of your own is given as a path containing '/', e.g. ./my-table.csv")
    return p


def read(name: str, **kwargs: Any):
    """The table as a pandas DataFrame (keyword arguments go to pandas.read_csv)."""
    import pandas as pd

    return pd.read_csv(path(name), **kwargs)


def manifest(name: str) -> dict[str, Any]:
    """The manifest written beside a table by tvlib-batch collect (<stem>.manifest.json) as a dict."""
    p = path(name)
    m = p.with_name(p.name.removesuffix(".csv") + ".manifest.json")
    if not m.is_file():
        raise FileNotFoundError(f"table {name!r} has no manifest: expected {m}")
    return json.loads(m.read_text())
