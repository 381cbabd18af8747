"""Run a book notebook over a grid of papermill parameters, resumably, and collect the results.

Layout of an output folder (``runs/`` by default)::

    runs/
      <notebook>_<swept values>-<key>/  a finished run (ok or failed)
        <notebook>.ipynb                the executed notebook
        metrics.json                    every scalar glued with myst_nb.glue
        manifest.json                   parameters, seeds, versions, git, device, times
        run.log                         the cells' output (and a failure's traceback)
      .partial-<folder>-<host>-<pid>/   a run in progress (never read by collect)

A run is built in its ``.partial-`` sibling and renamed into place only when its manifest is
written, so a folder under its final name is always a complete record. ``key`` is a hash of
the notebook's name and the grid's parameters of that run (not of the device the runner adds),
so re-running the same command skips finished runs, redoes failed or interrupted ones, and a
run keeps its folder on every machine. Heavy dependencies (papermill, jupytext, pyyaml, pandas,
matplotlib; the ``book`` extra) are imported only when a function needs them.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode



from ..vectors.io import write_json, write_text
from .grid import (
    LOG,
    MANIFEST,
    METRICS,
    PARTIAL,
    TRASH,
    VERSIONED,
    BatchError,
    Grid,
    _canonical,
    _grid_from,
    load_grid,
    parse_shard,
)
from .notebooks import (
    _kernel_extra_arguments,
    _quiet,
    load_notebook,
    notebook_parameters,
)
from .results import _finished, scrape_metrics

__all__ = ["Run", "run_key", "plan", "BatchResult", "run_batch"]


# ------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One combination of a grid: its parameters, the swept names, its hash key and its folder name."""

    index: int
    parameters: dict[str, Any]
    swept: tuple[str, ...]
    key: str
    folder: str


