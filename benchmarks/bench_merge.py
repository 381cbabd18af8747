"""tvlib merge vs mergekit vs a naive safe_open loop: wall time, peak memory and agreement.

    .venv/bin/python benchmarks/bench_merge.py [--workdir /tmp/tvlib-bench-merge] [--mergekit-python PATH]

1. Agreement, where the semantics agree, on a small float32 Llama (base + 2 fine-tuned copies):
   task arithmetic; TIES with normalize="weights", scope="tensor", rounding="floor"; DARE (linear)
   with rescale="l1" and given masks (benchmarks/_masks.py, patched into mergekit's Bernoulli).
   Reports the max abs difference of every output tensor.
2. Budgets (issue 15) on a ~380M-parameter bfloat16 Llama built from a config (random init; fine-tuned
   copies = base + small noise), each run in its own process, measured by wall time and peak RSS
   (ru_maxrss of the child): task arithmetic with 1, 2, 3 models; TIES at density 0.2 with 2 models.
   The same YAML config is given to `tvlib merge` and to `mergekit-yaml`.
3. Every method (METHOD_CONFIGS: task arithmetic, TIES, DARE, DARE-TIES, DELLA, Breadcrumbs, linear,
   SLERP, Model Stock), the same YAML to both tools, on the ~380M model and on the same model with
   Llama-3's vocabulary (128,256 x 1024 embedding and head: the largest tensors decide memory), run in
   `--reps` interleaved repetitions (tool, method and model alternate; default 2); the table gives the
   min and median wall time and the largest peak RSS of each. `--methods-only` runs this part alone,
   `--scale small` on tiny models (a check that it runs, not a measurement).

mergekit's pins conflict with the project's, so it lives in its own venv: --mergekit-python, else
$TVLIB_MERGEKIT_PYTHON, else <workdir>/mergekit-venv (created with pip: torch as in .venv, mergekit==0.1.5).
Prints a table and writes it to benchmarks/results/bench_merge.txt. Needs ~6 GB of disk and ~10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIG = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
           num_key_value_heads=16, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
SMALL = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=256, max_position_embeddings=128, tie_word_embeddings=False)
LLAMA3 = {**BIG, "vocab_size": 128256}
MODELS = {"llama-380M": BIG, "llama3-vocab": LLAMA3}


def method_config(method: str, root: Path, dtype: str = "bfloat16") -> str:
    """The YAML both tools merge for `method` (mergekit's layout and defaults; base + 2 fine-tunes, Model Stock 3)."""
    ft = [root / f"ft{i}" for i in (1, 2, 3)]
    body = {
        "task_arithmetic": [(ft[0], "{weight: 0.5}"), (ft[1], "{weight: 0.5}")],
        "ties": [(ft[0], "{weight: 0.5, density: 0.2}"), (ft[1], "{weight: 0.5, density: 0.2}")],
        "dare_linear": [(ft[0], "{weight: 0.5, density: 0.3}"), (ft[1], "{weight: 0.5, density: 0.3}")],
        "dare_ties": [(ft[0], "{weight: 0.5, density: 0.3}"), (ft[1], "{weight: 0.5, density: 0.3}")],
        "della": [(ft[0], "{weight: 0.5, density: 0.4, epsilon: 0.1}"), (ft[1], "{weight: 0.5, density: 0.4, epsilon: 0.1}")],
        "breadcrumbs": [(ft[0], "{weight: 0.5, density: 0.8, gamma: 0.01}"), (ft[1], "{weight: 0.5, density: 0.8, gamma: 0.01}")],
        "linear": [(ft[0], "{weight: 0.5}"), (ft[1], "{weight: 0.5}")],
        "slerp": [(root / "base", None), (ft[0], None)],
        "model_stock": [(ft[0], None), (ft[1], None), (ft[2], None)],
    }[method]
    lines = [f"merge_method: {method}"] + ([] if method == "linear" else [f"base_model: {root / 'base'}"]) + ["models:"]
    for path, params in body:
        lines.append(f"  - model: {path}")
        if params:
            lines.append(f"    parameters: {params}")
    if method == "slerp":
        lines.append("parameters: {t: [0.2, 0.8]}")
    lines.append(f"dtype: {dtype}")
    return "\n".join(lines) + "\n"


METHOD_CONFIGS = ("task_arithmetic", "ties", "dare_linear", "dare_ties", "della", "breadcrumbs", "linear", "slerp",
                  "model_stock")
BUDGET = {"ta_rss": "tvlib RSS <= mergekit's, flat in n", "ta_wall": "tvlib wall <= mergekit's (target 1.2x naive)",
          "ties": "TIES d=0.2, 2 models: RSS and wall <= mergekit's"}


# ---------------------------------------------------------------------------- subprocess modes


def measure(cmd: list[str]) -> None:
    """Run cmd; print one JSON line with its wall time and peak RSS (this process is fresh: its only child is cmd)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"rc": proc.returncode, "wall": wall, "rss": rss, "err": proc.stderr[-2000:]}))


def naive(base: str, models: list[str], weight: float, out: str) -> None:
    """The loop a practitioner writes: safe_open every file, merge tensor by tensor, save_file at the end."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    def handles(d: str):
        files = sorted(Path(d).glob("*.safetensors"))
        return [safe_open(str(f), framework="pt") for f in files]

    def where(hs):
        return {k: h for h in hs for k in h.keys()}

    b, ms = where(handles(base)), [where(handles(m)) for m in models]
    result = {}
    for k, h in b.items():
        t = h.get_tensor(k)
        acc = t.float()
        for m in ms:
            acc += weight * (m[k].get_tensor(k).float() - t.float())
        result[k] = acc.to(t.dtype)
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(result, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})


