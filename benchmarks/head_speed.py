"""Cost of the output head: the pyramid model against the per-pixel-weight model, in one run.

    python -m benchmarks.head_speed [--runs 15] [--threads 2] [--old runs/old_model] [--new checkpoints]

Both models fuse the same 640x480 pair through `Fuser.fuse` (end to end, as a user calls it), timed
alternately so that both see the same machine load; the table gives the median ms per pair and the
ratio. Without --old/--new the compact preset is built with each head (random weights: speed does
not depend on them).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch

from tcmoa.fuse.pipeline import Fuser
from tcmoa.model.checkpoint import load_model
from tcmoa.model.config import get_config
from tcmoa.model.network import TCMoA


def build(path: str | None, fusion_output: str) -> TCMoA:
    """A saved model, or the compact preset with the given output head."""
    if path:
        return load_model(path)
    torch.manual_seed(0)
    return TCMoA(dataclasses.replace(get_config("compact"), fusion_output=fusion_output)).eval()


def head_name(model: TCMoA) -> str:
    """The output head a model has, e.g. 'pyramid, 5 coarse levels'."""
    c = model.config
    coarse = f", {c.pyramid_coarse_levels} coarse levels" if c.fusion_output == "pyramid" else ""
    return c.fusion_output + coarse


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="model folder with the per-pixel-weight head (default: compact preset)")
    ap.add_argument("--new", help="model folder with the pyramid head (default: compact preset)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    pair = [rng.random((480, 640, 3), dtype=np.float32), rng.random((480, 640), dtype=np.float32)]
    old, new = build(args.old, "source_weights"), build(args.new, "pyramid")
    fusers = {f"{head_name(old)} (old)": Fuser(old), f"{head_name(new)} (new)": Fuser(new)}
    times: dict[str, list[float]] = {name: [] for name in fusers}
    for _ in range(2):  # warm-up
        for fuser in fusers.values():
            fuser.fuse(pair, "vif")
    for _ in range(args.runs):
        for name, fuser in fusers.items():
            start = time.perf_counter()
            fuser.fuse(pair, "vif")
            times[name].append(time.perf_counter() - start)
    base = statistics.median(next(iter(times.values())))
    print(f"| head | ms per 640x480 pair (median of {args.runs}, {args.threads} threads) | ratio |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {1e3 * statistics.median(ts):.0f} | {statistics.median(ts) / base:.2f} |")


if __name__ == "__main__":
    main()
