"""Run a book notebook over a grid of papermill parameters, resumably, and collect the results.

Layout of an output folder (``runs/`` by default)::

    runs/
      <notebook>_<swept values>-<key>/   one folder per finished run (ok or failed)
        <notebook>.ipynb                 the executed notebook
        metrics.json                     every scalar the notebook glued with myst_nb.glue
        manifest.json                    parameters, seeds, versions, git, device, times, status
        run.log                          the cells' stdout and stderr (and the traceback if failed)
      .partial-<folder>-<host>-<pid>/    a run in progress (never read by collect)

A run is built in its ``.partial-`` sibling and renamed into place only when its manifest is
written, so a folder under its final name is always a complete record. ``key`` is a hash of
the notebook's name and the grid's parameters of that run (not of the device the runner adds),
so re-running the same command skips finished runs, redoes failed or interrupted ones, and a
run keeps its folder on every machine. Heavy dependencies (papermill, jupytext, pyyaml, pandas,
matplotlib; the ``book`` extra) are imported only when a function needs them.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure
    from nbformat import NotebookNode

__all__ = [
    "BatchError",
    "Grid",
    "Run",
    "BatchResult",
    "load_grid",
    "load_notebook",
    "notebook_parameters",
    "parse_shard",
    "plan",
    "run_batch",
    "scrape_metrics",
    "collect",
    "plot_metric",
    "write_figures",
    "main",
]

MANIFEST = "manifest.json"
METRICS = "metrics.json"
LOG = "run.log"
PARTIAL = ".partial-"
TRASH = ".trash-"
GRID_KEYS = ("name", "fixed", "sweep")
VERSIONED = ("tvlib", "torch", "transformers", "papermill")
_KEY = re.compile(r"-([0-9a-f]{12})$")
_WRAPPED_NUMBER = re.compile(
    r"^[A-Za-z_][\w.]*\(\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))\s*(?:,.*)?\)$",
    re.DOTALL,
)


class BatchError(ValueError):
    """A grid, notebook or option that cannot be run; raised before any run starts."""


# ------------------------------------------------------------------------------------ grids


@dataclass(frozen=True)
class Grid:
    """A batch: parameters `fixed` for every run, and lists in `sweep` whose Cartesian product gives the runs."""

    fixed: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fixed, Mapping):
            raise BatchError(f"grid 'fixed' must be a mapping name -> value, got {type(self.fixed).__name__}")
        if not isinstance(self.sweep, Mapping):
            raise BatchError(f"grid 'sweep' must be a mapping name -> list of values, got {type(self.sweep).__name__}")
        for name, value in {**self.fixed, **self.sweep}.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise BatchError(f"grid parameter name {name!r} is not a Python identifier")
            _check_plain(name, value)
        for name, values in self.sweep.items():
            if not isinstance(values, list):
                raise BatchError(
                    f"sweep.{name} must be a list of values, got {values!r}; put a single value under 'fixed:'"
                )
            if not values:
                raise BatchError(f"sweep.{name} is an empty list: give at least one value")
            canon = [_canonical(v) for v in values]
            dupes = sorted({c for c in canon if canon.count(c) > 1})
            if dupes:
                raise BatchError(f"sweep.{name} lists the same value more than once: {', '.join(dupes)}")
        both = sorted(set(self.fixed) & set(self.sweep))
        if both:
            raise BatchError(f"parameter(s) {', '.join(both)} appear under both 'fixed:' and 'sweep:'; keep one")

    @property
    def parameters(self) -> list[str]:
        """Every parameter name the grid sets."""
        return sorted({*self.fixed, *self.sweep})

    def combinations(self) -> list[dict[str, Any]]:
        """Every run's parameters: swept names in sorted order, values in the order listed."""
        names = sorted(self.sweep)
        return [{**self.fixed, **dict(zip(names, values))} for values in itertools.product(*(self.sweep[n] for n in names))]


def _check_plain(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except TypeError as err:
        raise BatchError(
            f"grid parameter {name} = {value!r} is not a plain number, string, bool, null, list or mapping ({err})"
        ) from None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def _yaml_loader() -> type:
    """A safe YAML loader that also reads 1e-3 as a float (PyYAML follows YAML 1.1, which needs 1.0e-3)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a GRID.yaml with keys `fixed:`, `sweep:` and optionally `name:`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file '{path}' does not exist")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader())  # noqa: S506 (SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise BatchError(f"grid file '{path}' is malformed YAML{where}: {problem}") from None
    return _grid_from(raw, source=f"grid file '{path}'")


def _grid_from(raw: Any, source: str = "grid") -> Grid:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise BatchError(f"{source} must be a mapping with keys {', '.join(GRID_KEYS)}; got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise BatchError(f"{source} has unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(GRID_KEYS)}")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise BatchError(f"{source}: 'name' must be a string, got {name!r}")
    parts = {}
    for key, what in (("fixed", "name -> value"), ("sweep", "name -> list of values")):
        part = raw.get(key) or {}
        if not isinstance(part, Mapping):
            raise BatchError(f"{source}: '{key}' must be a mapping {what}, got {part!r}")
        parts[key] = dict(part)
    return Grid(fixed=parts["fixed"], sweep=parts["sweep"], name=name)


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """`"i/n"` -> (i, n) with 0 <= i < n."""
    if isinstance(shard, tuple):
        i, n = shard
    else:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
        if not match:
            raise BatchError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}")
        i, n = int(match[1]), int(match[2])
    if n < 1 or not 0 <= i < n:
        raise BatchError(f"--shard i/n needs n >= 1 and 0 <= i < n (shards are numbered from 0), got {i}/{n}")
    return i, n


# -------------------------------------------------------------------------------- notebooks


def load_notebook(path: str | os.PathLike[str]) -> NotebookNode:
    """A notebook as an nbformat v4 node: .ipynb read directly, any other format through jupytext."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook '{path}' does not exist")
    if path.suffix == ".ipynb":
        import nbformat

        return nbformat.read(path, as_version=4)
    import jupytext

    try:
        return jupytext.read(path)
    except Exception as err:  # jupytext raises several kinds for unknown formats
        raise BatchError(f"notebook '{path}' is neither .ipynb nor a format jupytext reads: {err}") from None