# ---------------------------------------------------------------------------- checkpoints


def build(root: Path, spec: dict, n_models: int, dtype: str, noise: float, shard: str) -> None:
    """base + n fine-tuned copies (base + noise * N(0, 1)), written tensor by tensor; skipped if present."""
    import torch
    import transformers

    from tvlib.vectors.checkpoint import ShardWriter, open_checkpoint, parse_size

    torch_dtype = getattr(torch, dtype)
    cfg = transformers.LlamaConfig(**spec, dtype=dtype, architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in transformers.LlamaForCausalLM(cfg).state_dict().items()}
    todo = [("base", None)] + [(f"ft{i}", i) for i in range(1, n_models + 1)]
    for name, seed in todo:
        out = root / name
        if (out / "config.json").exists():
            continue
        tmp = root / f".{name}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        cfg.save_pretrained(tmp)
        writer = ShardWriter(tmp, [(k, torch_dtype, s) for k, s in shapes.items()], parse_size(shard))
        base = open_checkpoint(root / "base") if seed is not None else None
        for j, (k, s) in enumerate(shapes.items()):
            if base is None:
                g = torch.Generator().manual_seed(1000 + j)
                t = torch.ones(s) if len(s) == 1 else 0.02 * torch.randn(s, generator=g)
            else:
                g = torch.Generator().manual_seed(seed * 100_003 + j)
                t = base.read(k).float() + noise * torch.randn(s, generator=g)
            writer.write(k, t.to(torch_dtype))
        writer.close()
        tmp.rename(out)


def yaml_config(method: str, root: Path, n: int, *, weight: float, density: float | None = None,
                dtype: str = "bfloat16", params: dict | None = None, model_params: dict | None = None) -> str:
    """One config both tools read (mergekit's keys; tvlib's extra parameters only when given)."""
    lines = [f"merge_method: {method}", f"base_model: {root / 'base'}", "models:"]
    for i in range(1, n + 1):
        p = {"weight": weight, **({"density": density} if density is not None else {}), **(model_params or {})}
        lines.append(f"  - model: {root / f'ft{i}'}")
        lines.append("    parameters: {" + ", ".join(f"{k}: {v}" for k, v in p.items()) + "}")
    if params:
        lines.append("parameters: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}")
    lines.append(f"dtype: {dtype}")
    return "\n".join(lines) + "\n"


