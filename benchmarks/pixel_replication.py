"""What issue 14's literal grid bar would cost: sources that are exact k x k pixel replications, fused
as given and re-sampled smoothly (bicubic) from their native grid.

    python -m benchmarks.pixel_replication                                # the bundled examples
    python -m benchmarks.pixel_replication --eval-root ../shared/data/eval  # + every eval set that has them

The Harvard PET and SPECT files are 2x nearest-neighbour upsamplings: their luma steps fall on every
other pixel, cell borders included, so they measure a block-step ratio of 2.3 and any fusion that keeps
their intensity inherits part of it. This prints, for each such example, the fused image's block-step
ratio at alpha 0..3 and its Qabf against the sources as given (scored as `tcmoa evaluate` scores), and
with the eval root, each set's means at the preset's knobs. It is a measurement for a decision, not a
feature: the library fuses the pixels it is given.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from demo.example_sets import find_examples
from tcmoa.fuse.pipeline import Fuser
from tcmoa.imaging import bt601_luma, read_image, resize_to, to_uint8
from tcmoa.metrics.artifacts import block_step_ratio
from tcmoa.metrics.evaluation import discover_sets
from tcmoa.metrics.scores import evaluate
from tcmoa.model.checkpoint import load_model

ALPHAS = (0.0, 1.0, 2.0, 3.0)


def replication_factor(image: np.ndarray, largest: int = 4) -> int:
    """The largest k <= `largest` for which `image` is its own k x k nearest-neighbour upsampling (1: none)."""
    h, w = image.shape[:2]
    for k in range(largest, 1, -1):
        if h % k == 0 and w % k == 0:
            native = image[::k, ::k]
            if np.array_equal(np.repeat(np.repeat(native, k, 0), k, 1), image):
                return k
    return 1


def smooth_resample(image: np.ndarray, k: int) -> np.ndarray:
    """A k x k replicated image re-sampled bicubically from its native grid to its own size, in [0, 1]."""
    return resize_to(image[::k, ::k], image.shape[:2])  # the library's one resize: bicubic when enlarging


def smoothed(sources: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The sources with every replicated one re-sampled smoothly."""
    return [smooth_resample(s, k) if (k := replication_factor(s)) > 1 else s for s in sources]


def qabf(fused: np.ndarray, sources: Sequence[np.ndarray]) -> float:
    """Qabf against the sources as given, on 8-bit images as `tcmoa evaluate` scores it."""
    return evaluate(to_uint8(fused), [to_uint8(s) for s in sources], ["Qabf"])["Qabf"]


def example_table(fuser: Fuser) -> None:
    """Per bundled example with a replicated source: ratio at each alpha and Qabf, as given and smoothed."""
    print("| example | sources | " + " | ".join(f"ratio α={a:g}" for a in ALPHAS)
          + " | " + " | ".join(f"Qabf α={a:g}" for a in ALPHAS) + " |")
    print("|---|---|" + "---:|" * (2 * len(ALPHAS)))
    for example in find_examples():
        given = [read_image(f) for f in example.files]
        if all(replication_factor(s) == 1 for s in given):
            continue
        for label, sources in (("as given", given), ("replicated ones bicubic", smoothed(given))):
            fused = [fuser.fuse(sources, example.task, alpha=a).image for a in ALPHAS]
            ratios = " | ".join(f"{block_step_ratio(bt601_luma(f)):.3f}" for f in fused)
            scores = " | ".join(f"{qabf(f, given):.4f}" for f in fused)
            print(f"| {example.task} {example.name} | {label} | {ratios} | {scores} |")


def eval_table(fuser: Fuser, root: Path) -> None:
    """Per eval set with replicated sources: mean Qabf and mean / max ratio at the preset's knobs."""
    print("\n| set | pairs | sources | Qabf | ratio mean | ratio max |")
    print("|---|---:|---|---:|---:|---:|")
    for eval_set in discover_sets(root):
        if not eval_set.items or all(replication_factor(read_image(p)) == 1 for p in eval_set.items[0][1]):
            continue
        items = [[read_image(p) for p in paths] for _, paths in eval_set.items]
        for label, prepare in (("as given", list), ("replicated ones bicubic", smoothed)):
            fused = [(fuser.fuse(prepare(given), eval_set.task).image, given) for given in items]
            q = np.mean([qabf(f, given) for f, given in fused])
            r = [block_step_ratio(bt601_luma(f)) for f, _ in fused]
            print(f"| {eval_set.name} | {len(items)} | {label} | {q:.4f} | {np.mean(r):.3f} | {max(r):.3f} |")


def main() -> None:
    """Print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--eval-root", type=Path, default=None, help="also every eval set under this root")
    args = ap.parse_args()
    fuser = Fuser(load_model(args.model))
    example_table(fuser)
    if args.eval_root is not None:
        eval_table(fuser, args.eval_root)


if __name__ == "__main__":
    main()
