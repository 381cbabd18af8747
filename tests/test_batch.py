"""Reliability of tvlib-batch: grids run, interrupted batches resume, failures are recorded, bad input is refused."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from tvlib import batch
from tvlib.batch import results as collect_mod
from tvlib.batch import BatchError, Grid, main, plan, run_batch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.ipynb"
TINY_MD = DATA / "tiny.md"
SCRIPT = Path(sys.executable).with_name("tvlib-batch")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "tvlib.batch"]


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_folders(out: Path) -> dict[str, dict]:
    """Folder name -> manifest of every complete run folder."""
    return {p.name: json.loads((p / "manifest.json").read_text()) for p in sorted(out.iterdir())
            if not p.name.startswith(".") and (p / "manifest.json").exists()}


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def partials(out: Path) -> list[Path]:
    return sorted(out.glob(".partial-*"))


def quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------------- (a) a grid runs


def test_grid_runs_and_collects(tmp_path):
    grid = write_grid(tmp_path / "grid.yaml", "name: smoke\nfixed:\n  wait: 0.0\nsweep:\n  x: [1, 2]\n  seed: [0, 5]\n")
    out = tmp_path / "runs"
    result = run_batch(TINY_MD, grid, out, progress=False, echo=quiet)  # a jupytext .md, read with jupytext
    assert (len(result.ok), len(result.failed), len(result.skipped)) == (4, 0, 0)

    manifests = run_folders(out)
    assert sorted(manifests) == sorted(r.folder for r in plan("tiny", batch.load_grid(grid)))
    for name, m in manifests.items():
        p = m["parameters"]
        assert m["status"] == "ok" and m["error"] is None and m["grid"] == "smoke"
        assert m["swept"] == ["seed", "x"] and m["seeds"] == {"seed": p["seed"]}
        assert set(m["versions"]) >= {"tvlib", "torch", "transformers", "papermill"}
        assert m["device"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
        assert m["wall_s"] > 0 and m["started"] < m["finished"]
        assert m["glued_non_scalar"] == ["label"]
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics == {"y": 10 * p["x"] + p["seed"], "half": p["x"] / 2, "ab": 2 * 3 + p["x"]}
        executed = nbformat.read(out / name / "tiny.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
        assert executed.metadata.papermill.input_path == str(TINY_MD.resolve())
        assert "device cpu" in (out / name / "run.log").read_text() or torch.cuda.is_available()
    assert not partials(out)

    df = batch.collect(out)
    assert list(df.columns) == ["seed", "x", "y", "half", "ab", "status", "wall_s"]
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert (df["y"] == 10 * df["x"] + df["seed"]).all()

    assert main(["collect", "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv", index_col="run")
    pd.testing.assert_frame_equal(table[["seed", "x", "y", "half", "ab"]], df[["seed", "x", "y", "half", "ab"]],
                                  check_dtype=False)
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["ab__vs__x.png", "half__vs__x.png", "y__vs__x.png"]  # seeds are averaged, not plotted against


# ------------------------------------------------------------ (b) kill a batch, then resume


def kernels_of(pid: int) -> list[int]:
    """Kernel processes started by the batch process `pid` (they carry JPY_PARENT_PID)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"JPY_PARENT_PID={pid}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


