"""Overhead of tvlib-batch per run beyond the notebook's own work: `.venv/bin/python tests/bench_batch.py [N]`.

Runs the tiny test notebook (no waiting) N times through the `tvlib-batch run` command and splits
the time into: the command's start-up (imports, validation), the time inside each run spent
outside the notebook's cells (kernel start-up and shut-down, papermill), and the cells themselves.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.ipynb"
SCRIPT = Path(sys.executable).with_name("tvlib-batch")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "tvlib.batch"]


def main(n: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grid = tmp / "grid.yaml"
        grid.write_text(f"fixed:\n  wait: 0.0\nsweep:\n  seed: {list(range(n))}\n")
        out = tmp / "runs"
        base = CLI + ["run", str(TINY), str(grid), "--out", str(out), "--no-progress"]

        t0 = time.perf_counter()
        subprocess.run(base + ["--dry-run"], check=True, capture_output=True)
        startup = time.perf_counter() - t0

        t0 = time.perf_counter()
        subprocess.run(base, check=True, capture_output=True)
        total = time.perf_counter() - t0

        t0 = time.perf_counter()
        subprocess.run(base, check=True, capture_output=True)  # everything is finished: all skipped
        resume = time.perf_counter() - t0

        walls, cells = [], []
        for folder in sorted(p for p in out.iterdir() if not p.name.startswith(".")):
            manifest = json.loads((folder / "manifest.json").read_text())
            nb = nbformat.read(folder / manifest["notebook_executed"], as_version=4)
            walls.append(manifest["wall_s"])
            cells.append(sum(c.metadata.get("papermill", {}).get("duration") or 0.0 for c in nb.cells))

    per_run = (total - startup) / n
    wall, cell = statistics.mean(walls), statistics.mean(cells)
    print(f"{n} runs of {TINY.name} through `tvlib-batch run` (2-core CPU machine; other work may share it)")
    print(f"command start-up (imports, validation; timed as a dry run): {startup:.2f} s, once per command")
    print(f"whole batch: {total:.2f} s, i.e. {per_run:.2f} s per run after start-up")
    print(f"per run: wall {wall:.2f} s (median {statistics.median(walls):.2f} s), of which the cells {cell:.3f} s")
    print(f"overhead per run beyond the notebook's cells: {wall - cell:.2f} s inside the run (kernel start-up and "
          f"shut-down, papermill), {per_run - cell:.2f} s counting the runner's bookkeeping "
          f"(noisy: start-up is timed separately)")
    print(f"re-running the finished batch (all {n} skipped): {resume:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
