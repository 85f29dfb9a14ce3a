"""What a person sees, measured: night glare, a clipped exposure, and the token grid, per model.

    python -m benchmarks.behaviour                                   # shipped model
    python -m benchmarks.behaviour --models checkpoints runs/old     # several, side by side

The same cases as tests/test_behaviour.py (vendored training crops in tests/data, the bundled
examples in demo/examples), with the Laplacian pyramid beside the models:
- glare: share of the infrared's Sobel gradient kept inside a saturated disc pasted into the visible;
- exposure: share of the under-exposed image's gradient kept where the over-exposed one clips, and
  the local contrast (mean 7x7 SD) against the average fusion's;
- grid: block-step ratio (steps across 8-px cell borders / steps elsewhere) and grid prominence
  (steps across borders / the largest mean step at any other offset) at alpha 0, 1, 2, 3 on every
  bundled example, with the sources' own value, and isolated 8x8 blocks.
"""
from __future__ import annotations

import argparse
from pathlib import Path


from demo.example_sets import find_examples
from tcmoa.fuse.pipeline import Fuser
from tcmoa.imaging import bt601_luma, read_image
from tcmoa.metrics.artifacts import (block_step_ratio, erode, gradient_ratio, grid_prominence, isolated_blocks,
                                     local_contrast, with_glare)
from tcmoa.metrics.baselines import average_fusion, laplacian_pyramid_fusion
from tcmoa.model.checkpoint import load_model

VENDORED = Path(__file__).resolve().parents[1] / "tests" / "data"
ALPHAS = (0.0, 1.0, 2.0, 3.0)



def main() -> None:
    """Print the three tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[None], help="model folders (default: the shipped model)")
    args = ap.parse_args()
    fusers = {str(m or "shipped"): Fuser(load_model(m)) for m in args.models}
    methods = {name: (lambda src, task, f=f, **kw: f.fuse(src, task, **kw).image) for name, f in fusers.items()}
    methods["laplacian"] = lambda src, task, **kw: laplacian_pyramid_fusion(src)

    ir = read_image(VENDORED / "vif_ir.png")
    vi, core = with_glare(read_image(VENDORED / "vif_vi.png"), bt601_luma(ir))
    over, under = read_image(VENDORED / "mef_over.png"), read_image(VENDORED / "mef_under.png")
    clipped = erode(bt601_luma(over) >= 0.96, 7)
    average = local_contrast(bt601_luma(average_fusion([over, under])))
    print("| method | glare: IR gradient kept | exposure: under's gradient kept | local contrast / average's |")
    print("|---|---:|---:|---:|")
    for name, fuse in methods.items():
        glare = gradient_ratio(bt601_luma(fuse([vi, ir], "vif")), bt601_luma(ir), core)
        fused = bt601_luma(fuse([over, under], "mef"))
        print(f"| {name} | {glare:.2f} | {gradient_ratio(fused, bt601_luma(under), clipped):.2f} | "
              f"{local_contrast(fused) / average:.2f} |")

    grid_tables(fusers)


def grid_tables(fusers: dict[str, Fuser]) -> None:
    """Block-step ratio, then grid prominence, of every model at every alpha on every bundled example."""
    measures = {"block-step ratio": block_step_ratio, "grid prominence": grid_prominence}
    rows: dict[str, list[str]] = {name: [] for name in measures}
    for example in find_examples():
        sources = [read_image(f) for f in example.files]
        greys = [bt601_luma(s) for s in sources]
        lap = bt601_luma(laplacian_pyramid_fusion(sources))
        fused = [[bt601_luma(fuser.fuse(sources, example.task, alpha=alpha).image) for alpha in ALPHAS]
                 for fuser in fusers.values()]  # per model, per alpha
        blocks = [sum(isolated_blocks(f, greys) for f in per_alpha) for per_alpha in fused]
        for name, measure in measures.items():
            cells = [max(measure(g) for g in greys), measure(lap), *(measure(f) for per_alpha in fused for f in per_alpha)]
            rows[name].append(f"| {example.task} {example.name} | " + " | ".join(
                [f"{c:.3f}" for c in cells] + [str(b) for b in blocks]) + " |")
    for name, lines in rows.items():
        print(f"\n{name}\n\n| example | sources' own | laplacian | " + " | ".join(
            f"{n} α={a:g}" for n in fusers for a in ALPHAS) + " | " + " | ".join(
            f"{n}: isolated blocks" for n in fusers) + " |")
        print("|---|---:|---:|" + "---:|" * (len(fusers) * (len(ALPHAS) + 1)))
        print("\n".join(lines))

if __name__ == "__main__":
    main()
