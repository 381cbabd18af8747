"""The tvlib-batch command: run a notebook over a grid, collect the runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    pass



from ..vectors.io import write_text
from .grid import (
    BatchError,
)
from .results import collect, write_figures
from .runner import run_batch

__all__ = ["main"]


# --------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvlib-batch",
        description="Run a book notebook over a grid of papermill parameters and collect the results.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute NOTEBOOK once per combination of GRID.yaml (finished runs are skipped)")
    run.add_argument("notebook", help="a .ipynb, or a jupytext .md read with jupytext")
    run.add_argument("grid", help="YAML with 'fixed:' (name: value), 'sweep:' (name: [values]) and optionally 'name:'")
    run.add_argument("--out", default="runs", help="output folder, one sub-folder per run (default: runs)")
    run.add_argument("--shard", default="0/1", help="run only shard i of n: run k goes to shard k mod n (default: 0/1)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name, e.g. python3 (default: the notebook's)")
    run.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    run.add_argument("--dry-run", action="store_true", help="list the runs and whether each would run, redo or skip")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    col = sub.add_parser("collect", help="gather every run's parameters and metrics into one table, and figures")
    col.add_argument("--out", default="runs", help="output folder of the runs (default: runs)")
    col.add_argument("--csv", default=None, help="table to write (default: OUT/results.csv)")
    col.add_argument("--figures", default=None, help="folder for the PNG figures (default: OUT/figures)")
    col.add_argument("--no-figures", action="store_true", help="write the table only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tvlib-batch` command; returns the exit status (0 ok, 1 a run failed, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            result = run_batch(
                args.notebook, args.grid, args.out, shard=args.shard, kernel=args.kernel, timeout=args.timeout,
                dry_run=args.dry_run, progress=not args.no_progress,
            )
            return result.exit_code
        df = collect(args.out)
        if df.empty:
            raise BatchError(f"no finished runs in '{args.out}'")
        csv = Path(args.csv) if args.csv else Path(args.out) / "results.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        write_text(csv, df.to_csv())
        counts = df["status"].value_counts().to_dict()
        print(f"{len(df)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}) -> {csv}")
        if not args.no_figures:
            figures = write_figures(df, args.figures or Path(args.out) / "figures")
            where = args.figures or Path(args.out) / "figures"
            print(f"{len(figures)} figures -> {where}" if figures else "no figures: no numeric swept parameter besides seeds")
        return 0
    except KeyboardInterrupt:
        print("tvlib-batch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except ImportError as err:
        print(f"tvlib-batch: error: {err}; install the book extra: pip install 'tvlib[book]'", file=sys.stderr)
        return 2
    except (BatchError, FileNotFoundError) as err:
        print(f"tvlib-batch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
