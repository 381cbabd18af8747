"""Every chapter's parameters cell mirrors a tvlib Params dataclass, and the dataclasses check their values."""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import MISSING, fields
from pathlib import Path

import jupytext
import pytest

import tvlib
from tvlib.params import Params

ROOT = Path(__file__).resolve().parents[1]


def _all_params() -> dict[str, type[Params]]:
    """chapter name -> its Params class, from every tvlib module (importing them all)."""
    for mod in pkgutil.walk_packages(tvlib.__path__, "tvlib."):
        importlib.import_module(mod.name)
    found: dict[str, type[Params]] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            if sub.__dict__.get("chapter"):
                assert sub.chapter not in found, f"two Params classes for chapter {sub.chapter}"
                found[sub.chapter] = sub
            walk(sub)

    walk(Params)
    return found


def _cell_values(chapter: str) -> dict[str, object] | None:
    """The names assigned by the chapter's cell tagged parameters, evaluated (None if it has none)."""
    nb = jupytext.read(ROOT / "book" / f"{chapter}.md")
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        return None
    ns: dict[str, object] = {}
    exec(cells[0].source, {}, ns)  # plain (annotated) assignments of literals, by the book's convention
    ns.pop("__annotations__", None)
    return ns


def _chapters_with_parameters() -> list[str]:
    out = []
    for md in sorted((ROOT / "book").glob("*.md")):
        if md.read_text(encoding="utf-8").startswith("---\njupytext:") and _cell_values(md.stem) is not None:
            out.append(md.stem)
    return out


PARAMS = _all_params()
CHAPTERS = _chapters_with_parameters()


def _same(a: object, b: object) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b)
    return a == b


def test_every_chapter_with_parameters_has_a_params_class():
    missing = [c for c in CHAPTERS if c not in PARAMS]
    assert not missing, f"chapters whose parameters cell has no tvlib Params class (chapter = ...): {missing}"


@pytest.mark.parametrize("chapter", sorted(PARAMS))
def test_chapter_cell_matches_its_dataclass(chapter):
    cls = PARAMS[chapter]
    cell = _cell_values(chapter)
    assert cell is not None, f"book/{chapter}.md has no cell tagged parameters"
    names = {f.name for f in fields(cls)}
    assert not set(cell) - names, f"{chapter}: cell parameters missing from {cls.__name__}: {sorted(set(cell) - names)}"
    assert not names - set(cell), f"{chapter}: {cls.__name__} fields missing from the cell: {sorted(names - set(cell))}"
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        assert _same(cell[f.name], default), f"{chapter}: {f.name} = {cell[f.name]!r} in the cell, {default!r} in {cls.__name__}"
    cls.from_cell(cell)  # the defaults pass the checks


def test_dependent_parameters_are_checked_together():
    from tvlib.toy.params import NegationParams

    with pytest.raises(ValueError, match=r"curve_alphas \[-0.8, 0.8\] not in alphas"):
        NegationParams(alphas=[-0.4, 0.0, 0.4])
    with pytest.raises(ValueError, match="lam_min"):
        NegationParams(lam_min=1.0, lam_max=-1.0)
    with pytest.raises(ValueError, match="not defined"):
        NegationParams.from_cell({"d": 24})


GRIDS = sorted((ROOT / "grids").glob("*.yaml"))


@pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
def test_grid_files_name_their_chapter_and_pass_its_checks(path):
    """grids/<chapter>-<what>.yaml: every parameter belongs to the chapter, every run's values pass its Params."""
    import itertools

    from tvlib.batch import load_grid

    chapter = path.stem.split("-")[0]
    assert chapter in PARAMS, f"{path.name}: expected grids/<chapter>-<what>.yaml with a chapter among {sorted(PARAMS)}"
    cls = PARAMS[chapter]
    grid = load_grid(path)
    names = {f.name for f in fields(cls)}
    unknown = sorted((set(grid.fixed) | set(grid.sweep)) - names)
    assert not unknown, f"{path.name}: parameters {unknown} are not parameters of book/{chapter}.md"
    base = {f.name: getattr(cls(), f.name) for f in fields(cls)}
    for combo in itertools.product(*grid.sweep.values()):
        cls.from_cell({**base, **grid.fixed, **dict(zip(grid.sweep, combo))})


@pytest.mark.parametrize("chapter", sorted(PARAMS))
def test_a_misspelt_parameter_is_refused_with_the_valid_names(chapter):
    """papermill's `-p sedds 3` (or a typo in the cell) stops the chapter at once, listing its parameters."""
    cls = PARAMS[chapter]
    cell = _cell_values(chapter)
    first = next(iter(cell))
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    ns = {**cell, typo: cell[first], "np": math, "CONSTANT": 3, "_private": 1, "In": [], "Out": {}}
    with pytest.raises(ValueError, match=rf"unknown parameter '{typo}'.*parameters are {first}, "):
        cls.from_cell(ns)
    ns.pop(typo)
    cls.from_cell(ns)  # modules, CONSTANTS, private and IPython names are not parameters


def test_unknown_names_are_checked_on_a_namespace_first_call_only():
    """In a kernel that has run the chapter, its own variables are not mistaken for parameters."""
    from tvlib.toy.params import SettingParams

    ns = dict(_cell_values("setting"))
    SettingParams.from_cell(ns)
    ns["fig_width"] = 3.0  # a variable of the chapter, defined after the first call
    SettingParams.from_cell(ns)


def test_tables_resolve_by_name_or_path(tmp_path, monkeypatch):
    from tvlib import tables

    assert "images-seeds.csv" in tables.names()
    assert tables.path("images-seeds.csv").is_file() and len(tables.read("ood-edges.csv")) > 0
    assert tables.manifest("images-seeds.csv")["grid"]
    own = tmp_path / "mine.csv"
    own.write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    assert tables.read("./mine.csv")["b"].tolist() == [2]
    with pytest.raises(FileNotFoundError, match="is not one of the committed tables"):
        tables.path("images-seed.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        tables.path("data/images-seeds.csv")  # the old path relative to book/ is not a table
    with pytest.raises(FileNotFoundError, match="widths_table: table 'nope.csv'"):
        from tvlib.toy.params import SparseParams

        SparseParams(widths_table="nope.csv")


def test_zero_steps_are_refused():
    from tvlib.toy.params import AdditionParams

    with pytest.raises(ValueError, match="steps=0: expected an integer >= 1"):
        AdditionParams(steps=0)
