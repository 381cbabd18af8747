"""The distributions that installing a requirement brings: its requirement closure, from installed metadata.

    <python> tests/outside/closure.py EXTRA [PACKAGE ...]   # prints (JSON) what `pip install tvlib[EXTRA] PACKAGE...` installs

Also imported by seed.py (same folder).
"""

import json
import re
import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots):
    """{normalised name: Distribution} for the installed distributions that (name, extras) roots require."""
    found, seen, todo = {}, set(), list(roots)
    while todo:
        name, extras = todo.pop()
        if (norm(name), extras) in seen:
            continue
        seen.add((norm(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[norm(name)] = dist
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return found


if __name__ == "__main__":
    roots = [("tvlib", frozenset(sys.argv[1].split(",")))] + [(p, frozenset()) for p in sys.argv[2:]]
    print(json.dumps(sorted(closure(roots))))
