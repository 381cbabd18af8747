"""Loaded by the kernels of tests/test_smoke.py (PYTHONPATH): records third-party imports made by a chapter.

Every import whose importing frame is the chapter's own code (a kernel cell) or tvlib is appended, with its
importer, to $TVLIB_IMPORT_LOG.<pid> as one JSON line, for the test to check against the chapter's extra.
Written at once (a kernel shut down by papermill runs no exit handlers); an import that then fails names a
module no distribution provides, which the test ignores. Imports made by other libraries are theirs to
declare.
"""

import json
import os
import re
import sys

_LOG = os.environ.get("TVLIB_IMPORT_LOG")
_SEEN: set = set()
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
    cell = bool(_CELL.search(filename))
    if cell or name.startswith("tvlib"):
        _SEEN.add(top)
        with open(f"{_LOG}.{os.getpid()}", "a") as f:
            f.write(json.dumps({"module": top, "by": "the chapter" if cell else name}) + "\n")


if _LOG:
    sys.addaudithook(_hook)
