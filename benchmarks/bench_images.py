"""Timing of the parts of the image chapter at its default sizes: `.venv/bin/python tests/bench_images.py [--full]`.

Runs the chapter's pipeline (pre-training, fine-tuning, the lam curves of Figure 1, alpha-hat, the
(lam1, lam2) heatmap of Figure 2) and prints the seconds each part took, the load average before and
after, and a few results so that a faster run can be checked to compute the same thing. With --full
it also executes book/images.md end to end through papermill and prints its wall time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tvlib.images.data import ColorParityTask, digit_splits, pretraining_data
from tvlib.images.vit import ViT, accuracy, alpha_hat, finetune_vits, lam_curves, merged_metrics, train, with_parity_head

ROOT = Path(__file__).resolve().parents[1]

# the chapter's defaults (book/images.md, cell tagged `parameters`)
MODEL = dict(patch_size=4, dim=32, depth=2, heads=4, mlp_dim=64)
PRE = dict(epochs=30, batch_size=64, lr=3e-3)
FT = dict(epochs=4, batch_size=64, lr=5e-4, loss="hinge")
THREADS = 1
SEEDS = [0, 1, 2]
LAMS = np.round(np.arange(-2.0, 2.0001, 0.2), 1)
GRID = np.round(np.arange(-2.0, 3.0001, 0.2), 1)
TASKS = {
    "T1": ColorParityTask(1.0, 0.0),
    "irrelevant": ColorParityTask(0.5, 0.5),
    "aligned": ColorParityTask(0.9, 0.1),
    "contradictory": ColorParityTask(0.0, 1.0),
    "ood_T1": ColorParityTask(0.85, 0.15),
    "ood_T2": ColorParityTask(0.05, 0.95),
}


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Part:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.parts[name] = time.perf_counter() - self.t

        return _Part()


def pipeline() -> None:
    t = Timer()
    torch.set_num_threads(THREADS)
    print(f"load average before: {os.getloadavg()}; torch threads: {torch.get_num_threads()}")
    with t("data"):
        train_split, test_split = digit_splits(test_fraction=0.3, seed=0)
        Xp, yp = pretraining_data(train_split, seed=0)
    with t("pre-training"):
        pre, _ = train(ViT(**MODEL, n_classes=10, seed=0), Xp, yp, **PRE, seed=0)
    print("pre-trained digit accuracy:", round(accuracy(pre, *pretraining_data(test_split, seed=1)), 3))
    psi0 = with_parity_head(pre, seed=0)
    base = {k: v.detach() for k, v in psi0.state_dict().items()}
    with t("fine-tuning"):
        vectors = dict(zip(TASKS, finetune_vits(psi0, list(TASKS.values()), train_split, seeds=SEEDS, **FT)))
    test = {name: task.data(test_split, seed=100) for name, task in TASKS.items()}
    with t("figure 1 curves"):
        curves = {
            rel: lam_curves(psi0, base, vectors["T1"], vectors[rel], LAMS, [test["T1"], test[rel]])
            for rel in ("irrelevant", "aligned", "contradictory")
        }
    with t("alpha-hat"):
        probe = ColorParityTask(0.5, 0.5).data(test_split, seed=101)[0]
        for rel in ("irrelevant", "aligned", "contradictory"):
            a = [alpha_hat(psi0, v1.apply_to(base), v2.apply_to(base), probe) for v1, v2 in zip(vectors["T1"], vectors[rel])]
            print(f"alpha-hat {rel}: {np.mean(a):.3f}")
    with t("heatmap (1 seed)"):
        L1, L2 = np.meshgrid(GRID, GRID, indexing="ij")
        heat = merged_metrics(psi0, base, [vectors["ood_T1"][0], vectors["ood_T2"][0]],
                              np.stack([L1.ravel(), L2.ravel()], 1), [test["aligned"]])["accuracy"]
    for rel, acc in curves.items():
        k = int(np.argmin(np.abs(LAMS - 1.0)))
        print(f"{rel}: accuracy at lam=1 (T1, T2) = {np.round(acc['accuracy'][:, k].mean(0), 3)}")
    print(f"heatmap: best accuracy {heat.max():.3f}")
    print(f"load average after: {os.getloadavg()}")
    total = sum(t.parts.values())
    for name, sec in t.parts.items():
        print(f"{name:>20s}: {sec:6.1f} s")
    print(f"{'total':>20s}: {total:6.1f} s")


def chapter() -> None:
    import jupytext
    import papermill

    nb = jupytext.read(ROOT / "book" / "images.md")
    out = Path("/tmp") / f"images-bench-{os.getpid()}.ipynb"
    t = time.perf_counter()
    papermill.execute_notebook(nb, str(out), cwd=str(ROOT / "book"), progress_bar=False, kernel_name="python3")
    print(f"book/images.md executed by papermill in {time.perf_counter() - t:.1f} s "
          f"(load average after: {os.getloadavg()})")
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    pipeline()
    if "--full" in sys.argv:
        chapter()
