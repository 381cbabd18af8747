"""tvlib-batch: run a book notebook over a grid of papermill parameters, resumably, and collect the results.

Modules: grid (the YAML grid format and shards), notebooks (reading a chapter and its parameters),
runner (plan and run_batch: atomic run folders with manifests), results (collect: one table of every glued
scalar, and its figures), cli (the `tvlib-batch` command).
"""

from .cli import main
from .grid import BatchError, Grid, load_grid, parse_shard
from .notebooks import load_notebook, notebook_parameters
from .results import collect, plot_metric, scrape_metrics, write_figures
from .runner import BatchResult, Run, plan, run_batch, run_key

__all__ = [
    "BatchError", "Grid", "load_grid", "parse_shard", "load_notebook", "notebook_parameters", "Run", "run_key",
    "plan", "BatchResult", "run_batch", "scrape_metrics", "collect", "plot_metric", "write_figures", "main",
]
