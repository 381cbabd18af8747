"""Atomic file output, the one implementation tvlib uses: write to a temporary sibling, then os.replace.

A reader (or a killed process) never sees a half-written file; on any error the temporary is removed.
`atomic_path` also works for directories (a whole merged checkpoint), since os.replace renames them.
Temporaries are named `.NAME.PID.XXXX.tmp`: one left by a process that no longer runs (killed by
SIGKILL, a node failure) is removed by the next atomic write of the same path. What is written gets
the permissions the umask gives (not the 0600/0700 of tempfile's private temporaries).
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

__all__ = ["atomic_path", "strict_json", "sweep_stale", "umask", "write_json", "write_text"]


def umask() -> int:
    """The process's umask (read without changing it, from /proc where it exists)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries `.NAME.PID.*.tmp` / `.old` of `path` whose process no longer runs; return them."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for p in path.parent.iterdir():
        rest = p.name[len(prefix):] if p.name.startswith(prefix) else ""
        pid = rest.split(".", 1)[0]
        if not (pid.isdigit() and rest.endswith((".tmp", ".old"))) or _alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    directory=True yields an empty temporary directory; an existing directory at `path` is replaced
    only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    prefix = f".{path.name}.{os.getpid()}."
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".tmp"))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix or ".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask())
        yield tmp
        if directory and path.is_dir():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".old"))
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