@pytest.mark.skipif(not Path("/proc").is_dir() or os.name != "posix", reason="needs POSIX process groups and /proc")
def test_killed_batch_resumes_without_recomputing(tmp_path):
    grid = write_grid(tmp_path / "grid.yaml", "fixed:\n  wait: 0.6\nsweep:\n  x: [1, 2, 3]\n")
    out = tmp_path / "runs"
    cmd = CLI + ["run", str(TINY), str(grid), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        # wait for: one run finished, the next one's kernel executing its cells
        while not (out.is_dir() and run_folders(out) and partials(out) and (partials(out)[0] / "tiny.ipynb").exists()
                   and kernels_of(proc.pid)):
            assert proc.poll() is None, "the batch ended before it could be interrupted"
            assert time.monotonic() < deadline, "no run finished within 60 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kernels = kernels_of(proc.pid)  # a kernel runs in its own session: the kill does not reach it
    deadline = time.monotonic() + 15  # it notices that its parent is gone and exits
    while any(alive(k) for k in kernels) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [k for k in kernels if alive(k)]
    for k in survivors:
        os.kill(k, signal.SIGKILL)
    assert not survivors, "kernels of the killed batch outlived it"

    before = run_folders(out)
    assert 1 <= len(before) < 3 and partials(out)  # one finished, one interrupted mid-run
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{3 - len(before)} ok, 0 failed, {len(before)} skipped" in rerun.stdout

    after = run_folders(out)
    expected = plan("tiny", batch.load_grid(grid))
    assert sorted(after) == sorted(r.folder for r in expected)  # every run exactly once
    assert len({m["key"] for m in after.values()}) == 3
    assert all(m["status"] == "ok" for m in after.values())
    assert not partials(out)
    for name, m in before.items():  # finished runs were not recomputed
        assert after[name]["started"] == m["started"]


# ----------------------------------------------------------------- (c) a failing notebook cell


def test_failed_run_is_recorded_and_only_it_is_redone(tmp_path, monkeypatch, capsys):
    grid = write_grid(tmp_path / "grid.yaml", "sweep:\n  x: [1, 2, 3]\n")
    out = tmp_path / "runs"
    args = ["run", str(TINY), str(grid), "--out", str(out), "--no-progress"]
    monkeypatch.setenv("TINY_FAIL_X", "2")
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "FAILED tiny_x=2-" in printed and "cell 3 raised RuntimeError: x=2 was asked to fail" in printed
    assert "1 failed" in printed and "2 ok" in printed

    first = run_folders(out)
    failed = {n: m for n, m in first.items() if m["status"] == "failed"}
    assert list(failed) == [f for f in first if f.startswith("tiny_x=2-")]
    (name, m), = failed.items()
    assert m["error"]["cell_index"] == 3  # index in the source notebook, not counting the injected cell
    assert m["error"]["ename"] == "RuntimeError" and "asked to fail" in m["error"]["evalue"]
    assert str(out / name / m["log"]) in printed
    assert "RuntimeError" in (out / name / m["log"]).read_text()
    assert json.loads((out / name / "metrics.json").read_text()) == {"y": 20, "half": 1.0}  # glued before the error
    assert sum(m["status"] == "ok" for m in first.values()) == 2

    monkeypatch.delenv("TINY_FAIL_X")
    assert main(args) == 0
    assert "1 ok, 0 failed, 2 skipped" in capsys.readouterr().out
    second = run_folders(out)
    assert sorted(second) == sorted(first) and all(m["status"] == "ok" for m in second.values())
    for n in first:
        assert (second[n]["started"] == first[n]["started"]) == (n != name)
    assert not list(out.glob(".trash-*")) and not partials(out)


# ------------------------------------------------------------- (d) bad input, refused up front


BAD = {
    "unknown parameter": (TINY, "fixed:\n  nope: 1\nsweep:\n  x: [1]\n", [],
                          "nope not in the 'parameters' cell"),
    "allowed names listed": (TINY, "sweep:\n  lr: [0.1]\n", [], "allowed: x, seed, wait, device, a, b"),
    "missing notebook": (DATA / "nope.ipynb", "sweep:\n  x: [1]\n", [], "nope.ipynb' does not exist"),
    "malformed YAML": (TINY, "sweep:\n  x: [1, 2\n  seed: [0]\n", [], "malformed YAML at line 3, column"),
    "not a mapping": (TINY, "- x\n- 1\n", [], "must be a mapping"),
    "unknown key": (TINY, "sweeps:\n  x: [1]\n", [], "unknown key(s) sweeps"),
    "empty sweep": (TINY, "sweep:\n  x: []\n", [], "sweep.x is an empty list"),
    "scalar sweep": (TINY, "sweep:\n  x: 3\n", [], "sweep.x must be a list"),
    "sweep not a mapping": (TINY, "sweep:\n  - x\n", [], "'sweep' must be a mapping"),
    "duplicate value": (TINY, "sweep:\n  x: [1, 1]\n", [], "same value more than once"),
    "fixed and swept": (TINY, "fixed:\n  x: 1\nsweep:\n  x: [2]\n", [], "both 'fixed:' and 'sweep:'"),
    "shard out of range": (TINY, "sweep:\n  x: [1]\n", ["--shard", "2/2"], "0 <= i < n"),
    "shard zero": (TINY, "sweep:\n  x: [1]\n", ["--shard", "0/0"], "n >= 1"),
    "shard not i/n": (TINY, "sweep:\n  x: [1]\n", ["--shard", "first"], "must look like i/n"),
    "missing kernel": (TINY, "sweep:\n  x: [1]\n", ["--kernel", "no-such-kernel"], "not installed"),
    "bad timeout": (TINY, "sweep:\n  x: [1]\n", ["--timeout", "0"], "--timeout must be a positive"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_before_anything_runs(case, tmp_path, capsys):
    notebook, text, extra, message = BAD[case]
    grid = write_grid(tmp_path / "grid.yaml", text)
    out = tmp_path / "runs"
    assert main(["run", str(notebook), str(grid), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tvlib-batch: error: ") and message in err, err
    assert not out.exists()


def test_missing_grid_and_command_exit_status(tmp_path):
    out = tmp_path / "runs"
    done = subprocess.run(CLI + ["run", str(TINY), str(tmp_path / "none.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "none.yaml' does not exist" in done.stderr and not out.exists()


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "plain.ipynb")
    with pytest.raises(BatchError, match="no code cell tagged 'parameters'"):
        run_batch(tmp_path / "plain.ipynb", {"sweep": {"x": [1]}}, tmp_path / "runs", echo=quiet)
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------- (e) shards


def test_shards_partition_the_grid():
    grid = Grid(fixed={"wait": 0.0}, sweep={"x": [1, 2, 3, 4], "seed": [0, 1, 2]})
    everything = plan("tiny", grid)
    assert [r.index for r in everything] == list(range(12))
    for n in range(1, 6):
        shards = [plan("tiny", grid, (i, n)) for i in range(n)]
        keys = [r.key for s in shards for r in s]
        assert sorted(keys) == sorted(r.key for r in everything)  # each run in exactly one shard
        assert all(r.index % n == i for i, s in enumerate(shards) for r in s)


def test_two_shards_run_the_grid_exactly_once(tmp_path):
    grid = {"sweep": {"x": [1, 2, 3]}}
    out = tmp_path / "runs"
    r0 = run_batch(TINY, grid, out, shard="0/2", progress=False, echo=quiet)
    r1 = run_batch(TINY, grid, out, shard="1/2", progress=False, echo=quiet)
    assert (len(r0.ok), len(r1.ok)) == (2, 1) and not set(r0.ok) & set(r1.ok)
    assert sorted(run_folders(out)) == sorted(r.folder for r in plan("tiny", Grid(sweep={"x": [1, 2, 3]})))
    again = run_batch(TINY, grid, out, progress=False, echo=quiet, dry_run=True)
    assert [a for a, _ in again.planned] == ["skip"] * 3


# ------------------------------------------------------------------------- device and parts


def test_runner_passes_cuda_when_available_and_keeps_the_run_key(tmp_path, monkeypatch):
    from tvlib.batch import runner

    real = runner._environment
    monkeypatch.setattr(runner, "_environment", lambda cwd: {**real(cwd), "cuda": True, "device": "Fake GPU"})
    out = tmp_path / "runs"
    result = run_batch(TINY, {"sweep": {"x": [1]}}, out, progress=False, echo=quiet)
    (m,) = run_folders(out).values()
    assert m["parameters"]["device"] == "cuda" and m["injected"] == ["device"] and m["device"] == "Fake GPU"
    assert "device cuda" in (out / result.ok[0] / "run.log").read_text()
    assert result.ok[0] == plan("tiny", Grid(sweep={"x": [1]}))[0].folder  # the key ignores the added device
    lines = []
    run_batch(TINY, {"fixed": {"device": "cpu"}, "sweep": {"x": [1]}}, out, dry_run=True, echo=lines.append)
    assert "device=cuda added" not in lines[0]


def test_run_key_is_stable_and_specific():
    k = batch.run_key("setting", {"seed": 0, "d": 24})
    assert k == batch.run_key("setting", {"d": 24, "seed": 0}) and len(k) == 12
    assert k != batch.run_key("setting", {"d": 24, "seed": 1}) != batch.run_key("addition", {"d": 24, "seed": 0})
    assert k != batch.run_key("setting", {"d": 24.0, "seed": 0})


def test_yaml_floats_in_exponent_form(tmp_path):
    grid = batch.load_grid(write_grid(tmp_path / "g.yaml", "fixed:\n  lr: 1e-3\nsweep:\n  m: [1e3, 2.5E+3]\n"))
    assert grid.fixed == {"lr": 0.001} and grid.sweep == {"m": [1000.0, 2500.0]}


def test_parameters_include_tuple_assignments():
    params = batch.notebook_parameters(batch.load_notebook(TINY))
    assert list(params) == ["x", "seed", "wait", "device", "a", "b"] and params["a"] == "2"


@pytest.mark.parametrize(
    "text, value",
    [("0.25", 0.25), ("3", 3), ("True", 1), ("np.float64(0.5)", 0.5), ("np.int64(-4)", -4),
     ("tensor(0.1250)", 0.125), ("tensor(2., dtype=torch.float64)", 2.0), ("nan", math.nan),
     ("'text'", None), ("[1, 2]", None), ("array([1., 2.])", None)],
)
def test_glued_scalars_are_parsed(text, value):
    got = collect_mod._parse_scalar(text)
    assert (got is None and value is None) or (math.isnan(value) and math.isnan(got)) or got == value


def test_scrape_reads_displayed_and_hidden_glue():
    out = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell(outputs=[
        out("display_data", data={"application/papermill.record/text/plain": "0.5"},
            metadata={"scrapbook": {"name": "hidden", "mime_prefix": "application/papermill.record/"}}),
        out("display_data", data={"text/plain": "7"}, metadata={"scrapbook": {"name": "shown", "mime_prefix": ""}}),
        out("display_data", data={"application/scrapbook.scrap.json+json": {"name": "sb", "data": 1.5}},
            metadata={"scrapbook": {"name": "sb"}}),
        out("display_data", data={"text/plain": "<Figure>"}, metadata={}),
    ])
    metrics, other = batch.scrape_metrics(nbformat.v4.new_notebook(cells=[cell]))
    assert metrics == {"hidden": 0.5, "shown": 7, "sb": 1.5} and other == []


@pytest.mark.parametrize("text, message", [
    ("sweep:\n  steps: [0, 20]\n", "steps=0: expected an integer >= 1"),
    ("fixed:\n  seed: -1\n", "seed=-1: expected an integer >= 0"),
])
def test_chapter_values_are_checked_before_anything_runs(text, message, tmp_path, capsys):
    """A value the chapter's Params refuses stops the batch before the first run, naming the parameter."""
    grid = write_grid(tmp_path / "grid.yaml", text)
    out = tmp_path / "runs"
    assert main(["run", str(ROOT / "book" / "setting.ipynb"), str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()
