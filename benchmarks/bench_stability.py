"""Verdict stability of book/addition.md over training settings and widths: run, collect, write the table.

    .venv/bin/python benchmarks/bench_stability.py            # run (resumably) and collect
    .venv/bin/python benchmarks/bench_stability.py --collect  # collect the runs already in --out

Runs the chapter with tvlib-batch over grids/addition-stability.yaml (SGD step eta, batch B, steps T and
width m in {64, 256}; 16 runs) and grids/addition-stability-wide.yaml (the chapter's setting at
m = 1200 >= M^2 log M), then writes tvlib/tables/stability-addition.csv: one row per run with its
parameters, the chapter's numbers and every verdict word it glues (verdict_*, which tvlib-batch's
collect leaves out because they are words), and the manifest beside it. Prints the wall time of each
step and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "addition.ipynb"
GRIDS = [ROOT / "grids" / "addition-stability.yaml", ROOT / "grids" / "addition-stability-wide.yaml"]
TABLE = ROOT / "tvlib" / "tables" / "stability-addition.csv"
MANIFEST = ROOT / "tvlib" / "tables" / "stability-addition.manifest.json"
KEEP = ("parameters", "status", "wall_s", "started", "finished", "git", "versions", "device")
BUDGET_S = 3600.0


def verdict_words(notebook: Path) -> dict[str, str]:
    """The verdict words (glues named verdict_*) of an executed notebook."""
    import ast

    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    words = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name", "")
            text = output.get("data", {}).get("application/papermill.record/text/plain")
            if name.startswith("verdict_") and isinstance(text, str):
                try:
                    words[name] = str(ast.literal_eval(text))
                except (ValueError, SyntaxError):
                    words[name] = text
    return words


def collect_table(out: Path) -> int:
    from tvlib.batch import collect, load_grid
    from tvlib.vectors.io import write_text

    df = collect(out)
    ok = df[df["status"] == "ok"].copy()
    n_grid = sum(len(load_grid(g).combinations()) for g in GRIDS)
    n_first = len(load_grid(GRIDS[0]).combinations())
    if (ok["m"] < 1200).sum() < n_first:
        print(f"{len(ok)} of {n_grid} runs finished ok: the table is written once those of {GRIDS[0].name} are")
        return 1
    if len(ok) < n_grid:
        print(f"{len(ok)} of {n_grid} runs finished ok: writing the table without the wide run(s)")
    runs, words = [], []
    for name in ok.index:
        folder = out / name
        manifest = json.loads((folder / "manifest.json").read_text())
        runs.append({"run": name, **{k: manifest.get(k) for k in KEEP}})
        executed = [p for p in folder.glob("*.ipynb")]
        if len(executed) != 1:
            raise FileNotFoundError(f"{folder}: expected one executed notebook, found {len(executed)}")
        words.append(verdict_words(executed[0]))
    for key in sorted({k for w in words for k in w}):
        ok[key] = [w.get(key, "n/a") for w in words]
    write_text(TABLE, ok.to_csv())
    total = sum(float(r["wall_s"]) for r in runs)
    from datetime import datetime

    times = [(datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["finished"])) for r in runs]
    span = (max(f for _, f in times) - min(s for s, _ in times)).total_seconds()  # runs overlap in shards
    write_text(MANIFEST, json.dumps({
        "table": str(TABLE.relative_to(ROOT)), "notebook": str(NOTEBOOK.relative_to(ROOT)),
        "grids": [str(g.relative_to(ROOT)) for g in GRIDS], "command": "python benchmarks/bench_stability.py",
        "complete": len(ok) == n_grid, "runs_wall_s": round(total, 1), "span_s": round(span, 1),
        "runs": runs}, indent=1) + "\n")
    print(f"{len(ok)} runs -> {TABLE.relative_to(ROOT)}; {total / 60:.1f} min of run wall time, "
          f"{span / 60:.1f} min from the first start to the last finish "
          f"(budget {BUDGET_S / 60:.0f} min): {'ok' if span <= BUDGET_S else 'OVER BUDGET'}")
    return 0 if len(ok) == n_grid else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "stability-addition")
    p.add_argument("--shard", default="0/1")
    p.add_argument("--collect", action="store_true", help="only collect the runs already in --out")
    args = p.parse_args()
    if not args.collect:
        from tvlib.batch import run_batch

        for grid in GRIDS:
            t0 = time.perf_counter()
            print(f"{NOTEBOOK.relative_to(ROOT)} over {grid.relative_to(ROOT)}, shard {args.shard}; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
            result = run_batch(NOTEBOOK, grid, args.out, shard=args.shard, kernel="python3", progress=False)
            print(f"{result.summary()} in {(time.perf_counter() - t0) / 60:.1f} min "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    return collect_table(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
