"""The pre-trained-encoder chapter's tables (calibration and held-out seeds) and their timing.

    .venv/bin/python benchmarks/bench_pretrained.py calibrate            # tvlib/tables/pretrained-calibration.csv
    .venv/bin/python benchmarks/bench_pretrained.py seeds [--shard i/n]  # tvlib/tables/pretrained-seeds.csv (shards i = 0..n-1)
    .venv/bin/python benchmarks/bench_pretrained.py all                  # both, one after the other

calibrate fine-tunes every candidate task of tvlib.encoder.study.CANDIDATES on the calibration
seeds (PretrainedParams.calibration_seeds) and measures alpha-hat against T1 (gamma for the T'
candidates); the chapter's parameters hold the choice of study.choose_shares on that table.
seeds runs book/pretrained.md over grids/pretrained-seeds.yaml with tvlib-batch (one run per held-out
seed, resumable, into runs/pretrained-seeds), then collects the runs into
tvlib/tables/pretrained-seeds.csv with its manifest (grid, command, every run's parameters, status,
wall time, versions, commit). Each prints its wall time, CPU time and the load average, against the
budget of 60 minutes for both tables on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "pretrained.md"
GRID = ROOT / "grids" / "pretrained-seeds.yaml"
OUT = ROOT / "runs" / "pretrained-seeds"
TABLES = ROOT / "tvlib" / "tables"
BUDGET_S = 3600.0
KEEP = ("parameters", "status", "wall_s", "started", "finished", "git", "versions", "device")


def _versions() -> dict[str, str]:
    import platform

    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}


def _git() -> dict[str, object]:
    import subprocess

    def out(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": out("rev-parse", "HEAD"), "dirty": bool(out("status", "--porcelain", "--untracked-files=no"))}


def calibrate() -> float:
    """Write the calibration table and its manifest; return the wall time."""
    from tvlib import paper
    from tvlib.encoder import study
    from tvlib.encoder.params import PretrainedParams
    from tvlib.vectors.io import write_text

    p = PretrainedParams()
    print(f"calibration over seeds {list(p.calibration_seeds)}; load average {os.getloadavg()[0]:.2f}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    cal = study.calibration_rows(p, p.calibration_seeds)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    table = TABLES / "pretrained-calibration.csv"
    write_text(table, cal.to_csv(index=False, float_format="%.6g"))
    chosen = study.choose_shares(cal, paper.IMAGE_ALPHA_HAT, paper.OOD_GAMMA)
    write_text(table.with_suffix(".manifest.json"), json.dumps({
        "table": str(table.relative_to(ROOT)), "command": "python benchmarks/bench_pretrained.py calibrate",
        "seeds": list(p.calibration_seeds), "parameters": {k: v for k, v in p.asdict().items()},
        "chosen": {k: list(v) for k, v in chosen.items()}, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load_average": round(os.getloadavg()[0], 2), "git": _git(), "versions": _versions()}, indent=1,
        default=str) + "\n")
    print(f"{len(cal)} rows -> {table.relative_to(ROOT)} in {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU "
          f"(load average {os.getloadavg()[0]:.2f}); chosen: {chosen}", flush=True)
    return wall


def seeds(shard: str) -> float:
    """Run (or resume) the held-out grid; collect the table and manifest once every run is done."""
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
        return wall
    table = TABLES / "pretrained-seeds.csv"
    write_text(table, ok.to_csv())
    runs = []
    for name in ok.index:
        manifest = json.loads((OUT / name / "manifest.json").read_text())
        runs.append({"run": name, **{k: manifest.get(k) for k in KEEP}})
    total = sum(float(r["wall_s"]) for r in runs)
    write_text(table.with_suffix(".manifest.json"), json.dumps({
        "table": str(table.relative_to(ROOT)), "notebook": str(NOTEBOOK.relative_to(ROOT)),
        "grid": str(GRID.relative_to(ROOT)), "command": "python benchmarks/bench_pretrained.py seeds",
        "runs_wall_s": round(total, 1), "load_average": round(os.getloadavg()[0], 2), "runs": runs}, indent=1) + "\n")
    print(f"{len(ok)} runs -> {table.relative_to(ROOT)} ({len(ok.columns)} columns); runs took {total / 60:.1f} min "
          f"in all (budget for both tables {BUDGET_S / 60:.0f} min)", flush=True)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("calibrate", "seeds", "all"))
    ap.add_argument("--shard", default="1/1", help="i/n: run only this shard of the held-out grid")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    total = 0.0
    if args.what in ("calibrate", "all"):
        total += calibrate()
    if args.what in ("seeds", "all"):
        total += seeds(args.shard)
    print(f"wall time {total / 60:.1f} min against the budget of {BUDGET_S / 60:.0f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
