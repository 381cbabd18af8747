"""Give a fresh environment the torch of this one, by hard links (as Colab comes with torch installed).

    <this env's python> tests/outside/seed.py DEST_SITE_PACKAGES torch

Links every file of the named distributions and of what they require (their dist-info included, so pip
sees them installed) into DEST_SITE_PACKAGES; files outside site-packages (console scripts) are left out.
Falls back to copying where a link is not possible (another file system).
"""

import os
import shutil
import sys
from pathlib import Path

from closure import closure  # this folder


def main():
    dest = Path(sys.argv[1])
    dists = closure([(name, frozenset()) for name in sys.argv[2:]]).values()
    n = 0
    for dist in dists:
        for f in dist.files or []:
            if ".." in Path(f).parts:
                continue
            src, dst = Path(dist.locate_file(f)), dest / f
            if not src.is_file() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            n += 1
    print(f"linked {n} files of {', '.join(sorted(d.metadata['Name'] for d in dists))}")


if __name__ == "__main__":
    main()
