"""One configuration pattern for every experiment: a frozen dataclass of parameters, checked on creation.

A chapter's cell tagged `parameters` assigns plain values (papermill overrides them); the next cell
builds the experiment's parameters from them with `Params.from_cell(globals())`, which takes exactly
the dataclass's fields from the namespace. Each subclass checks its fields in `check()`, including
fields that depend on each other, and raises ValueError naming what was wrong and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, fields, replace
from numbers import Integral, Real
from typing import Any, ClassVar, TypeVar

__all__ = ["Params", "integer", "positive", "fraction", "number_list", "subset", "table"]

P = TypeVar("P", bound="Params")

_CHECKED = "_tvlib_parameters_checked"  # set in a notebook's namespace by its first from_cell
_IPYTHON_NAMES = {"In", "Out"}  # the kernel's own history


def _looks_like_parameter(name: str, value: Any) -> bool:
    """A lower-case public name bound to a plain value, as a parameters cell (or papermill's injected cell) binds them."""
    return (name.islower() and not name.startswith("_") and name not in _IPYTHON_NAMES  # CONSTANTS are imports
            and (value is None or type(value) in (bool, int, float, str, list, dict, tuple)))


class Params:
    """Base of the frozen parameter dataclasses; `chapter` names the book chapter whose cell they mirror."""

    chapter: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f in fields(self):  # papermill and YAML give lists; tuples keep the dataclass hashable
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        self.check()

    def check(self) -> None:
        """Raise ValueError for a bad value or a bad combination of values."""

    @classmethod
    def from_cell(cls: type[P], namespace: Mapping[str, Any]) -> P:
        """The parameters named by the dataclass's fields, read from a notebook's namespace (globals())."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in namespace]
        if missing:
            raise ValueError(f"{cls.__name__}: parameters {missing} are not defined: expected them in the parameters cell")
        # A misspelt parameter (papermill's `-p sedds 3`, a grid key, a hand edit) is a plain value in the
        # namespace that no field takes. Checked on a namespace's first call only: in a kernel that has
        # run the chapter, its own variables would look the same.
        first = _CHECKED not in namespace
        unknown = [n for n, v in namespace.items() if first and n not in names and _looks_like_parameter(n, v)]
        if isinstance(namespace, MutableMapping):
            namespace[_CHECKED] = cls.__name__
        if unknown:
            import difflib

            hints = [f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, names, 1)) else repr(n)
                     for n in unknown]
            raise ValueError(f"{cls.__name__}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: "
                             f"this notebook's parameters are {', '.join(names)}")
        return cls(**{n: namespace[n] for n in names})

    def replace(self: P, **changes: Any) -> P:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def asdict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def integer(name: str, value: Any, lo: int = 1) -> int:
    """value as an int >= lo, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < lo:
        raise ValueError(f"{name}={value!r}: expected an integer >= {lo}")
    return int(value)


def positive(name: str, value: Any, *, zero: bool = False) -> float:
    """value as a finite float > 0 (>= 0 with zero=True), else ValueError."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name}={value!r}: expected a finite number {'>=' if zero else '>'} 0")
    return float(value)


def fraction(name: str, value: Any) -> float:
    """value as a float in [0, 1], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r}: expected a fraction in [0, 1]")
    return float(value)


def number_list(name: str, value: Any, *, distinct: bool = True, lo: float = -math.inf,
                hi: float = math.inf) -> tuple[float, ...]:
    """value as a non-empty tuple of finite floats in [lo, hi] (distinct by default), else ValueError."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name}={value!r}: expected a non-empty list of numbers")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v)
           or not lo <= v <= hi]
    if bad:
        raise ValueError(f"{name}={list(value)!r}: entries {bad!r} are not finite numbers in [{lo}, {hi}]")
    if distinct and len(set(value)) != len(value):
        raise ValueError(f"{name}={list(value)!r} has repeated values: expected distinct values")
    return tuple(float(v) for v in value)


def subset(name: str, values: Sequence[Any], of: str, allowed: Sequence[Any]) -> None:
    """ValueError naming both parameters unless every entry of values is (close to) one of allowed."""
    def has(v: Any) -> bool:
        return any(v == a or (isinstance(v, Real) and isinstance(a, Real) and math.isclose(v, a, abs_tol=1e-9))
                   for a in allowed)

    out = [v for v in values if not has(v)]
    if out:
        raise ValueError(f"{name} {out} not in {of} {list(allowed)}: expected each of {name} to be one of {of}")


def table(name: str, value: Any, *, optional: bool = True) -> None:
    """ValueError/FileNotFoundError unless value names a committed table or an existing CSV (tvlib.tables.path);
    "" (skip the table) only when optional."""
    if value == "" and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r}: expected a table name or a path (a string)"
                         + (", or '' to skip the table" if optional else ""))
    from tvlib import tables

    try:
        tables.path(value)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"{name}: {e}") from None
