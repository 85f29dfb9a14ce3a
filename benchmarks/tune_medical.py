"""Tune the alpha/beta defaults of the unseen medical tasks on train/medical (never eval/).

    python -m benchmarks.tune_medical                      # shipped model, 8 pairs per modality
    python -m benchmarks.tune_medical --model runs/medical --pairs 12

For MRI + CT / PET / SPECT, every (alpha, beta) of a small grid fuses N training pairs (taken evenly
through the set); the score is mean Qabf + mean VIF (VIFB conventions, tcmoa.metrics). Prints the
grid per modality and the best setting; the chosen values go into tcmoa/tasks.py by hand, with the
table in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tcmoa.model.checkpoint import load_model
from tcmoa.imaging import to_uint8
from tcmoa.metrics.scores import evaluate
from tcmoa.fuse.pipeline import Fuser

from tcmoa.data_root import DATA_ROOT

from .data import need_data, training_pairs

ALPHAS = (0.5, 1.0, 1.5, 2.0)
BETAS = (-0.2, -0.1, 0.0, 0.1, 0.2)


def score(fuser: Fuser, pairs: list[list[np.ndarray]], task: str, alpha: float, beta: float) -> tuple[float, float]:
    """Mean Qabf and mean VIF of the fusions of `pairs` at (alpha, beta)."""
    values = []
    for sources in pairs:
        fused = fuser.fuse(sources, task, alpha=alpha, beta=beta).image
        m = evaluate(to_uint8(fused), [to_uint8(s) for s in sources], ["Qabf", "VIF"])
        values.append((m["Qabf"], m["VIF"]))
    return tuple(np.mean(values, axis=0))


def main() -> None:
    """Grid-search alpha/beta per medical modality on training pairs; print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder / preset (default: the shipped model)")
    ap.add_argument("--root", type=Path, default=DATA_ROOT, help="data root holding train/")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    args = ap.parse_args()
    need_data(args.root / "train", "benchmarks.tune_medical")  # before the model loads
    fuser = Fuser(load_model(args.model))
    for task in ("mri-ct", "mri-pet", "mri-spect"):
        pairs = training_pairs(args.root, task, args.pairs)  # evenly through the set, as the sweeps take them
        print(f"\n### {task} ({len(pairs)} training pairs): Qabf + VIF\n")
        print("| alpha \\ beta | " + " | ".join(f"{b:+g}" for b in args.betas) + " |")
        print("|---|" + "---|" * len(args.betas))
        best: tuple[float, tuple[float, float, float, float]] = (-1.0, (0.0, 0.0, 0.0, 0.0))
        for alpha in args.alphas:
            cells = []
            for beta in args.betas:
                q, v = score(fuser, pairs, task, alpha, beta)
                cells.append(f"{q + v:.3f}")
                best = max(best, (q + v, (alpha, beta, q, v)), key=lambda x: x[0])
            print(f"| {alpha:g} | " + " | ".join(cells) + " |", flush=True)
        alpha, beta, q, v = best[1]
        print(f"\nbest for {task}: alpha {alpha:g}, beta {beta:+g} (Qabf {q:.3f}, VIF {v:.3f})")


if __name__ == "__main__":
    main()
