"""The image chapter's multi-seed table and its timing.

    .venv/bin/python benchmarks/bench_images.py --seeds [--shard i/n]   # regenerate the table
    .venv/bin/python benchmarks/bench_images.py --chapter               # time the chapter itself

--seeds runs book/images.md over grids/images-seeds.yaml with tvlib-batch (one run per pre-training
seed, resumable, into runs/images-seeds), then collects the runs into tvlib/tables/images-seeds.csv and
writes tvlib/tables/images-seeds.manifest.json (the grid, the command, and every run's parameters,
status, wall time, versions and git commit). With --shard only that shard runs; the table is
written once every run of the grid has finished. It prints the wall time of each step and the load
average, the figures to hold against the budget (60 minutes on a 2-core CPU).
--chapter executes book/images.md once through papermill (its default run, reading the committed
table) and prints its wall time against the chapter's budget (5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "images.md"
GRID = ROOT / "grids" / "images-seeds.yaml"
OUT = ROOT / "runs" / "images-seeds"
TABLE = ROOT / "tvlib" / "tables" / "images-seeds.csv"
MANIFEST = ROOT / "tvlib" / "tables" / "images-seeds.manifest.json"
BUDGET_TABLE_S, BUDGET_CHAPTER_S = 3600.0, 300.0
KEEP = ("parameters", "status", "wall_s", "started", "finished", "git", "versions", "device")


def seeds(shard: str) -> int:
    """Run (or resume) the grid, then collect the table and the manifest once every run is done."""
    from tvlib.batch import collect, load_grid, run_batch
    from tvlib.vectors.io import write_text

    print(f"{NOTEBOOK.relative_to(ROOT)} over {GRID.relative_to(ROOT)}, shard {shard}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    result = run_batch(NOTEBOOK, GRID, OUT, shard=shard, kernel="python3", progress=False)
    wall = time.perf_counter() - t0
    print(f"{result.summary()} in {wall / 60:.1f} min (load average {os.getloadavg()[0]:.2f})", flush=True)
    df = collect(OUT)
    n_grid = len(load_grid(GRID).combinations())
    ok = df[df["status"] == "ok"]
    if len(ok) < n_grid:
        print(f"{len(ok)} of {n_grid} runs finished ok: the table is written once all are (run the other shards)")
        return result.exit_code
    write_text(TABLE, ok.to_csv())
    runs = []
    for name in ok.index:
        manifest = json.loads((OUT / name / "manifest.json").read_text())
        runs.append({"run": name, **{k: manifest.get(k) for k in KEEP}})
    write_text(MANIFEST, json.dumps({
        "table": str(TABLE.relative_to(ROOT)), "notebook": str(NOTEBOOK.relative_to(ROOT)),
        "grid": str(GRID.relative_to(ROOT)), "command": "python benchmarks/bench_images.py --seeds",
        "runs_wall_s": round(sum(float(r["wall_s"]) for r in runs), 1), "runs": runs}, indent=1) + "\n")
    total = sum(float(r["wall_s"]) for r in runs)
    print(f"{len(ok)} runs -> {TABLE.relative_to(ROOT)} ({len(ok.columns)} columns), "
          f"{MANIFEST.relative_to(ROOT)}; runs took {total / 60:.1f} min in all "
          f"(budget {BUDGET_TABLE_S / 60:.0f} min): {'ok' if total <= BUDGET_TABLE_S else 'OVER BUDGET'}")
    return result.exit_code


def chapter() -> int:
    """Execute the chapter once with papermill and print its wall time against the budget."""
    import tempfile

    import jupytext
    import papermill

    nb = jupytext.read(NOTEBOOK)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        papermill.execute_notebook(nb, str(Path(tmp) / "images.ipynb"), cwd=str(ROOT / "book"),
                                   kernel_name="python3", progress_bar=False)
        wall = time.perf_counter() - t0
    print(f"book/images.md: {wall:.0f} s (budget {BUDGET_CHAPTER_S:.0f} s): "
          f"{'ok' if wall <= BUDGET_CHAPTER_S else 'OVER BUDGET'}; load average {os.getloadavg()[0]:.2f}")
    return 0 if wall <= BUDGET_CHAPTER_S else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", action="store_true", help="regenerate the multi-seed table")
    ap.add_argument("--shard", default="0/1", help="with --seeds: run shard i of n (default 0/1)")
    ap.add_argument("--chapter", action="store_true", help="time the chapter")
    args = ap.parse_args()
    if not (args.seeds or args.chapter):
        ap.error("expected --seeds or --chapter")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    code = seeds(args.shard) if args.seeds else 0
    return code or (chapter() if args.chapter else 0)


if __name__ == "__main__":
    sys.exit(main())
