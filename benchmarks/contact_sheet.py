"""Contact sheet: one row per task with the sources, our fusion and the Laplacian-pyramid baseline.

    python -m benchmarks.contact_sheet                     # shipped model -> docs/contact_sheet.png
    python -m benchmarks.contact_sheet --model runs/medical --item 3

For looking at, not for tuning: it shows one eval pair per task (the --item-th of each set).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tcmoa.metrics.baselines import run_baseline
from tcmoa.model.checkpoint import load_model
from tcmoa.metrics.evaluation import discover_sets
from tcmoa.imaging import read_image
from tcmoa.fuse.pipeline import Fuser
from tcmoa.tasks import get_preset

from .data import DATA_ROOT, need_data

SETS = ("vif/tno25", "vif/roadscene50", "vif/msrs20", "mef/mefb100", "mff/lytro20", "medical/harvard_pet",
        "medical/harvard_spect", "medical/harvard_ct")


def main() -> None:
    """Fuse one pair per set with the model and the Laplacian baseline; draw them in rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder / preset (default: the shipped model)")
    ap.add_argument("--root", type=Path, default=DATA_ROOT / "eval")
    ap.add_argument("--item", type=int, default=0, help="which pair of each set")
    ap.add_argument("--out", type=Path, default=Path("docs/contact_sheet.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fuser = Fuser(load_model(args.model))
    sets = discover_sets(need_data(args.root, "benchmarks.contact_sheet"), SETS)
    fig, axes = plt.subplots(len(sets), 4, figsize=(4 * 2.6, len(sets) * 2.3), squeeze=False)
    for row, eval_set in zip(axes, sets):
        item_id, paths = eval_set.items[min(args.item, len(eval_set.items) - 1)]
        sources = [read_image(p) for p in paths]
        ours = fuser.fuse(sources, eval_set.task).image
        laplacian = run_baseline("laplacian", sources, get_preset(eval_set.task).router)
        roles = get_preset(eval_set.task).roles
        panels = [(roles[0], sources[0]), (roles[1], sources[1]), ("TC-MoA (ours)", ours), ("Laplacian", laplacian)]
        for ax, (label, image) in zip(row, panels):
            ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(f"{eval_set.name}\n{item_id}", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
