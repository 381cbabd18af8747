"""The one place that names the book's repository is _config.yml (`repository: {url, branch}`).

The launch buttons read it directly (Jupyter Book); each chapter's Colab install cell is code, so it is
derived from it by this script, which also keeps each chapter's own extra (`tvlib[toy]`, `tvlib[lm]`, ...):

    python book/_ext/tvlib_repository.py https://github.com/me/my-fork [--branch main]
    python book/_ext/tvlib_repository.py --check      # exit 1 when a chapter disagrees with _config.yml

(`bash .ci/run repository URL [BRANCH]` runs the first form.) The .md and the paired .ipynb of every
chapter are both rewritten; nothing is executed (the install cell runs only in Colab).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "_config.yml"
BOOK = ROOT / "book"
MARK = "# Colab only: install tvlib with this chapter's extra"
# A chapter's install requirement, e.g. "tvlib[toy] @ git+https://github.com/o/r@main"
REQUIREMENT = re.compile(r'"tvlib\[(?P<extra>[a-z,]+)\] @ git\+(?P<url>[^"@]+)@(?P<branch>[^"]+)"')


def read_config(path: Path | None = None) -> tuple[str, str]:
    """(url, branch) of `repository:` in _config.yml."""
    import yaml

    path = path or CONFIG
    repo = (yaml.safe_load(path.read_text()) or {}).get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch", "main")
    if not url:
        raise SystemExit(f"{path}: no repository.url: expected e.g. 'repository: {{url: https://github.com/o/r, branch: main}}'")
    return str(url).rstrip("/"), str(branch)


def install_cell(extra: str, url: str, branch: str) -> str:
    """The source of a chapter's Colab install cell (plain Python, so `jupytext --to py` gives a valid script)."""
    return (
        "import sys\n"
        "\n"
        f'if "google.colab" in sys.modules:  {MARK}\n'
        "    import subprocess\n"
        "\n"
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
        f'                    "tvlib[{extra}] @ git+{url}@{branch}"], check=True)'
    )


def chapters() -> list[Path]:
    """The chapter sources (book/*.md with a paired .ipynb) that have an install cell."""
    return sorted(p for p in BOOK.glob("*.md") if p.with_suffix(".ipynb").exists() and MARK in p.read_text())


def extra_of(text: str, where: str) -> tuple[str, str, str]:
    """(extra, url, branch) of the install requirement in a chapter's text."""
    found = REQUIREMENT.findall(text)
    if len(found) != 1:
        raise SystemExit(f"{where}: expected exactly one install requirement like "
                         f'"tvlib[toy] @ git+https://github.com/o/r@main", found {len(found)}')
    return found[0]


def _replace(text: str, url: str, branch: str) -> str:
    return REQUIREMENT.sub(lambda m: f'"tvlib[{m["extra"]}] @ git+{url}@{branch}"', text)


def set_repository(url: str, branch: str) -> list[Path]:
    """Point _config.yml, the launch buttons and every install cell at url/branch; the files changed."""
    if not re.fullmatch(r"https://[^\s\"'@]+", url):
        raise SystemExit(f"{url!r}: expected the https address of a git repository, e.g. https://github.com/me/fork")
    if not re.fullmatch(r"[\w./-]+", branch):
        raise SystemExit(f"branch {branch!r}: expected a branch name such as main")
    url = url.rstrip("/")
    changed = []
    cfg = CONFIG.read_text()
    new = re.sub(r"(?m)^(repository:\n  url: ).*\n  branch: .*$", rf"\g<1>{url}\n  branch: {branch}", cfg)
    if new == cfg and read_config() != (url, branch):
        raise SystemExit(f"{CONFIG}: expected a block 'repository:\\n  url: ...\\n  branch: ...' to rewrite")
    if new != cfg:
        CONFIG.write_text(new)
        changed.append(CONFIG)
    for md in chapters():
        nb = md.with_suffix(".ipynb")
        for path in (md, nb):
            text = path.read_text()
            out = _replace(text, url, branch) if path is md else _replace_notebook(text, url, branch)
            if out != text:
                path.write_text(out)
                changed.append(path)
    return changed


def _replace_notebook(text: str, url: str, branch: str) -> str:
    nb = json.loads(text)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            if MARK in src:
                cell["source"] = _replace(src, url, branch)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _code(path: Path) -> str:
    """A chapter's text (.md), or its code cells' sources joined (.ipynb)."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def check() -> list[str]:
    """Every disagreement between _config.yml and the chapters' install cells (md and ipynb)."""
    url, branch = read_config()
    problems = []
    for md in chapters():
        for path in (md, md.with_suffix(".ipynb")):
            _, u, b = extra_of(_code(path), str(path.relative_to(ROOT)))
            if (u, b) != (url, branch):
                problems.append(f"{path.relative_to(ROOT)} installs from {u}@{b}, _config.yml names {url}@{branch}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", help="https address of the repository the book's buttons and install cells use")
    ap.add_argument("--branch", default="main")
    ap.add_argument("--check", action="store_true", help="only report chapters that disagree with _config.yml")
    a = ap.parse_args(argv)
    if a.check:
        problems = check()
        print("\n".join(problems) or f"every install cell follows _config.yml ({'@'.join(read_config())})")
        return 1 if problems else 0
    if not a.url:
        ap.error("give the repository's https address, or --check")
    for path in set_repository(a.url, a.branch):
        print(f"updated {path.relative_to(ROOT)}")
    print(f"launch buttons and install cells now use {a.url.rstrip('/')}@{a.branch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
