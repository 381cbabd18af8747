# Prints (JSON) the distributions that `pip install tvlib[EXTRA] PKG...` installs: the requirement closure.
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


todo = [("tvlib", frozenset(sys.argv[1].split(",")))] + [(p, frozenset()) for p in sys.argv[2:]]
seen = set()
while todo:
    name, extras = todo.pop()
    if (norm(name), extras) in seen:
        continue
    seen.add((norm(name), extras))
    try:
        reqs = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        continue
    for r in reqs:
        req = Requirement(r)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        todo.append((req.name, frozenset(req.extras)))
print(json.dumps(sorted({n for n, _ in seen})))
