"""Every chapter runs outside the repository, as a Colab or papermill user runs it, at tiny sizes.

`bash .ci/run outside` builds tvlib's wheel, installs it (not editable) into a fresh virtual
environment outside the repository, and sets TVLIB_OUTSIDE_PYTHON to that environment's interpreter.
Then each chapter's .ipynb is copied alone into an empty folder and executed there by papermill with
the overrides below (tiny sizes, reduced grids: they never change what a chapter computes), so a
chapter that reads a file relative to the repository, or imports what its install cell does not
install, fails here. Every third-party module that the chapter's code or tvlib imports must come from
the chapter's extra (the `tvlib[...]` of its Colab install cell): outside/sitecustomize.py records
those imports in the kernel, and the test maps them to distributions.

Without TVLIB_OUTSIDE_PYTHON these tests are skipped (run them with `bash .ci/run outside`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = Path(__file__).resolve().parent / "outside"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from tvlib_repository import REQUIREMENT  # noqa: E402

# chapter -> papermill parameters for a run of a few seconds
SMOKE: dict[str, dict] = {
    "setting": dict(m=16, steps=20),
    "finetuning": dict(m=16, steps=20, runs=2, n_eval=200, runs_per_lr=2, delta_stars=[0.3, 0.4],
                       lrs=[0.5, 1.0], v_stds=[0.01, 0.3]),
    "addition": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "negation": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "ood": dict(m=16, steps=20, seeds=[0, 1], n_eval=40, lam_step=0.5),
    "lowrank": dict(m=16, steps=20, seeds=[0, 1], n_eval=40),
    "sparse": dict(m=32, steps=20, seeds=[0, 1], n_eval=40),
    "images": dict(pre_epochs=1, ft_epochs=1, seeds=[0, 1], lam_min=-0.4, lam_max=1.0, ood_min=-0.4,
                   ood_max=0.4, dim=16, depth=1, heads=2, mlp_dim=32),
    "unlearning": dict(n_sentences=40, base_epochs=1.0, epochs=1.0, lora_epochs=1.0, n_prompts=4,
                       lams=[0.0, -1.0], n_alpha_blocks=4),
    "scale": dict(delta_hashes=[0.05], seeds=[0]),
    "pretrained": dict(n_train=64, n_test=32, steps=3, lam_step=1.0, ood_step=1.0, ranks=[1, 8], keeps=[0.5, 1.0]),
}
# Chapters that run a companion notebook, which must sit beside them (the scale page batches `setting`,
# and has no Colab button: its extra is named here instead of in an install cell).
COMPANIONS = {"scale": ["setting"]}
NO_INSTALL_CELL = {"scale": "toy,batch"}
# The kernel itself (ipykernel, IPython and what they import) is there wherever a notebook runs.
KERNEL = ["ipykernel"]


def _chapters() -> list[str]:
    """Every paired chapter (book/<x>.md with a jupytext header and an .ipynb)."""
    return sorted(p.stem for p in (ROOT / "book").glob("*.md")
                  if p.with_suffix(".ipynb").exists() and p.read_text(encoding="utf-8").startswith("---\njupytext:"))


def extra_of(chapter: str) -> str:
    """The extra a chapter's Colab install cell installs (e.g. "toy")."""
    if chapter in NO_INSTALL_CELL:
        return NO_INSTALL_CELL[chapter]
    found = REQUIREMENT.findall((ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8"))
    assert len(found) == 1, f"book/{chapter}.md: expected one Colab install cell naming tvlib[<extra>], found {len(found)}"
    return found[0][0]


def test_every_chapter_has_tiny_sizes_and_an_extra():
    for chapter in _chapters():
        if chapter in ("merging",):  # no parameters cell: it runs as it is, in about a minute
            extra_of(chapter)
            continue
        assert chapter in SMOKE, f"book/{chapter}.md has no tiny parameters in tests/test_smoke.py SMOKE"
        extra_of(chapter)


@pytest.fixture(scope="session")
def outside_python() -> str:
    py = os.environ.get("TVLIB_OUTSIDE_PYTHON")
    if not py:
        pytest.skip("run by `bash .ci/run outside` (a wheel installed in a fresh environment)")
    where = subprocess.run([py, "-c", "import tvlib, sys; print(tvlib.__file__)"], cwd="/", capture_output=True,
                           text=True, check=True).stdout.strip()
    assert str(ROOT) not in where, f"{py} imports tvlib from the repository ({where}): expected an installed wheel"
    return py


def _allowed_distributions(py: str, extra: str) -> set[str]:
    out = subprocess.run([py, str(OUTSIDE / "closure.py"), extra, *KERNEL], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


def _foreign_imports(py: str, log: Path, allowed: set[str]) -> dict[str, str]:
    """Top-level modules imported by the chapter or tvlib whose distribution is not in `allowed` -> importer."""
    code = (OUTSIDE / "distributions.py").read_text()
    records: dict[str, str] = {}
    for part in sorted(log.parent.glob(log.name + ".*")):  # one file per process
        for line in part.read_text().splitlines():
            r = json.loads(line)
            records.setdefault(r["module"], r["by"])
    assert records, f"no imports recorded in {log}.*: tests/outside/sitecustomize.py was not loaded by the kernel"
    out = subprocess.run([py, "-c", code], input=json.dumps(sorted(records)), capture_output=True, text=True,
                         check=True).stdout
    dists = json.loads(out)  # module -> [distributions] ([] for the standard library or tvlib)
    return {m: f"{records[m]} (from {', '.join(d)})" for m, d in dists.items() if d and not set(d) & allowed}


@pytest.mark.parametrize("chapter", [c for c in _chapters()])
def test_chapter_runs_outside_the_repository(chapter, tmp_path, outside_python):
    work = tmp_path / "colab"
    work.mkdir()
    for name in [chapter, *COMPANIONS.get(chapter, [])]:
        shutil.copy(ROOT / "book" / f"{name}.ipynb", work / f"{name}.ipynb")
    params = tmp_path / "params.json"
    params.write_text(json.dumps(SMOKE.get(chapter, {})))
    log = tmp_path / "imports.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(OUTSIDE), TVLIB_IMPORT_LOG=str(log), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    run = subprocess.run([outside_python, "-m", "papermill", f"{chapter}.ipynb", "out.ipynb", "-f", str(params),
                          "--kernel", "python3", "--no-progress-bar"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=900)
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
        pytest.fail(f"book/{chapter}.ipynb failed outside the repository:\n{tail}")
    foreign = _foreign_imports(outside_python, log, _allowed_distributions(outside_python, extra_of(chapter)))
    assert not foreign, (f"book/{chapter}.ipynb imports what tvlib[{extra_of(chapter)}] does not install: "
                         + "; ".join(f"{m} by {w}" for m, w in sorted(foreign.items())))


def test_install_cells_follow_config():
    from tvlib_repository import check

    assert check() == []


def test_jupytext_script_of_every_chapter_parses():
    """`jupytext --to py book/<chapter>.md` gives a Python script that parses (no magics hidden in blocks)."""
    import ast

    jupytext = pytest.importorskip("jupytext")
    for chapter in _chapters():
        script = jupytext.writes(jupytext.read(ROOT / "book" / f"{chapter}.md"), fmt="py:percent")
        try:
            ast.parse(script)
        except SyntaxError as e:
            pytest.fail(f"jupytext --to py book/{chapter}.md: line {e.lineno}: {e.msg}: {e.text!r}")


def test_chapters_read_no_files_relative_to_the_working_directory():
    """A chapter reads committed tables through tvlib.tables, never through a path like data/x.csv."""
    bad = []
    for chapter in _chapters():
        text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
        bad += [f"book/{chapter}.md: {m}" for m in re.findall(r"(?:read_csv|read_json|open)\(['\"][^'\"]+['\"]", text)]
    assert not bad, "\n".join(bad)


def test_pointing_the_book_at_a_fork_rewrites_config_and_every_install_cell(tmp_path, monkeypatch):
    import tvlib_repository as repo

    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    for md in repo.chapters():
        for path in (md, md.with_suffix(".ipynb")):
            shutil.copy(path, tmp_path / "book" / path.name)
    extras = {md.stem: extra_of(md.stem) for md in repo.chapters()}
    monkeypatch.setattr(repo, "ROOT", tmp_path)
    monkeypatch.setattr(repo, "CONFIG", tmp_path / "_config.yml")
    monkeypatch.setattr(repo, "BOOK", tmp_path / "book")
    changed = repo.set_repository("https://github.com/me/fork/", "dev")
    assert repo.read_config() == ("https://github.com/me/fork", "dev")
    assert repo.check() == [] and len(changed) == 1 + 2 * len(extras)
    for chapter, extra in extras.items():
        nb = json.loads((tmp_path / "book" / f"{chapter}.ipynb").read_text())
        before = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())
        assert [c.get("outputs") for c in nb["cells"]] == [c.get("outputs") for c in before["cells"]]
        assert f'"tvlib[{extra}] @ git+https://github.com/me/fork@dev"' in (tmp_path / "book" / f"{chapter}.md").read_text()
    with pytest.raises(SystemExit, match="expected the https address"):
        repo.set_repository("git@github.com:me/fork.git", "main")