def notebook_parameters(nb: NotebookNode, label: str = "notebook") -> dict[str, str]:
    """Names assigned in the cell tagged `parameters` -> their default as written."""
    import nbformat
    import papermill

    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise BatchError(f"{label} has no code cell tagged 'parameters': papermill cannot override anything in it")
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, _quiet("papermill"):
        copy_path = Path(tmp) / "notebook.ipynb"
        nbformat.write(nb, copy_path)
        for name, info in papermill.inspect_notebook(str(copy_path)).items():
            found[name] = str(info.get("default"))
    found.update({k: v for k, v in _assigned_names(cells[0].source).items() if k not in found})
    return found


def _assigned_names(source: str) -> dict[str, str]:
    """Names bound by top-level assignments (tuples included), which papermill's line parser can miss."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    names: dict[str, str] = {}

    def bind(target: ast.AST, value: ast.AST | None) -> None:
        if isinstance(target, ast.Name):
            names[target.id] = ast.get_source_segment(source, value) if value is not None else ""
        elif isinstance(target, (ast.Tuple, ast.List)):
            parts = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) else None
            for k, t in enumerate(target.elts):
                bind(t, parts[k] if parts else None)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind(target, node.value)
        elif isinstance(node, ast.AnnAssign):
            bind(node.target, node.value)
    return names


@contextlib.contextmanager
def _quiet(logger_name: str, level: int = logging.ERROR) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _kernel_extra_arguments(nb: NotebookNode, kernel: str | None) -> list[str]:
    """Check that the kernel exists; for ipykernel, keep its start-up log lines off the terminal."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel or nb.metadata.get("kernelspec", {}).get("name")
    if not name:
        raise BatchError("the notebook names no kernel (metadata.kernelspec) and --kernel was not given")
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise BatchError(f"kernel '{name}' is not installed; installed kernels: {known}") from None
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in spec.argv) else []


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


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj: Any) -> None:
    _write_atomic(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


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
            _write_atomic(executed, nbformat.writes(done_nb))
    _write_json(work / METRICS, metrics)
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
    _write_json(work / MANIFEST, manifest)
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
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".png")
            os.close(fd)
            try:
                fig.savefig(tmp, dpi=120)
                os.replace(tmp, path)
            finally:
                plt.close(fig)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            written.append(path)
    return written


# --------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvlib-batch",
        description="Run a book notebook over a grid of papermill parameters and collect the results.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute NOTEBOOK once per combination of GRID.yaml (finished runs are skipped)")
    run.add_argument("notebook", help="a .ipynb, or a jupytext .md read with jupytext")
    run.add_argument("grid", help="YAML with 'fixed:' (name: value), 'sweep:' (name: [values]) and optionally 'name:'")
    run.add_argument("--out", default="runs", help="output folder, one sub-folder per run (default: runs)")
    run.add_argument("--shard", default="0/1", help="run only shard i of n: run k goes to shard k mod n (default: 0/1)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name, e.g. python3 (default: the notebook's)")
    run.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    run.add_argument("--dry-run", action="store_true", help="list the runs and whether each would run, redo or skip")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    col = sub.add_parser("collect", help="gather every run's parameters and metrics into one table, and figures")
    col.add_argument("--out", default="runs", help="output folder of the runs (default: runs)")
    col.add_argument("--csv", default=None, help="table to write (default: OUT/results.csv)")
    col.add_argument("--figures", default=None, help="folder for the PNG figures (default: OUT/figures)")
    col.add_argument("--no-figures", action="store_true", help="write the table only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tvlib-batch` command; returns the exit status (0 ok, 1 a run failed, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            result = run_batch(
                args.notebook, args.grid, args.out, shard=args.shard, kernel=args.kernel, timeout=args.timeout,
                dry_run=args.dry_run, progress=not args.no_progress,
            )
            return result.exit_code
        df = collect(args.out)
        if df.empty:
            raise BatchError(f"no finished runs in '{args.out}'")
        csv = Path(args.csv) if args.csv else Path(args.out) / "results.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(csv, df.to_csv())
        counts = df["status"].value_counts().to_dict()
        print(f"{len(df)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}) -> {csv}")
        if not args.no_figures:
            figures = write_figures(df, args.figures or Path(args.out) / "figures")
            where = args.figures or Path(args.out) / "figures"
            print(f"{len(figures)} figures -> {where}" if figures else "no figures: no numeric swept parameter besides seeds")
        return 0
    except KeyboardInterrupt:
        print("tvlib-batch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except ImportError as err:
        print(f"tvlib-batch: error: {err}; install the book extra: pip install 'tvlib[book]'", file=sys.stderr)
        return 2
    except (BatchError, FileNotFoundError) as err:
        print(f"tvlib-batch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