def max_abs_diff(a: Path, b: Path) -> tuple[float, int, int]:
    """(max |a - b|, entries that differ, entries) over every tensor both checkpoints hold."""
    from tvlib.vectors.checkpoint import open_checkpoint

    ca, cb = open_checkpoint(a), open_checkpoint(b)
    worst, diff, total = 0.0, 0, 0
    for k in ca.keys():
        x, y = ca.read(k).double(), cb.read(k).double()
        d = (x - y).abs()
        worst, diff, total = max(worst, float(d.max())), diff + int((d > 0).sum()), total + d.numel()
    missing = set(ca.keys()) ^ set(cb.keys())
    if missing:
        raise SystemExit(f"outputs differ in keys: {sorted(missing)[:5]}")
    return worst, diff, total


# ---------------------------------------------------------------------------- driver


def find_mergekit(arg: str | None, workdir: Path) -> str:
    for cand in (arg, os.environ.get("TVLIB_MERGEKIT_PYTHON"), str(workdir / "mergekit-venv/bin/python"),
                 "/tmp/mk-venv/bin/python"):
        if cand and Path(cand).exists() and subprocess.run([cand, "-c", "import mergekit"],
                                                           capture_output=True).returncode == 0:
            return cand
    import torch

    venv = workdir / "mergekit-venv"
    print(f"installing mergekit 0.1.5 into {venv} (its own venv: its pins conflict with the project's)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run(pip + ["mergekit==0.1.5"], check=True)
    return str(venv / "bin/python")


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, __file__, "_measure", "--", *cmd], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res['err']}")
    return res


def agreement(work: Path, mk_python: str, say) -> list[tuple[str, float, int, int]]:
    """tvlib vs mergekit where their semantics agree, on a small float32 model."""
    from _masks import hashed_keep

    from tvlib.vectors import Recipe, merge_checkpoints

    root = work / "small"
    build(root, SMALL, 2, "float32", 0.01, "1GB")
    cases = [
        ("task_arithmetic", dict(weight=0.7), Recipe("task_arithmetic", [0.7, 0.7]), None, {}),
        ("ties (weights)", dict(weight=0.6, density=0.3),
         Recipe("ties", [0.6, 0.6], [0.3, 0.3], normalize="weights", scope="tensor", rounding="floor"), None, {}),
        ("dare_linear (l1)", dict(weight=0.8, density=0.5),
         Recipe("dare", [0.8, 0.8], [0.5, 0.5], rescale="l1"),
         lambda i, key, d, p: hashed_keep(d, 1.0 - p), {"hashed": True}),
    ]
    rows = []
    for name, kw, recipe, masks, flags in cases:
        method = {"ties (weights)": "ties", "dare_linear (l1)": "dare_linear"}.get(name, name)
        cfg = work / f"small-{method}.yaml"
        cfg.write_text(yaml_config(method, root, 2, dtype="float32", **kw))
        mk_out, tv_out = work / f"small-{method}-mergekit", work / f"small-{method}-tvlib"
        cmd = [mk_python, str(HERE / "_mergekit_driver.py"), str(cfg), str(mk_out)]
        subprocess.run(cmd + (["--hashed-masks"] if flags.get("hashed") else []), check=True, capture_output=True)
        merge_checkpoints(root / "base", [root / "ft1", root / "ft2"], recipe, tv_out, masks=masks, force=True)
        worst, diff, total = max_abs_diff(tv_out, mk_out)
        rows.append((name, worst, diff, total))
        say(f"  {name:18s} max |tvlib - mergekit| = {worst:.3g}  ({diff:,} of {total:,} entries differ)")
    return rows


