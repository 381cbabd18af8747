"""Jupyter Book 2.x (mystmd) stops on this book with a clear message and a non-zero exit status.

The book is built with Jupyter Book 1.x (_config.yml, _toc.yml). Jupyter Book 2 reads myst.yml
instead, whose plugin (book/_ext/tvlib_jb2_stop.mjs) prints why and how to build the book, then
exits. The wiring is checked always; the plugin is run with Node.js when it is installed; the real
Jupyter Book 2 runs only when TVLIB_JB2 names its executable (`jupyter-book` or `myst` of a
separate environment, e.g. `python3.11 -m venv /tmp/jb2 && /tmp/jb2/bin/pip install
'jupyter-book>=2'`, then TVLIB_JB2=/tmp/jb2/bin/jupyter-book).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "book/_ext/tvlib_jb2_stop.mjs"
# Phrases the message must carry: what the book needs, how to build it, why Jupyter Book 2 cannot.
MUST_SAY = (
    "Jupyter Book 1.x",
    "bash .ci/run book",
    "pip install -e '.[book]'",
    "jupyter-book build .",
    "_config.yml",
    "_toc.yml",
    "glue:figure",
    "eval-rst",
)


def _message_lines() -> str:
    """The message as the plugin source spells it (the string literals of its MESSAGE array)."""
    text = (ROOT / PLUGIN).read_text(encoding="utf-8")
    block = re.search(r"const MESSAGE = \[(.*?)\]\.join", text, re.S)
    assert block, f"{PLUGIN} has no MESSAGE array"
    return "\n".join(re.findall(r'^\s*"(.*)",\s*$', block.group(1), re.M))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_myst_yml_loads_the_stop_plugin():
    config = yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8"))
    assert config["version"] == 1
    plugins = config["project"]["plugins"]
    paths = [p if isinstance(p, str) else p.get("path") for p in plugins]
    assert PLUGIN in paths, f"myst.yml loads {paths}, not {PLUGIN}"
    assert (ROOT / PLUGIN).is_file()
    # Nothing else in it: myst.yml must not grow into a half-working Jupyter Book 2 configuration.
    assert set(config) == {"version", "project"} and set(config["project"]) == {"plugins"}


def test_plugin_message_names_the_version_the_fix_and_the_reasons():
    message = _one_line(_message_lines())
    missing = [phrase for phrase in MUST_SAY if phrase not in message]
    assert not missing, f"the message does not say {missing}: {message}"
    source = (ROOT / PLUGIN).read_text(encoding="utf-8")
    exits = re.findall(r"process\.exit\((\d+)\)", source)
    assert exits and all(int(code) != 0 for code in exits), f"{PLUGIN} must exit non-zero: {exits}"


def test_the_commands_the_message_names_exist():
    """`bash .ci/run book` is a command of .ci/run, and the [book] extra pins jupyter-book below 2."""
    assert re.search(r"^\s*book\)", (ROOT / ".ci/run").read_text(encoding="utf-8"), re.M)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    pins = [r for r in extras["book"] if re.match(r"jupyter-book\b", r)]
    assert pins, "the [book] extra does not name jupyter-book"
    match = re.match(r"jupyter-book\s*==\s*(\d+)\.", pins[0])
    assert match and int(match.group(1)) == 1, f"[book] must pin jupyter-book 1.x, not {pins[0]}"


def test_jupyter_book_1_does_not_read_the_jupyter_book_2_files():
    """Sphinx builds only what _toc.yml lists: myst.yml and the .mjs are not among its sources."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert "myst" not in toc and "tvlib_jb2_stop" not in toc
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config.get("only_build_toc_files") is True
    assert "tvlib_jb2_stop" not in (config["sphinx"].get("local_extensions") or {})


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_plugin_run_by_node_prints_the_message_and_fails():
    run = subprocess.run(["node", PLUGIN], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert _one_line(_message_lines()) in _one_line(run.stderr)
    assert run.stdout == ""


JB2 = os.environ.get("TVLIB_JB2")


@pytest.mark.skipif(not JB2, reason="TVLIB_JB2 (a Jupyter Book 2.x or mystmd executable) is not set")
@pytest.mark.parametrize("args", [["build", "."], ["build"], ["build", "--html"], ["start"], ["init"]])
def test_jupyter_book_2_stops_with_the_message(tmp_path, args):
    """The real Jupyter Book 2, on a copy of the book's configuration and a chapter (it writes
    _build/ and, for `init`, would rename files): non-zero exit, the message, no parse errors."""
    version = subprocess.run([JB2, "--version"], capture_output=True, text=True, timeout=120)
    # Jupyter Book 2 and mystmd print one "vX.Y.Z" line; Jupyter Book 1 a table of Sphinx packages.
    assert version.returncode == 0 and re.fullmatch(r"v\d+\.\d+\.\d+\S*", version.stdout.strip()), (
        f"TVLIB_JB2={JB2} is not Jupyter Book 2.x or mystmd: {version.stdout}{version.stderr}"
    )
    for name in ("myst.yml", PLUGIN, "_config.yml", "_toc.yml", "book/intro.md", "book/setting.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    run = subprocess.run([JB2, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    output = run.stdout + run.stderr
    assert run.returncode != 0, f"{JB2} {' '.join(args)} exited 0:\n{output[-2000:]}"
    assert _one_line(_message_lines()) in _one_line(output)
    assert "unknown directive" not in output and "unknown role" not in output
    assert (tmp_path / "_config.yml").is_file() and (tmp_path / "_toc.yml").is_file()
