"""The API reference page documents every module of tvlib."""

import pkgutil
import re
from pathlib import Path

import tvlib

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_is_on_the_api_page():
    page = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\.\. automodule:: (tvlib[\w.]*)", page))
    modules = {m.name for m in pkgutil.walk_packages(tvlib.__path__, "tvlib.") if not m.ispkg}
    modules -= {m for m in modules if m.rsplit(".", 1)[-1].startswith("_")}
    missing = sorted(modules - listed)
    assert not missing, f"modules missing from book/api.md (add an automodule block): {missing}"
    packages = {m.name for m in pkgutil.walk_packages(tvlib.__path__, "tvlib.") if m.ispkg}
    gone = sorted(listed - modules - packages)  # a package with its own API (tvlib.tables) may be listed
    assert not gone, f"book/api.md lists modules that do not exist: {gone}"
