"""Notebooks for tvlib-batch: reading a chapter (.ipynb or jupytext .md) and its parameters cell."""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from nbformat import NotebookNode



from .grid import BatchError

__all__ = ["load_notebook", "notebook_parameters"]


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
