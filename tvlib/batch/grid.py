"""Grids of papermill parameters for tvlib-batch: the YAML format, its checks, and shards."""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    pass


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


__all__ = ["BatchError", "Grid", "load_grid", "parse_shard"]


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
