"""Time the unlearning experiment (book/unlearning.md), regenerate its multi-seed table, re-check a row.

    .venv/bin/python benchmarks/bench_unlearning.py run [--seed 0 --share 0.8 ...]
        one run through tvlib.lm (every UnlearningParams field is an option; lists comma-separated):
        wall and CPU time and peak memory against the chapter's budget (5 minutes on a 2-core CPU)
    .venv/bin/python benchmarks/bench_unlearning.py table [--shards 2] [--grid unlearning-seeds]
        the one command that regenerates tvlib/tables/<grid>.csv: tvlib-batch runs the chapter over
        grids/<grid>.yaml in --shards parallel shards (one CPU thread each), collects the table and
        writes its manifest; prints the wall time against the budget (60 minutes). Grids:
        unlearning-seeds (5 seeds x 6 shares) and unlearning-matched (the equal-norm test, 5 fresh seeds)
    .venv/bin/python benchmarks/bench_unlearning.py check --seed 1 --share 0.4
        re-runs one grid point through tvlib.lm and compares it with its committed row
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
import typing
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
GRIDS = ("unlearning-seeds", "unlearning-matched")
TABLE = ROOT / "tvlib" / "tables" / "unlearning-seeds.csv"
RUN_BUDGET_S, TABLE_BUDGET_S = 300, 3600


def _params(args: dict) -> dict:
    """UnlearningParams keyword arguments from the command line's strings."""
    from tvlib import lm as llm

    hints = typing.get_type_hints(llm.UnlearningParams)
    kw = {}
    for name, value in args.items():
        if value is None or name not in hints:
            continue
        t = str(hints[name])
        if "tuple" in t:
            items = [v for v in value.split(",") if v]
            kw[name] = [float(v) for v in items] if "float" in t else items
        elif "bool" in t:
            kw[name] = value.lower() in ("1", "true", "yes")
        elif t == "<class 'int'>":
            kw[name] = int(value)
        elif t == "<class 'float'>":
            kw[name] = float(value)
        else:
            kw[name] = value
    return kw


def bench_run(kw: dict) -> dict:
    """One run through tvlib.lm; prints its time and key numbers; returns its metrics."""
    import torch

    from tvlib import lm as llm

    p = llm.UnlearningParams(**kw)
    torch.set_num_threads(p.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    res = llm.run_unlearning(p)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"seed {p.seed}, share {p.share}: wall {wall:.0f} s, CPU {cpu:.0f} s, peak RSS {peak:.0f} MiB, "
          f"{torch.get_num_threads()} thread(s); budget {RUN_BUDGET_S} s for the chapter")
    m = res["metrics"]
    last = len(p.lams) - 1
    print("  alpha-hat:", {k: round(v, 3) for k, v in m.items() if k.startswith("alpha_")})
    for vec in llm.VECTORS:
        rise = {t: round(m[f"nll_{vec}_{t}_{last}"] - m[f"nll_{vec}_{t}_0"], 3) for t in llm.TEXTS}
        print(f"  loss rise at lam={p.lams[-1]:g}, {vec}: {rise}")
    return m


def bench_table(shards: int, name: str = GRIDS[0]) -> None:
    """Regenerate a multi-seed table with tvlib-batch in parallel shards, collect it, write its manifest."""
    grid, out = ROOT / "grids" / f"{name}.yaml", ROOT / "runs" / name
    table, manifest = ROOT / "tvlib" / "tables" / f"{name}.csv", ROOT / "tvlib" / "tables" / f"{name}.manifest.json"
    batch = Path(sys.executable).with_name("tvlib-batch")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([str(batch), "run", str(ROOT / "book" / "unlearning.md"), str(grid), "--out", str(out),
                               "--shard", f"{i}/{shards}", "--no-progress"], env=env) for i in range(shards)]
    codes = [proc.wait() for proc in procs]
    wall = time.perf_counter() - t0
    subprocess.run([str(batch), "collect", "--out", str(out), "--csv", str(table), "--no-figures"], check=True, env=env)
    write_manifest(out, manifest, grid)
    print(f"table regenerated in {wall / 60:.1f} min with {shards} shards (budget {TABLE_BUDGET_S / 60:.0f} min); "
          f"shard exit codes {codes} -> {table.relative_to(ROOT)}, {manifest.relative_to(ROOT)}")


def write_manifest(out: Path, path: Path, grid: Path) -> None:
    """One JSON for the committed table: the grid, and per run its parameters, status, times, versions, git."""
    from tvlib.vectors.io import write_json

    keep = ("parameters", "status", "started", "finished", "wall_s", "hostname", "device", "versions", "git")
    runs = {}
    for folder in sorted(out.iterdir()):
        f = folder / "manifest.json"
        if folder.name.startswith(".") or not f.is_file():
            continue
        m = json.loads(f.read_text())
        runs[folder.name] = {k: m.get(k) for k in keep}
    walls = [r["wall_s"] for r in runs.values() if r["wall_s"]]
    write_json({"grid": str(grid.relative_to(ROOT)), "notebook": "book/unlearning.md", "n_runs": len(runs),
                "sum_wall_s": round(sum(walls), 1), "runs": runs}, path, indent=1)


def check_row(kw: dict) -> None:
    """Re-run one grid point and print its largest differences from the committed row."""
    import pandas as pd

    from tvlib.lm import study

    m = bench_run(kw)
    row = study.committed_row(pd.read_csv(TABLE), kw.get("seed", 0), kw.get("share", 0.8))
    if row is None:
        sys.exit(f"no committed row for seed {kw.get('seed', 0)}, share {kw.get('share', 0.8)} in {TABLE}")
    diff = study.row_differences(row, m)
    print("largest differences from the committed row:", dict(list(diff.items())[:5]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="run", choices=["run", "table", "check"])
    ap.add_argument("--shards", type=int, default=2, help="table: parallel shards (default 2, one per core)")
    ap.add_argument("--grid", default=GRIDS[0], choices=GRIDS, help="table: which grid (default %(default)s)")
    from tvlib import lm as llm

    for f in dataclasses.fields(llm.UnlearningParams):
        ap.add_argument(f"--{f.name}", default=None, help=f"default {f.default!r}")
    args = vars(ap.parse_args())
    command, shards, grid = args.pop("command"), args.pop("shards"), args.pop("grid")
    kw = _params(args)
    if command == "table":
        bench_table(shards, grid)
    elif command == "check":
        check_row({"device": "cpu", **kw})
    else:
        bench_run(kw)


if __name__ == "__main__":
    main()
