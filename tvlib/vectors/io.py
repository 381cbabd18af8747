"""Atomic file output, the one implementation tvlib uses: write to a temporary sibling, then os.replace.

A reader (or a killed process) never sees a half-written file; on any error the temporary is removed.
`atomic_path` also works for directories (a whole merged checkpoint), since os.replace renames them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "strict_json", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    directory=True yields an empty temporary directory; an existing directory at `path` is replaced
    only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.is_dir():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str | bytes) -> Path:
    """Write text (or bytes) to path atomically."""
    with atomic_path(path) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")
    return Path(path)


def strict_json(obj: Any) -> Any:
    """obj with every NaN or infinite float replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(obj: Any, path: str | os.PathLike[str], *, strict: bool = True, indent: int = 1) -> Path:
    """Write obj as JSON to path atomically; strict=True writes NaN/inf as null (valid JSON)."""
    if strict:
        text = json.dumps(strict_json(obj), indent=indent, allow_nan=False)
    else:
        text = json.dumps(obj, indent=indent, allow_nan=True)
    return write_text(path, text + "\n")
