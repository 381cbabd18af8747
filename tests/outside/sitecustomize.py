"""Loaded by the kernels of tests/test_smoke.py (PYTHONPATH): records third-party imports made by a chapter.

Every import whose importing frame is the chapter's own code (a kernel cell) or tvlib is noted with its
importer; at exit, those that were really imported are written as JSON to $TVLIB_IMPORT_LOG, for the test
to check against the chapter's extra. Imports made by other libraries are theirs to declare.
"""

import atexit
import json
import os
import re
import sys

_LOG = os.environ.get("TVLIB_IMPORT_LOG")
_SEEN: dict = {}
_CELL = re.compile(r"ipykernel_\d+[/\\]")  # where ipykernel compiles a cell's code


def _importer(frame):
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("importlib") and "importlib" not in frame.f_code.co_filename:
            return name, frame.f_code.co_filename
        frame = frame.f_back
    return "", ""


def _hook(event, args):
    if event != "import":
        return
    top = str(args[0]).split(".")[0]
    if not top or top in _SEEN or top in sys.stdlib_module_names or top == "tvlib":
        return
    name, filename = _importer(sys._getframe(1))
    if name.startswith("tvlib") or _CELL.search(filename):
        _SEEN[top] = "the chapter" if _CELL.search(filename) else name


def _write():
    found = {m: who for m, who in _SEEN.items() if m in sys.modules}
    with open(_LOG, "w") as f:
        json.dump(found, f)


if _LOG:
    sys.addaudithook(_hook)
    atexit.register(_write)
