"""The book's sources are consistent: chapters listed in _toc.yml exist, every paired .ipynb matches
its .md (the source of truth), and every committed notebook was executed."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SKIP_DIRS = {"_build", ".ipynb_checkpoints"}
NOT_EXECUTED = {"skip-execution"}  # myst-nb tag: the cell is never run, so it has no count


def _files(pattern: str) -> list[Path]:
    """Files under book/ matching pattern, outside build and checkpoint folders."""
    return sorted(p for p in BOOK.rglob(pattern) if not SKIP_DIRS.intersection(p.relative_to(BOOK).parts))


def _front_matter(path: Path) -> dict:
    """The YAML front matter of a markdown file ({} when there is none)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end]) or {}


def _paired_sources() -> list[Path]:
    """Every book/**/*.md whose header has a jupytext section."""
    return [p for p in _files("*.md") if "jupytext" in _front_matter(p)]


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """(type, stripped source, tags) of every cell."""
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def _first_difference(a: list, b: list) -> str:
    """Where two cell lists first differ, in words."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            what = "type" if x[0] != y[0] else "source" if x[1] != y[1] else "tags"
            return f"cell {i} differs in {what} (md: {x[1][:50]!r})"
    return f"{len(a)} cells in the .md, {len(b)} in the .ipynb"


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _toc_files(node: object) -> list[str]:
    """Every `root` and `file` entry of a _toc.yml tree."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(value)
            else:
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def test_toc_chapters_exist() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = _toc_files(toc)
    assert entries, "_toc.yml lists no root and no file"
    missing = [e for e in entries if not (ROOT / (e if e.endswith(".md") else f"{e}.md")).is_file()]
    assert not missing, f"chapters listed in _toc.yml without a .md source: {missing}"


def test_notebooks_match_their_markdown() -> None:
    problems, stale = [], []
    for md in _paired_sources():
        ipynb = md.with_suffix(".ipynb")
        if not ipynb.is_file():
            problems.append(f"{_rel(ipynb)}: missing")
            stale.append(_rel(md))
            continue
        want = _cells(jupytext.read(md))
        have = _cells(nbformat.read(ipynb, as_version=4))
        if want != have:
            problems.append(f"{_rel(ipynb)}: {_first_difference(want, have)}")
            stale.append(_rel(md))
    assert not problems, (
        "notebooks out of sync with their .md source:\n  "
        + "\n  ".join(problems)
        + f"\nre-pair and re-execute them with: bash .ci/run refresh {' '.join(stale)}"
    )


def test_every_notebook_has_a_markdown_source() -> None:
    sources = {md.with_suffix(".ipynb") for md in _paired_sources()}
    orphans = [_rel(nb) for nb in _files("*.ipynb") if nb not in sources]
    assert not orphans, (
        f"notebooks without a paired .md (jupytext header) next to them: {orphans}; "
        "the .md is the source of truth and the only file the site is built from"
    )


@pytest.mark.parametrize("path", _files("*.ipynb"), ids=_rel)
def test_notebook_was_executed(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in code]
    unrun = [
        i
        for i, (c, t) in enumerate(zip(code, tags))
        if c.source.strip() and c.get("execution_count") is None and not t & NOT_EXECUTED
    ]
    hint = f"execute it with: bash .ci/run refresh {_rel(path.with_suffix('.md'))}"
    assert not unrun, f"{_rel(path)}: code cells {unrun} (counting code cells only) were not executed; {hint}"
    assert any(c.get("outputs") for c in code), f"{_rel(path)} has no outputs at all; {hint}"
    errors = [
        i
        for i, (c, t) in enumerate(zip(code, tags))
        if "raises-exception" not in t and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert not errors, f"{_rel(path)}: code cells {errors} stored an error; {hint}"