def run_key(notebook_stem: str, parameters: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit hash of a notebook's name and a full parameter set."""
    text = _canonical({"notebook": notebook_stem, "parameters": dict(parameters)})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _folder_name(stem: str, parameters: Mapping[str, Any], swept: Sequence[str], key: str) -> str:
    label = "_".join([stem] + [f"{n}={_short(parameters[n])}" for n in swept])
    label = re.sub(r"[^A-Za-z0-9._=+-]+", "-", label).strip("-.")[:80]
    return f"{label}-{key}"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else _canonical(value)


def plan(notebook_stem: str, grid: Grid, shard: tuple[int, int] = (0, 1)) -> list[Run]:
    """The runs of `grid` that belong to shard i of n (run k goes to shard k mod n), in a fixed order."""
    i, n = parse_shard(shard)
    swept = tuple(sorted(grid.sweep))
    runs = []
    for k, params in enumerate(grid.combinations()):
        if k % n != i:
            continue
        key = run_key(notebook_stem, params)
        runs.append(Run(k, params, swept, key, _folder_name(notebook_stem, params, swept, key)))
    return runs


@dataclass
class BatchResult:
    """What a batch did: folder names of runs finished ok now, failed now, and skipped as already done."""

    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    planned: list[tuple[str, str]] = field(default_factory=list)  # (action, folder) of a dry run

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        return f"{len(self.ok)} ok, {len(self.failed)} failed, {len(self.skipped)} skipped"


def _environment(cwd: Path) -> dict[str, Any]:
    """Versions, git state, device and host, recorded in every manifest."""
    import torch

    versions = {}
    for pkg in VERSIONED:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = sys.version.split()[0]
    git = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30)
        if commit.returncode == 0:
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=30
            )
            git = {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    cuda = torch.cuda.is_available()
    return {
        "versions": versions,
        "git": git,
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "hostname": socket.gethostname(),
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# The modules that define the chapters' Params classes (tvlib.params.Params subclasses with a `chapter`).
_PARAMS_MODULES = ("tvlib.toy.params", "tvlib.images.params", "tvlib.lm.params", "tvlib.batch.params",
                   "tvlib.encoder.params")


def chapter_params(stem: str) -> type | None:
    """The Params class whose `chapter` is stem (None for a notebook without one)."""
    import importlib

    from ..params import Params

    for name in _PARAMS_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:  # an experiment package that is not there (or not yet)
            if not (err.name and (name == err.name or name.startswith(err.name + "."))):
                raise
    todo, found = list(Params.__subclasses__()), None
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__dict__.get("chapter") == stem:
            found = cls
    return found


def _check_values(nb: Any, stem: str, runs: Sequence[Any]) -> None:
    """Every run's parameters checked by the chapter's Params class before anything is executed."""
    cls = chapter_params(stem)
    if cls is None:
        return
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    defaults: dict[str, Any] = {}
    try:
        exec(cells[0].source, {}, defaults)  # plain assignments of literals, by the book's convention
    except Exception:  # noqa: BLE001 - a cell of another shape: the kernel will check it
        return
    defaults.pop("__annotations__", None)
    for run in runs:
        try:
            cls.from_cell({**defaults, **run.parameters})
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise BatchError(f"run {run.folder}: {err}") from None


def run_batch(
    notebook: str | os.PathLike[str],
    grid: Grid | Mapping[str, Any] | str | os.PathLike[str],
    out: str | os.PathLike[str] = "runs",
    *,
    shard: str | tuple[int, int] = (0, 1),
    kernel: str | None = None,
    timeout: int | None = None,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> BatchResult:
    """Execute `notebook` once per combination of `grid` into `out`, skipping runs already finished ok."""
    nb_path = Path(notebook).resolve()
    nb = load_notebook(notebook)
    if not isinstance(grid, Grid):
        grid = _grid_from(grid) if isinstance(grid, Mapping) else load_grid(grid)
    shard = parse_shard(shard)
    if timeout is not None and not timeout > 0:
        raise BatchError(f"--timeout must be a positive number of seconds per cell, got {timeout}")
    allowed = notebook_parameters(nb, label=f"notebook '{notebook}'")
    unknown = [p for p in grid.parameters if p not in allowed]
    if unknown:
        raise BatchError(
            f"grid parameter(s) {', '.join(unknown)} not in the 'parameters' cell of '{notebook}'; "
            f"allowed: {', '.join(allowed)}"
        )
    extra_arguments = _kernel_extra_arguments(nb, kernel)
    _check_values(nb, nb_path.stem, plan(nb_path.stem, grid, (0, 1)))

    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out '{out}' is a file; expected a folder (it is created if missing)")
    stem = nb_path.stem
    runs = plan(stem, grid, shard)
    done = _finished(out)
    env = _environment(nb_path.parent)
    inject = {"device": "cuda"} if env["cuda"] and "device" in allowed and "device" not in grid.parameters else {}
    result = BatchResult()
    head = (
        f"{nb_path.name}: {len(grid.combinations())} runs in the grid, {len(runs)} in shard {shard[0]}/{shard[1]}"
        + (f", device={inject['device']} added" if inject else "")
    )

    if dry_run:
        echo(head + " (dry run: nothing is executed or written)")
        for run in runs:
            status = done.get(run.key, (None, None))[1]
            action = "skip" if status == "ok" else "redo" if status else "run"
            result.planned.append((action, run.folder))
            shown = " ".join(f"{n}={_short(run.parameters[n])}" for n in run.swept)
            echo(f"  {action:4s} {run.folder}  {shown}")
        return result

    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(runs), unit="run", disable=not progress, desc=stem, file=sys.stderr) as bar:
        for run in runs:
            previous = done.get(run.key)
            if previous and previous[1] == "ok":
                result.skipped.append(run.folder)
                bar.update()
                continue
            bar.set_postfix_str(run.folder, refresh=True)
            manifest = _execute(
                run, nb, nb_path, out, {**run.parameters, **inject}, sorted(inject), grid, env, kernel, timeout,
                extra_arguments, previous[0] if previous else None,
            )
            if manifest["status"] == "ok":
                result.ok.append(run.folder)
            else:
                result.failed.append(run.folder)
                err = manifest["error"]
                where = f"cell {err['cell_index']}" if err.get("cell_index") is not None else "outside a cell"
                (bar.write if progress else echo)(
                    f"FAILED {run.folder}: {where} raised {err['ename']}: {_first_line(err['evalue'])}\n"
                    f"  notebook: {out / run.folder / manifest['notebook_executed']}\n"
                    f"  log:      {out / run.folder / manifest['log']}"
                )
            bar.update()
    echo(f"{head}: {result.summary()} -> {out}")
    return result


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _execute(
    run: Run,
    nb: NotebookNode,
    nb_path: Path,
    out: Path,
    parameters: dict[str, Any],
    injected: list[str],
    grid: Grid,
    env: dict[str, Any],
    kernel: str | None,
    timeout: int | None,
    extra_arguments: list[str],
    previous: Path | None,
) -> dict[str, Any]:
    """Run one combination in a .partial- folder, write metrics and manifest, then move it into place."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    for stale in itertools.chain(out.glob(f"{PARTIAL}{run.folder}-*"), out.glob(f"{TRASH}{run.folder}-*")):
        shutil.rmtree(stale, ignore_errors=True)
    work = out / f"{PARTIAL}{run.folder}-{env['hostname']}-{os.getpid()}"
    work.mkdir()
    executed = work / f"{nb_path.stem}.ipynb"
    started, t0 = _now(), time.perf_counter()
    error: dict[str, Any] | None = None
    source: Any = str(nb_path) if nb_path.suffix == ".ipynb" else copy.deepcopy(nb)
    with open(work / LOG, "w", encoding="utf-8") as log, _quiet("papermill"):
        try:
            papermill.execute_notebook(
                _brace_safe(source),
                _brace_safe(str(executed)),
                parameters=parameters,
                kernel_name=kernel,
                progress_bar=False,
                stdout_file=log,
                stderr_file=log,
                cwd=str(nb_path.parent),
                execution_timeout=timeout,
                extra_arguments=extra_arguments,
            )
        except PapermillExecutionError as err:
            error = {"cell_index": _source_index(executed, err.cell_index), "execution_count": err.exec_count,
                     "ename": err.ename, "evalue": err.evalue}
            log.write("\n" + "\n".join(_strip_ansi(line) for line in err.traceback) + "\n")
        except Exception as err:  # kernel death, cell timeout, ...: the run fails, the batch goes on
            error = {"cell_index": _running_cell(executed), "execution_count": None,
                     "ename": type(err).__name__, "evalue": str(err)}
            log.write(f"\n{type(err).__name__}: {err}\n")
    wall = time.perf_counter() - t0

    metrics: dict[str, float | int] = {}
    other: list[str] = []
    if executed.exists():
        done_nb = nbformat.read(executed, as_version=4)
        metrics, other = scrape_metrics(done_nb)
        if not isinstance(done_nb.metadata.get("papermill", {}).get("input_path"), (str, type(None))):
            done_nb.metadata.papermill["input_path"] = str(nb_path)  # not the whole source notebook
            write_text(executed, nbformat.writes(done_nb))
    write_json(metrics, work / METRICS, strict=False, indent=2)
    manifest = {
        "run": run.folder,
        "key": run.key,
        "notebook": str(nb_path),
        "notebook_executed": executed.name,
        "grid": grid.name,
        "parameters": parameters,
        "swept": list(run.swept),
        "injected": injected,
        "seeds": {k: v for k, v in parameters.items() if "seed" in k.lower()},
        "status": "failed" if error else "ok",
        "error": error,
        "log": LOG,
        "metrics": sorted(metrics),
        "glued_non_scalar": other,
        "started": started,
        "finished": _now(),
        "wall_s": round(wall, 3),
        "hostname": env["hostname"],
        "device": env["device"],
        "versions": env["versions"],
        "git": env["git"],
        "kernel": kernel or nb.metadata.get("kernelspec", {}).get("name"),
    }
    write_json(manifest, work / MANIFEST, strict=False, indent=2)
    _publish(work, out / run.folder, previous)
    return manifest


def _brace_safe(path: Any) -> Any:
    """papermill formats paths with the parameters (str.format); keep literal braces literal."""
    return path.replace("{", "{{").replace("}", "}}") if isinstance(path, str) else path


def _publish(work: Path, final: Path, previous: Path | None) -> None:
    """Move a complete run folder into place, replacing a failed record of the same run."""
    if previous is not None and previous.exists():
        trash = previous.with_name(f"{TRASH}{final.name}-{os.getpid()}")
        os.replace(previous, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if final.exists():  # the same run finished elsewhere meanwhile (a shard started twice)
        shutil.rmtree(work, ignore_errors=True)
        return
    os.replace(work, final)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _source_index(executed: Path, cell_index: int) -> int:
    """Index in the source notebook of papermill's cell index (which counts the injected-parameters cell)."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return cell_index
    cells = [c for c in cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells[:cell_index])
    return cell_index - injected


def _running_cell(executed: Path) -> int | None:
    """Source index of the cell papermill marked as failing or still running, if the notebook was saved."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return None
    k = 0
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            continue
        pm_meta = cell.get("metadata", {}).get("papermill", {})
        if pm_meta.get("exception") or pm_meta.get("status") == "running":
            return k
        k += 1
    return None