def budgets(work: Path, mk_python: str, say) -> dict:
    """Wall time and peak RSS of tvlib, mergekit and the naive loop on the ~380M bf16 model."""
    root = work / "big"
    t0 = time.perf_counter()
    build(root, BIG, 3, "bfloat16", 2e-3, "500MB")
    from tvlib.vectors.checkpoint import open_checkpoint

    n_params = open_checkpoint(root / "base").numel()
    say(f"checkpoints: {n_params / 1e6:.0f}M parameters, bfloat16, base + 3 copies "
        f"(built in {time.perf_counter() - t0:.0f} s, or found in {root})")
    for d in ("base", "ft1", "ft2", "ft3"):  # warm the page cache so no tool pays the first disk read
        for f in (root / d).glob("*.safetensors"):
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    tvlib_bin = str(Path(sys.executable).parent / "tvlib")
    mk_bin = str(Path(mk_python).parent / "mergekit-yaml")
    results = {}
    jobs = []
    for n in (1, 2, 3):
        cfg = work / f"ta{n}.yaml"
        cfg.write_text(yaml_config("task_arithmetic", root, n, weight=0.5))
        jobs += [(f"task arithmetic, {n}", "tvlib merge", [tvlib_bin, "merge", str(cfg), str(work / "out-tvlib"), "--force"]),
                 (f"task arithmetic, {n}", "mergekit-yaml", [mk_bin, str(cfg), str(work / "out-mergekit"), "--quiet"]),
                 (f"task arithmetic, {n}", "naive safe_open loop",
                  [sys.executable, __file__, "_naive", str(root / "base"), *[str(root / f"ft{i}") for i in range(1, n + 1)],
                   "--weight", "0.5", "--out", str(work / "out-naive")])]
    cfg = work / "ties2.yaml"  # mergekit's layout: mergekit's semantics (per-tensor top-k) in both tools
    cfg.write_text(yaml_config("ties", root, 2, weight=0.5, density=0.2))
    cfg_g = work / "ties2-global.yaml"
    cfg_g.write_text(yaml_config("ties", root, 2, weight=0.5, density=0.2, params={"scope": "global"}))
    jobs += [("TIES d=0.2, 2", "tvlib merge", [tvlib_bin, "merge", str(cfg), str(work / "out-tvlib-ties"), "--force"]),
             ("TIES d=0.2, 2", "tvlib merge (scope: global)",
              [tvlib_bin, "merge", str(cfg_g), str(work / "out-tvlib-ties-g"), "--force"]),
             ("TIES d=0.2, 2", "mergekit-yaml", [mk_bin, str(cfg), str(work / "out-mergekit-ties"), "--quiet"])]
    for case, tool, cmd in jobs:
        res = run_measured(cmd, {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
        results[(case, tool)] = res
        say(f"  {case:20s} {tool:28s} {res['wall']:6.1f} s  {res['rss'] / 1e9:5.2f} GB  "
            f"{res['rss'] / n_params:5.2f} B/param")
        if case == "task arithmetic, 2" and tool != "naive safe_open loop":
            keep = work / f"ta2-{tool.split()[0]}"
            shutil.rmtree(keep, ignore_errors=True)
            os.replace(work / ("out-tvlib" if tool.startswith("tvlib") else "out-mergekit"), keep)
    results["n_params"] = n_params
    worst, diff, total = max_abs_diff(work / "ta2-tvlib", work / "ta2-mergekit-yaml")
    results["ta_bf16_diff"] = (worst, diff, total)
    say(f"  task arithmetic, 2 models, bf16: max |tvlib - mergekit| = {worst:.3g} ({diff:,} of {total:,} entries "
        "differ: mergekit computes in bf16 (dtype: bfloat16), tvlib in fp32 with one rounding)")
    return results


def methods_bench(work: Path, mk_python: str, say, *, models: list[str], methods: list[str], reps: int,
                  scale: str = "full") -> list[str]:
    """Every method, both tools, interleaved repetitions; returns the table's lines."""
    import statistics

    from tvlib.vectors.checkpoint import open_checkpoint

    tvlib_bin = str(Path(sys.executable).parent / "tvlib")
    mk_bin = str(Path(mk_python).parent / "mergekit-yaml")
    runs: dict[tuple[str, str, str], list[dict]] = {}
    sizes = {}
    for name in models:
        spec = MODELS[name] if scale == "full" else {**SMALL, "vocab_size": 4096 if name == "llama3-vocab" else 256}
        root = work / ("methods-" + name + ("" if scale == "full" else "-small"))
        build(root, spec, 3, "bfloat16", 2e-3, "500MB")
        sizes[name] = open_checkpoint(root / "base").numel()
        for d in ("base", "ft1", "ft2", "ft3"):  # warm the page cache so no tool pays the first disk read
            for f in (root / d).glob("*.safetensors"):
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass
        for method in methods:
            (work / f"{name}-{method}.yaml").write_text(method_config(method, root))
    for rep in range(reps):
        for name in models:
            for method in methods:
                cfg = str(work / f"{name}-{method}.yaml")
                tools = [("tvlib merge", [tvlib_bin, "merge", cfg, str(work / "out-m-tvlib"), "--force"]),
                         ("mergekit-yaml", [mk_bin, cfg, str(work / "out-m-mergekit"), "--quiet"])]
                for tool, cmd in tools if rep % 2 == 0 else tools[::-1]:
                    res = run_measured(cmd, {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
                    runs.setdefault((name, method, tool), []).append(res)
                    say(f"  rep {rep + 1} {name:12s} {method:15s} {tool:14s} {res['wall']:6.1f} s  "
                        f"{res['rss'] / 1e9:5.2f} GB  (load {os.getloadavg()[0]:.1f})")
    lines = ["| model | method | tool | wall min / median (s) | peak RSS (GB) | vs mergekit (median wall, RSS) |",
             "|---|---|---|---|---|---|"]
    for name in models:
        for method in methods:
            mk = runs[(name, method, "mergekit-yaml")]
            mk_wall, mk_rss = statistics.median(r["wall"] for r in mk), max(r["rss"] for r in mk)
            for tool in ("tvlib merge", "mergekit-yaml"):
                rs = runs[(name, method, tool)]
                wall, rss = statistics.median(r["wall"] for r in rs), max(r["rss"] for r in rs)
                lines.append(f"| {name} ({sizes[name] / 1e6:.0f}M) | {method} | {tool} | "
                             f"{min(r['wall'] for r in rs):.1f} / {wall:.1f} | {rss / 1e9:.2f} | "
                             f"{wall / mk_wall:.2f}x, {rss / mk_rss:.2f}x |")
    return lines


def table(res: dict) -> list[str]:
    n = res["n_params"]
    lines = ["| case | tool | wall (s) | peak RSS (GB) | bytes/param | vs mergekit (wall, RSS) |",
             "|---|---|---|---|---|---|"]
    for (case, tool), r in ((k, v) for k, v in res.items() if isinstance(k, tuple)):
        mk = res[(case, "mergekit-yaml")]
        lines.append(f"| {case} | {tool} | {r['wall']:.1f} | {r['rss'] / 1e9:.2f} | {r['rss'] / n:.2f} | "
                     f"{r['wall'] / mk['wall']:.2f}x, {r['rss'] / mk['rss']:.2f}x |")
    return lines


def verdicts(res: dict) -> list[str]:
    ta = [res[(f"task arithmetic, {n}", "tvlib merge")] for n in (1, 2, 3)]
    mk = [res[(f"task arithmetic, {n}", "mergekit-yaml")] for n in (1, 2, 3)]
    nv = [res[(f"task arithmetic, {n}", "naive safe_open loop")] for n in (1, 2, 3)]
    ties, ties_mk = res[("TIES d=0.2, 2", "tvlib merge")], res[("TIES d=0.2, 2", "mergekit-yaml")]
    flat = max(r["rss"] for r in ta) / min(r["rss"] for r in ta)
    out = [
        f"task arithmetic RSS <= mergekit's for n = 1, 2, 3: {all(a['rss'] <= b['rss'] for a, b in zip(ta, mk))}; "
        f"tvlib's RSS varies {flat:.2f}x over n (flat)",
        f"task arithmetic wall <= mergekit's: {all(a['wall'] <= b['wall'] for a, b in zip(ta, mk))}; "
        "tvlib / naive loop = " + ", ".join(f"{a['wall'] / c['wall']:.2f}x" for a, c in zip(ta, nv)) + " (target 1.2x)",
        f"TIES d=0.2, 2 models: RSS <= mergekit's: {ties['rss'] <= ties_mk['rss']}, wall <= mergekit's: "
        f"{ties['wall'] <= ties_mk['wall']}",
        f"for a 7B model: tvlib task arithmetic ~ {ta[1]['rss'] / res['n_params'] * 7:.1f} GB if memory scaled with size "
        "(it does not: it scales with the largest tensor)",
    ]
    return out


def import_times() -> tuple[float, float]:
    """Seconds for `import torch`, and for `import tvlib.vectors` beyond it (best of 3 fresh processes)."""
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "import tvlib.vectors; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    runs = [tuple(map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())) for _ in range(3)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        return measure(sys.argv[sys.argv.index("--") + 1:])
    if len(sys.argv) > 1 and sys.argv[1] == "_naive":
        p = argparse.ArgumentParser()
        p.add_argument("mode"), p.add_argument("base"), p.add_argument("models", nargs="+")
        p.add_argument("--weight", type=float), p.add_argument("--out")
        a = p.parse_args()
        return naive(a.base, a.models, a.weight, a.out)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/tvlib-bench-merge")
    parser.add_argument("--mergekit-python", default=None)
    parser.add_argument("--skip-budgets", action="store_true", help="only the agreement checks (seconds)")
    parser.add_argument("--methods-only", action="store_true", help="only part 3: every method, both tools")
    parser.add_argument("--models", default=",".join(MODELS), help=f"part 3's models (default {','.join(MODELS)})")
    parser.add_argument("--methods", default=",".join(METHOD_CONFIGS), help="part 3's methods (default: all)")
    parser.add_argument("--reps", type=int, default=2, help="part 3's interleaved repetitions (default 2)")
    parser.add_argument("--scale", choices=("full", "small"), default="full",
                        help="small: tiny models, to check that part 3 runs (not a measurement)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    mk = find_mergekit(args.mergekit_python, work)
    mk_version = subprocess.run([mk, "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                                capture_output=True, text=True).stdout.strip()
    say(f"bench_merge: tvlib vs mergekit {mk_version} (CPU, {os.cpu_count()} cores); "
        f"python benchmarks/bench_merge.py --workdir {work}")
    t_torch, t_vectors = import_times()
    say(f"import torch: {t_torch:.2f} s; import tvlib.vectors beyond it: {t_vectors:.2f} s (budget 0.5 s)")
    say(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes share them); "
        "every timed run uses OMP_NUM_THREADS=1, tvlib's default")
    if args.methods_only:
        say(f"every method, the same YAML to both tools, {args.reps} interleaved repetitions:")
        table3 = methods_bench(work, mk, say, models=args.models.split(","), methods=args.methods.split(","),
                               reps=args.reps, scale=args.scale)
        say("")
        for line in table3:
            say(line)
        say(f"load average at end: {os.getloadavg()[0]:.1f}")
        out = HERE / "results" / ("bench_merge_methods.txt" if args.scale == "full" else "bench_merge_methods_small.txt")
        out.write_text("\n".join(lines) + "\n")
        print(f"written to {out.relative_to(ROOT)}")
        return
    say("agreement where the semantics agree (small float32 Llama, base + 2 models):")
    agreement(work, mk, say)
    if args.skip_budgets:
        return
    say("budgets (~380M-parameter bfloat16 Llama; each run in its own process; peak RSS = ru_maxrss):")
    res = budgets(work, mk, say)
    say("")
    for line in table(res):
        say(line)
    say("")
    for line in verdicts(res):
        say(line)
    say(f"load average at end: {os.getloadavg()[0]:.1f}")
    out = HERE / "results" / "bench_merge.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
