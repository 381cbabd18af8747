"""Calibrate the image chapter's task relations: `.venv/bin/python benchmarks/calibrate_images.py [--pre-seeds 0 1 2 3 4]`.

Fine-tunes every candidate task of tvlib.images.calibrate.CANDIDATES on the Psi0 of each pre-training
seed (the chapter's other parameters), measures alpha-hat of every pair on the neutral probe, writes
the table to tvlib/tables/images-calibration.csv and prints the choices of choose_relations and
choose_ood with their per-seed alpha-hat and gamma-hat, and the time taken.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from tvlib import paper
from tvlib.images.calibrate import CANDIDATES, choose_ood, choose_relations, measure
from tvlib.images.params import ImagesParams
from tvlib.vectors.io import write_text

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pre-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--pre-epochs", type=int, nargs="+", default=[2, 3, 5, 8, 30])
    ap.add_argument("--out", default=str(ROOT / "tvlib" / "tables" / "images-calibration.csv"))
    ap.add_argument("--read", action="store_true", help="only read --out and print the choices")
    args = ap.parse_args()
    import pandas as pd

    t0 = time.perf_counter()
    if args.read:
        table = pd.read_csv(args.out)
    else:
        print(f"{len(CANDIDATES)} candidate tasks x pre-training seeds {args.pre_seeds}; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        parts = []
        for pre_epochs in args.pre_epochs:
            parts.append(measure(ImagesParams(pre_epochs=pre_epochs), args.pre_seeds))
            print(f"pre_epochs={pre_epochs}: {time.perf_counter() - t0:.0f} s", flush=True)
        table = pd.concat(parts, ignore_index=True)
        write_text(Path(args.out), table.to_csv(index=False, float_format="%.6g"))
        print(f"measured in {time.perf_counter() - t0:.0f} s -> {args.out}")
    rel = choose_relations(table, paper.IMAGE_ALPHA_HAT)
    for pre_epochs, rows in table.groupby("pre_epochs"):
        r = choose_relations(rows, paper.IMAGE_ALPHA_HAT)
        print(f"pre_epochs={pre_epochs}: Psi0 digit accuracy {rows.groupby('pre_seed').pre_acc.first().mean():.3f}; "
              f"best T1 {r['t1']}, T2 {r['t2']}, score {r['score']:.4f}")
    print(f"chosen: pre_epochs = {rel['pre_epochs']}, T1 = {rel['t1']}  (score {rel['score']:.4f})")
    for r, t in rel["t2"].items():
        a = rel["alpha"][r]
        print(f"  {r:>13s}: T2 = {t:>10s}  alpha-hat {a.mean():+.3f} +- {a.std(ddof=1):.3f} "
              f"(per seed {np.round(a, 3).tolist()}; paper {paper.IMAGE_ALPHA_HAT[r]:+.3f})")
    ood = choose_ood(table, paper.OOD_GAMMA, pre_epochs=rel["pre_epochs"])
    g, target = ood["gamma"], ood["T'"]
    print(f"out-of-domain: T1 = {ood['T1']}, T2 = {ood['T2']}, T' = {target}; "
          f"gamma-hat ({g[0].mean():+.3f} +- {g[0].std(ddof=1):.3f}, {g[1].mean():+.3f} +- {g[1].std(ddof=1):.3f}) "
          f"(paper {paper.OOD_GAMMA}; score {ood['score']:.4f})")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
