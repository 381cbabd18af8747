"""Time the addition/negation sweep batched and as plain Python loops of single-replica models.

    .venv/bin/python benchmarks/bench_sweep.py                  # the grid of book/addition.md
    .venv/bin/python benchmarks/bench_sweep.py --seeds 2 --alphas -0.8 0 0.8 --threads 2
    .venv/bin/python benchmarks/bench_sweep.py --profile        # where the CPU time goes

Both runs do the same work: seeds x (1 + alphas) fine-tunings, then seeds x alphas x (lams + 3)
merged models evaluated on 2 x n_eval samples. Prints both wall and CPU times (the CPU time of
this process, which other jobs on a shared machine disturb far less than the wall time), their
ratios, the CPU load before and after, and how far the two results are apart (different SGD sample
streams, so they agree statistically, not bit for bit). --profile splits each run's CPU time into
sampling (drawing the SGD batches and evaluation samples), training (fine-tuning without its
sampling) and evaluation (the merged models' outputs).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
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
    p.add_argument("--profile", action="store_true", help="split the CPU time into sampling, training, evaluation")
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
    times, cpu, results = {}, {}, {}
    for name, batched in (("batched", True), ("loop", False)):
        prof = cProfile.Profile(time.process_time) if args.profile else None
        t, c = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        results[name] = arithmetic_sweep(setting, **kw, batched=batched)
        if prof:
            prof.disable()
        times[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
        print(f"{name:8s} wall {times[name]:8.1f} s   cpu {cpu[name]:8.1f} s")
        if prof:
            print("         " + _phases(prof))
    print(f"ratio loop / batched: wall {times['loop'] / times['batched']:.2f}, cpu {cpu['loop'] / cpu['batched']:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    diff = (results["batched"].curves["error"] - results["loop"].curves["error"]).abs()
    print(f"|error batched - error loop| over all rows: mean {diff.mean():.4f}, max {diff.max():.4f}")


def _phases(prof: cProfile.Profile) -> str:
    """CPU seconds (cumulative, under the profiler) of sampling, training without its sampling, evaluation."""
    stats = pstats.Stats(prof).stats  # (file, line, function) -> (cc, nc, tt, ct, callers)

    def cum(func: str, file: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[2] == func and os.path.basename(k[0]) == file)

    # the sampling done inside fine-tuning: the calls of Task.sample made from finetune
    in_training = sum(c[3] for k, v in stats.items() if k[2] == "sample" and os.path.basename(k[0]) == "data.py"
                      for ck, c in v[4].items() if ck[2] == "finetune")
    sampling, total = cum("sample", "data.py"), cum("arithmetic_sweep", "sweeps.py")
    training, evaluation = cum("finetune", "training.py") - in_training, cum("merged_outputs", "grid.py")
    return (f"profile (cpu s, under cProfile): sampling {sampling:.1f}, training without sampling {training:.1f}, "
            f"evaluation {evaluation:.1f}, other {total - sampling - training - evaluation:.1f}, total {total:.1f}")


if __name__ == "__main__":
    main()
