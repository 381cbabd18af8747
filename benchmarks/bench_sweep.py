"""Time the addition/negation sweep batched and as plain Python loops of single-replica models.

    .venv/bin/python tests/bench_sweep.py                  # the grid of book/addition.md
    .venv/bin/python tests/bench_sweep.py --seeds 2 --alphas -0.8 0 0.8 --threads 2

Both runs do the same work: seeds x (1 + alphas) fine-tunings, then seeds x alphas x (lams + 3)
merged models evaluated on 2 x n_eval samples. Prints both wall times, the ratio, the CPU load
before and after, and how far the two results are apart (different SGD sample streams, so they
agree statistically, not bit for bit).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from tvlib.toy.setting import Setting
from tvlib.toy.sweeps import arithmetic_sweep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", type=float, nargs="+", default=[-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8])
    p.add_argument("--lam-min", type=float, default=-2.0)
    p.add_argument("--lam-max", type=float, default=3.0)
    p.add_argument("--lam-step", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-eval", type=int, default=400)
    p.add_argument("--steps", type=int, default=Setting().steps)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    setting = Setting(steps=args.steps)
    lams = np.round(np.arange(args.lam_min, args.lam_max + args.lam_step / 2, args.lam_step), 2) + 0.0
    kw = dict(alphas=args.alphas, lams=lams, seeds=range(args.seeds), n_eval=args.n_eval)
    n_models = args.seeds * len(args.alphas) * (len(lams) + 3)
    print(f"grid: {args.seeds} seeds x {len(args.alphas)} alphas x {len(lams)} lams; "
          f"{args.seeds * (1 + len(args.alphas))} fine-tunings of {args.steps} steps, {n_models} merged models, "
          f"n_eval={args.n_eval}, torch threads={args.threads}")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    times, results = {}, {}
    for name, batched in (("batched", True), ("loop", False)):
        t = time.perf_counter()
        results[name] = arithmetic_sweep(setting, **kw, batched=batched)
        times[name] = time.perf_counter() - t
        print(f"{name:8s} {times[name]:8.1f} s")
    print(f"ratio loop / batched: {times['loop'] / times['batched']:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    diff = (results["batched"].curves["error"] - results["loop"].curves["error"]).abs()
    print(f"|error batched - error loop| over all rows: mean {diff.mean():.4f}, max {diff.max():.4f}")


if __name__ == "__main__":
    main()
