"""Contact sheet: one row per set with the sources, our fusion and the Laplacian-pyramid baseline.

    python -m benchmarks.contact_sheet                     # shipped model -> docs/contact_sheet.png
    python -m benchmarks.contact_sheet --model runs/medical --item 3

For looking at, not for tuning: it shows one eval pair per set (the --item-th), plus two hard cases
picked by a rule on the sources alone: the LLVIP night scene whose visible image has the most glare
(saturated pixels), and the MEFB scene whose exposures clip the most (bright in one, dark in the other).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tcmoa.metrics.baselines import run_baseline
from tcmoa.model.checkpoint import load_model
from tcmoa.metrics.evaluation import discover_sets
from tcmoa.imaging import bt601_luma, read_image
from tcmoa.fuse.pipeline import Fuser
from tcmoa.tasks import get_preset

from tcmoa.data_root import DATA_ROOT

from .data import need_data

SETS = ("vif/tno25", "vif/roadscene50", "vif/msrs20", "vif/llvip12", "mef/mefb100", "mef/mefb100", "mff/lytro20",
        "medical/harvard_pet", "medical/harvard_spect", "medical/harvard_ct")
HARD_CASES = {"vif/llvip12": "glare", "mef/mefb100": "clipping"}  # the first row of these sets: the hard case


def glare(sources: list[np.ndarray]) -> float:
    """Fraction of the visible image's luma at or above 0.96: headlights and street lamps."""
    return float((bt601_luma(sources[0]) >= 0.96).mean())


def clipping(sources: list[np.ndarray]) -> float:
    """The smaller of the bright-clipped fraction of the brightest exposure and the dark one of the darkest."""
    greys = sorted((bt601_luma(s) for s in sources), key=lambda g: float(g.mean()))
    return min(float((greys[-1] >= 0.96).mean()), float((greys[0] <= 0.04).mean()))


def pick(eval_set, rule: str) -> int:
    """Index of the item of a set that scores highest on a rule of its sources (HARD_CASES)."""
    score = glare if rule == "glare" else clipping
    values = [score([read_image(p) for p in paths]) for _, paths in eval_set.items]
    return int(np.argmax(values))


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
    found = {s.name: s for s in discover_sets(need_data(args.root, "benchmarks.contact_sheet"), SETS)}
    sets = [found[name] for name in SETS if name in found]
    fig, axes = plt.subplots(len(sets), 4, figsize=(4 * 2.6, len(sets) * 2.3), squeeze=False)
    hard_done: set[str] = set()
    for row, eval_set in zip(axes, sets):
        index = min(args.item, len(eval_set.items) - 1)
        if eval_set.name in HARD_CASES and eval_set.name not in hard_done:
            index = pick(eval_set, HARD_CASES[eval_set.name])
            hard_done.add(eval_set.name)
        item_id, paths = eval_set.items[index]
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
