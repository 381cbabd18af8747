"""The GPU path, checked on one CUDA GPU: the addition sweep at a paper-like size, the unlearning pipeline
on a model of Phi-1.5's size (random initialisation, bfloat16), the pre-trained-encoder chapter's run on
all-MiniLM-L6-v2 at a larger size, and CPU-vs-GPU agreement of small runs.

Needs torch, transformers, peft (with accelerate), pandas and numpy; not papermill, ipykernel or
rouge-score (tvlib computes Rouge-L itself and the chapters' functions are called directly).
Run it through benchmarks/gpu_check.sh; --cpu-smoke runs every part at tiny sizes on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tvlib from this repository, no install

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS: dict = {}


def _say(msg: str) -> None:
    print(msg, flush=True)


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def _reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def addition(device: str, smoke: bool) -> None:
    """The addition chapter's sweep (Theorem 1) at a paper-like size: m >= M^2 log M, B >= log M / eps^2."""
    from tvlib.toy.setting import Setting
    from tvlib.toy.sweeps import arithmetic_sweep

    size = dict(m=16, batch_size=16, steps=20) if smoke else dict(m=1200, batch_size=320, steps=1000)
    setting = Setting(d=24, M=20, P=16, **size)
    alphas = [-0.8, -0.4, 0.0, 0.4, 0.8]
    lams = np.round(np.arange(-2.0, 3.0001, 0.2), 6).tolist()
    seeds = list(range(2 if smoke else 16))
    _reset(device)
    t0 = time.perf_counter()
    sweep = arithmetic_sweep(setting, alphas, lams, seeds, n_eval=40 if smoke else 1000, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    err = sweep.curves.groupby("task")["error"].mean().round(4).to_dict() if "error" in sweep.curves else {}
    RESULTS["addition"] = {"device": device, **size, "seeds": len(seeds), "alphas": len(alphas), "lams": len(lams),
                           "wall_s": round(wall, 1), "peak_gib": round(_peak_gib(device), 2)}
    _say(f"[addition] {device}: m={setting.m}, B={setting.batch_size}, T={setting.steps}, {len(seeds)} seeds x "
         f"{len(alphas)} alphas x {len(lams)} lams: {wall:.1f} s, peak GPU memory {_peak_gib(device):.2f} GiB; "
         f"mean hinge error by task {err}")


def addition_agreement(device: str) -> None:
    """A small addition sweep on the CPU and on `device`: largest difference of the merged models' curves."""
    from tvlib.toy.setting import Setting
    from tvlib.toy.sweeps import arithmetic_sweep

    setting = Setting(m=64, steps=100)
    args = (setting, [-0.4, 0.0, 0.4], [-1.0, 0.0, 1.0, 2.0], [0, 1])
    a = arithmetic_sweep(*args, n_eval=200, device="cpu").curves
    b = arithmetic_sweep(*args, n_eval=200, device=device).curves
    cols = [c for c in ("error", "accuracy") if c in a.columns]
    diff = {c: float(np.abs(a[c].to_numpy() - b[c].to_numpy()).max()) for c in cols}
    RESULTS["addition_agreement"] = diff
    _say(f"[addition, CPU vs {device}] m=64, 100 steps, 2 seeds: largest |difference| {diff}")


def _unlearning_params(device: str, dtype: str, smoke: bool, phi15: bool):
    from tvlib import lm as llm

    if smoke:
        kw = dict(n_sentences=40, vocab_size=320, hidden_size=32, num_layers=1, num_heads=2, block_size=32, stride=16,
                  batch_size=8, base_epochs=2.0, epochs=1.0, lora_epochs=1.0, lora_rank=2, lora_alpha=4.0, n_prompts=4,
                  prompt_len=8, cont_len=8, n_alpha_blocks=2, lams=[0.0, -0.5, -1.0])
    else:
        kw = {}
    if phi15:
        kw.update(model_name=llm.PHI15_SHAPED, base_epochs=2.0, base_lr=1e-4, epochs=1.0, lr=5e-5, lora_epochs=1.0,
                  lora_lr=2e-4, lora_rank=16, lora_alpha=32.0, n_prompts=8 if smoke else 32, batch_size=8,
                  n_alpha_blocks=4 if smoke else 8)
        if smoke:  # the Phi-1.5 path at the tiny model's size
            kw.update(model_name="tiny", lora_rank=2, lora_alpha=4.0)
    return llm.UnlearningParams(**kw, device=device, dtype=dtype, threads=max(1, torch.get_num_threads()))


def unlearning(device: str, smoke: bool) -> None:
    """The unlearning pipeline on a model of Phi-1.5's dimensions (random initialisation), bfloat16 compute."""
    from tvlib import lm as llm

    p = _unlearning_params(device, "bfloat16", smoke, phi15=True)
    _reset(device)
    t0 = time.perf_counter()
    res = llm.run_unlearning(p)
    wall = time.perf_counter() - t0
    m = res["metrics"]
    last = len(p.lams) - 1
    rise = {t: round(m[f"nll_full_{t}_{last}"] - m[f"nll_full_{t}_0"], 3) for t in llm.TEXTS}
    RESULTS["unlearning"] = {"device": device, "model": p.model_name, "dtype": p.dtype, "wall_s": round(wall, 1),
                             "peak_gib": round(_peak_gib(device), 2), "loss_rise_full": rise,
                             "alpha_tv": {t: round(m[f"alpha_tv_{t}"], 3) for t in llm.OTHERS}}
    _say(f"[unlearning] {device}, {p.model_name} ({p.dtype}): {wall:.1f} s, peak GPU memory "
         f"{_peak_gib(device):.2f} GiB; loss rise of the full-rank negation {rise}; alpha-hat {RESULTS['unlearning']['alpha_tv']}")


def unlearning_agreement(device: str) -> None:
    """The tiny unlearning run (float32) on the CPU and on `device`: largest differences of its metrics."""
    from tvlib import lm as llm
    from tvlib.lm import study

    runs = {}
    for dev in ("cpu", device):
        p = _unlearning_params(dev, "float32", smoke=True, phi15=False)
        runs[dev] = llm.run_unlearning(p)["metrics"]
    out = {}
    for group in ("alpha_", "nll_", "rouge_"):
        d = study.row_differences(runs["cpu"], {k: v for k, v in runs[device].items() if k.startswith(group)})
        k, v = next(iter(d.items()))
        out[group.rstrip("_")] = {"max_abs_diff": round(v, 6), "at": k}
    RESULTS["unlearning_agreement"] = out
    _say(f"[unlearning, CPU vs {device}] tiny model, float32: {out}")


def _pretrained_params(device: str, smoke: bool):
    from tvlib.encoder.params import PretrainedParams

    if smoke:
        kw = dict(n_train=64, n_test=32, steps=3, lam_step=1.0, ood_step=1.0, ranks=[1, 8], keeps=[0.5, 1.0])
    else:  # the chapter's sweep at a larger size: 8x the data, 10x the steps, the paper's 0.2 grids
        kw = dict(n_train=8192, n_test=2048, steps=300, batch_size=64, ood_step=0.2, ranks=[1, 2, 4, 8, 16, 32, 64, 384],
                  keeps=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    return PretrainedParams(**kw, device=device, seeds_table="", threads=max(1, torch.get_num_threads()))


def pretrained(device: str, smoke: bool) -> None:
    """The pre-trained-encoder chapter's run (all-MiniLM-L6-v2, book/pretrained.md) at a larger size, one held-out seed."""
    from tvlib.encoder import study, verdicts

    p = _pretrained_params(device, smoke)
    _reset(device)
    t0 = time.perf_counter()
    row = study.run_row(p)
    wall = time.perf_counter() - t0
    import pandas as pd

    runs = pd.DataFrame([row])
    table1 = verdicts.table1(runs, "full")[["relation", "goal", "lambda", "T1", "T2"]].round(3)
    RESULTS["pretrained"] = {"device": device, "n_train": p.n_train, "n_test": p.n_test, "steps": p.steps,
                             "wall_s": round(wall, 1), "peak_gib": round(_peak_gib(device), 2),
                             "alpha": {m: {r: round(row[f"{m}_alpha_{r}"], 3) for r in study.RELATIONS}
                                       for m in study.METHODS},
                             "table1_full": table1.to_dict("records")}
    _say(f"[pretrained] {device}, n_train {p.n_train}, {p.steps} steps: {wall:.1f} s, peak GPU memory "
         f"{_peak_gib(device):.2f} GiB; alpha-hat {RESULTS['pretrained']['alpha']}")


def pretrained_agreement(device: str) -> None:
    """The pre-trained encoder's smoke run on the CPU and on `device`: largest difference of its numbers."""
    from tvlib.encoder import study

    rows = {dev: study.run_row(_pretrained_params(dev, smoke=True)) for dev in ("cpu", device)}
    diff = {k: abs(rows["cpu"][k] - rows[device][k]) for k in rows["cpu"] if isinstance(rows["cpu"][k], float)}
    worst = max(diff, key=diff.get)
    RESULTS["pretrained_agreement"] = {"max_abs_diff": round(diff[worst], 6), "at": worst}
    _say(f"[pretrained, CPU vs {device}] smoke sizes: largest |difference| {diff[worst]:.3g} at {worst}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="every part at tiny sizes on the CPU (a test of the script)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--skip", action="append", default=[], choices=["addition", "agreement", "unlearning", "pretrained"])
    args = ap.parse_args()
    if args.cpu_smoke:
        device = "cpu"
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            _say("no CUDA GPU visible to torch: run with --cpu-smoke on a CPU machine")
            return 2
        device = "cuda"
    import transformers

    RESULTS["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "transformers": transformers.__version__,
                              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    _say(f"[environment] {RESULTS['environment']}")
    t0 = time.perf_counter()
    if "addition" not in args.skip:
        addition(device, args.cpu_smoke)
    if "agreement" not in args.skip:
        addition_agreement(device)
        unlearning_agreement(device)
        pretrained_agreement(device)
    if "unlearning" not in args.skip:
        unlearning(device, args.cpu_smoke)
    if "pretrained" not in args.skip:
        pretrained(device, args.cpu_smoke)
    RESULTS["total_s"] = round(time.perf_counter() - t0, 1)
    _say(f"[total] {RESULTS['total_s']:.0f} s (budget 480 s on the GPU)")
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
