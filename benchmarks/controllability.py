"""Controllability benchmark: sweep beta and alpha on training pairs of every task (never eval/).

    python -m benchmarks.controllability                      # shipped model, 10 pairs per task
    python -m benchmarks.controllability --pairs 3 --model runs/medical

For each task, on N pairs taken evenly from train/ (MFF: synthetic focus pairs from pretrain/natural,
as in training), beta runs over -0.3..0.3 and alpha over 0..2. Prints and writes
docs/controllability.md (per task: mean curves, the share of pairs whose measure rises at every
step) and docs/controllability.png (beta and alpha strips of the first pair, with the curves).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tcmoa.model.checkpoint import load_model
from tcmoa.fuse.sweeps import ALPHAS, BETAS, alpha_sweep, beta_sweep, model_order, sweep_figure

from tcmoa.data_root import DATA_ROOT

from .data import need_data, training_pairs
from tcmoa.fuse.pipeline import Fuser

PRESETS = ("vif", "mef", "mff", "mri-pet")


def main() -> None:
    """Run both sweeps on every task, print and write the table and the figure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder / preset (default: the shipped model)")
    ap.add_argument("--root", type=Path, default=DATA_ROOT, help="data root holding train/ and pretrain/")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    need_data(args.root / "train", "benchmarks.controllability")  # before the model loads
    fuser = Fuser(load_model(args.model))
    lines = [f"# Controllability ({args.pairs} training pairs per task, model "
             f"`{args.model or 'shipped (checkpoints/)'}`)\n",
             "beta: SSIM(F,A) - SSIM(F,B) (grey, VIFB SSIM), mean over pairs; alpha: std of p_A over tokens, "
             "mean over modules and pairs. 'rises' = pairs whose measure rises at every step.\n",
             "| task | knob (values) | measure at value 1 | 2 | 3 | 4 | 5 | rises |", "|---|---|" + "---|" * 6]
    figure_rows = []
    for task in PRESETS:
        pairs = training_pairs(args.root, task, args.pairs)
        for knob, sweep_fn, values in (("beta", beta_sweep, BETAS), ("alpha", alpha_sweep, ALPHAS)):
            sweeps = [sweep_fn(fuser, pair, task) for pair in pairs]
            mean = np.mean([s.measure for s in sweeps], axis=0)
            rises = sum(s.rises_at_every_step() for s in sweeps)
            header = ", ".join(f"{v:g}" for v in values)
            lines.append(f"| {task} | {knob} ({header}) | " + " | ".join(f"{m:+.4f}" for m in mean)
                         + f" | {rises}/{len(sweeps)} |")
            figure_rows.append((f"{task}: {knob}", list(model_order(pairs[0], task)), sweeps[0]))
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "controllability.md").write_text("\n".join(lines) + "\n")
    sweep_figure(figure_rows, args.out / "controllability.png")
    print(f"wrote {args.out / 'controllability.md'} and {args.out / 'controllability.png'}")


if __name__ == "__main__":
    main()
