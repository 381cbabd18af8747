"""Execute chapters from their .md in a temporary folder; print wall time and peak memory per chapter.

    .venv/bin/python tests/bench_chapters.py                      # every paired chapter in _toc.yml
    .venv/bin/python tests/bench_chapters.py addition book/ood.md # some chapters
    .venv/bin/python tests/bench_chapters.py setting -p runs 2    # override a papermill parameter

Each chapter runs in its own process (papermill, kernel "python3" of this interpreter) with a fresh
temporary working directory, so a chapter that depends on its working directory fails here.
Peak RSS is that of the largest process of the run (in practice the kernel). A chapter over its
budget or failing makes the exit status 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 60.0
BUDGETS_S = {
    "addition": 90.0,
    "negation": 90.0,
    "ood": 90.0,
    "lowrank": 90.0,
    "sparse": 90.0,
    "images": 180.0,
    "unlearning": 300.0,
}
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
# MPLBACKEND is removed: a kernel that inherits it skips its inline backend and draws no figures,
# which would leave the cost of the figures out of the timings.


def toc_chapters() -> list[Path]:
    """The chapter sources listed in _toc.yml, in order, that are paired notebooks."""
    import yaml

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            out = [node[k] for k in ("root", "file") if isinstance(node.get(k), str)]
            return out + [f for k, v in node.items() if k not in ("root", "file") for f in walk(v)]
        if isinstance(node, list):
            return [f for item in node for f in walk(item)]
        return []

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    paths = [ROOT / (f if f.endswith(".md") else f + ".md") for f in walk(toc)]
    return [p for p in paths if p.is_file() and is_paired(p)]


def is_paired(md: Path) -> bool:
    """True when the markdown file's front matter has a jupytext section."""
    text = md.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return False
    end = text.find("\n---", 4)
    return end > 0 and any(line.startswith("jupytext:") for line in text[4:end].splitlines())


def resolve(name: str) -> Path:
    """A chapter name ("addition") or path ("book/addition.md") as the path of its .md."""
    path = Path(name)
    candidates = [path, ROOT / path, ROOT / "book" / f"{name}.md", ROOT / "book" / path.with_suffix(".md").name]
    for c in candidates:
        if c.suffix == ".md" and c.is_file():
            return c.resolve()
    raise SystemExit(f"chapter {name!r} not found: expected a name such as 'addition' or a path such as book/addition.md")


def parse_value(text: str) -> object:
    """A parameter value from the command line: a Python literal if it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_one(md: Path, workdir: Path, parameters: dict, timeout: int | None) -> None:
    """Execute one chapter with papermill (runs in the child process)."""
    import jupytext
    import papermill

    nb = jupytext.read(md)
    papermill.execute_notebook(
        nb,
        str(workdir / f"{md.stem}.ipynb"),
        parameters=parameters,
        cwd=str(workdir),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout,
    )


def bench(md: Path, parameters: dict, timeout: int | None) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in MiB, exit status, last error line) of one chapter in a child process."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{md.stem}-") as tmp, tempfile.TemporaryFile("w+") as err:
        args = [sys.executable, __file__, "--child", str(md), tmp, json.dumps(parameters), str(timeout or 0)]
        t0 = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | ENV
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's resource usage; its ru_maxrss covers the descendants it waited
        # for (the kernel), i.e. the largest process of the run. KiB on Linux, bytes on macOS.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [line for line in err.read().splitlines() if line.strip()]
    mib = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return wall, mib, rc, (lines[-1].strip() if rc and lines else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the book's chapters.")
    parser.add_argument("chapters", nargs="*", help="names or .md paths (default: every paired chapter in _toc.yml)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="papermill parameter for every chapter (repeatable)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"budget in seconds for chapters without their own (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    args = parser.parse_args(argv)

    chapters = [resolve(c) for c in args.chapters] if args.chapters else toc_chapters()
    if not chapters:
        print("no paired chapters found", file=sys.stderr)
        return 1
    parameters = {k: parse_value(v) for k, v in args.parameter}
    print(f"{len(chapters)} chapters, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
          + (f", parameters {parameters}" if parameters else ""))
    print(f"{'chapter':<14}{'wall [s]':>10}{'peak RSS [MiB]':>16}{'budget [s]':>12}  status", flush=True)
    bad = 0
    for md in chapters:
        wall, mib, rc, last = bench(md, parameters, args.timeout)
        budget = BUDGETS_S.get(md.stem, args.budget)
        status = "ok"
        if rc != 0:
            status = f"FAILED: {last}"
        elif wall > budget:
            status = "OVER BUDGET"
        bad += status != "ok"
        print(f"{md.stem:<14}{wall:>10.1f}{mib:>16.0f}{budget:>12.0f}  {status}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, md_, tmp_, params_, timeout_ = sys.argv
        run_one(Path(md_), Path(tmp_), json.loads(params_), int(timeout_) or None)
    else:
        sys.exit(main())
