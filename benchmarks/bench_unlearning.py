"""Time the language-model unlearning experiment (book/unlearning.md) and print its two tables.

    .venv/bin/python tests/bench_unlearning.py                        # the chapter's defaults, tiny model, CPU
    .venv/bin/python tests/bench_unlearning.py --seed 1 --seed 2      # several seeds, one after the other
    torchrun --nproc_per_node 4 tests/bench_unlearning.py --model_name microsoft/phi-1_5 --device cuda \\
        --dtype bfloat16 --base_lr 2e-5 --lr 2e-5 --lora_lr 2e-4 ...  # fine-tuning spread over 4 GPUs

Every field of tvlib.llm.UnlearningParams is an option (lists comma-separated: --lams 0,-0.5,-1).
Prints wall and CPU time and the peak resident memory of this process (ru_maxrss).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
import typing

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

from tvlib import lm as llm  # noqa: E402


def parse() -> tuple[dict, list[int], int | None]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(llm.UnlearningParams)
    for f in dataclasses.fields(llm.UnlearningParams):
        if f.name == "seed":
            continue
        ap.add_argument(f"--{f.name}", default=None, help=f"{hints[f.name]} (default {f.default!r})")
    ap.add_argument("--seed", type=int, action="append", help="seed (repeat for several runs; default 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = vars(ap.parse_args())
    seeds, threads = args.pop("seed") or [0], args.pop("threads")
    kw = {}
    for name, value in args.items():
        if value is None:
            continue
        t = str(hints[name])
        if "tuple" in t:
            items = [v for v in value.split(",") if v]
            kw[name] = [float(v) for v in items] if "float" in t else items
        elif "bool" in t:
            kw[name] = value.lower() in ("1", "true", "yes")
        elif t.startswith("int") or t == "<class 'int'>":
            kw[name] = int(value)
        elif "float" in t:
            kw[name] = float(value)
        else:
            kw[name] = None if value in ("None", "none") else value
    return kw, seeds, threads or None


def main() -> None:
    kw, seeds, threads = parse()
    if threads:
        torch.set_num_threads(threads)
    for seed in seeds:
        p = llm.UnlearningParams(**{"progress": False, **kw, "seed": seed})
        t0, c0 = time.perf_counter(), time.process_time()
        res = llm.run_unlearning(p)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if int(os.environ.get("RANK", 0)) != 0:
            continue
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"seed {seed}: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak:.0f} MiB, "
              f"torch threads {torch.get_num_threads()}")
        if torch.cuda.is_available() and p.device != "cpu":
            print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        a = res["alpha_hat"]
        if a:
            print("  alpha-hat", {k: {t: round(v, 3) for t, v in d.items()} for k, d in a.items()})
        for kind in ("full", "lora"):
            print(f"  {kind}: Rouge-L")
            print(llm.results_table(res, kind).round(3).to_string().replace("\n", "\n    ").join(["    ", ""]))
            print(f"  {kind}: mean token loss (nats)")
            print(llm.results_table(res, kind, "nll").round(3).to_string().replace("\n", "\n    ").join(["    ", ""]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
