# Reads a JSON list of top-level module names; prints {module: [normalised distribution names]}.
import json
import re
import sys
from importlib import metadata

mapping = metadata.packages_distributions()
mods = json.loads(sys.stdin.read())
print(json.dumps({m: sorted({re.sub(r"[-_.]+", "-", d).lower() for d in mapping.get(m, [])}) for m in mods}))
