"""Speed against size, this tree beside another (today's code), in one run: seconds per pair, peak memory.

    python -m benchmarks.size_speed --baseline /work/base [--sizes 0.3 1 4 12 24] [--tasks vif mef] [--runs 3]

Each (tree, task, size) runs in a process of its own, so its peak resident memory is its own; trees
alternate size by size, so both see the same machine load. A process loads the shipped model of its
tree, warms up on a 640x480 pair, then fuses the bundled example pair (demo/examples: MSRS for vif,
MEFB Cave for mef) scaled to the size with `Fuser.fuse` at the library's defaults, best of --runs
(one run above 4 MP), with the allocator set as the tree's app and CLI set it (tcmoa.device.reuse_freed_memory,
where the tree has it). Reported: wall seconds, CPU seconds (user + system, both threads), and the peak
resident memory while fusing: the process's peak is reset (Linux /proc/self/clear_refs) once the sources
are in memory, so the warm-up and the benchmark's own scaling of the pair to the size do not count.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SIZES = {0.3: (640, 480), 1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000), 24: (6000, 4000)}
PAIRS = {"vif": "demo/examples/vif/msrs_00047N", "mef": "demo/examples/mef/mefb_cave"}


def child(task: str, width: int, height: int, runs: int) -> dict[str, float]:
    """In the tree on sys.path: time one size, in this process."""
    import numpy as np
    import torch

    from tcmoa import Fuser, load_model
    from tcmoa.imaging import image_files, read_image, resize_to

    torch.set_num_threads(2)
    try:  # what the app and the CLI set at start (trees from before it have none)
        from tcmoa.device import reuse_freed_memory
        reuse_freed_memory()
    except ImportError:
        pass
    fuser = Fuser(load_model(None), device="cpu", max_pixels=10**9)
    images = [read_image(p) for p in sorted(image_files(Path(PAIRS[task])).values())]
    fuser.fuse([resize_to(im, (480, 640)) for im in images], task)  # warm-up
    sources = [resize_to(im, (height, width)) for im in images]
    del images
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM): from here on it is the fusion's
    best = {"wall": float("inf"), "cpu": float("inf")}
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fused = fuser.fuse(sources, task).image
        best = {"wall": min(best["wall"], time.perf_counter() - wall), "cpu": min(best["cpu"], time.process_time() - cpu)}
        assert fused.shape[:2] == (height, width) and np.isfinite(fused).all()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {**best, "rss_mib": int(status["VmHWM"].split()[0]) / 1024}


def measure(tree: Path, task: str, size: tuple[int, int], runs: int) -> dict[str, float]:
    """Run `child` in a fresh process of this script, with `tree`'s tcmoa on the path and as the working folder."""
    command = [sys.executable, __file__, "--child", task, str(size[0]), str(size[1]), str(runs)]
    out = subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print one row per (task, size): both trees and their ratio."""
    if sys.argv[1:2] == ["--child"]:
        task, width, height, runs = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(child(task, width, height, runs)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare with")
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout to measure")
    ap.add_argument("--sizes", type=float, nargs="*", default=list(SIZES))
    ap.add_argument("--tasks", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print("| task | size | baseline s | new s | speed-up | baseline CPU s | new CPU s "
          "| baseline peak MiB fusing | new peak MiB fusing |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task in args.tasks:
        for mp in args.sizes:
            size = SIZES[mp]
            runs = args.runs if mp <= 4 else 1
            old, new = measure(args.baseline.resolve(), task, size, runs), measure(args.new.resolve(), task, size, runs)
            print(f"| {task} | {size[0]}x{size[1]} ({mp:g} MP) | {old['wall']:.2f} | {new['wall']:.2f} | "
                  f"{old['wall'] / new['wall']:.1f}x | {old['cpu']:.1f} | {new['cpu']:.1f} | {old['rss_mib']:.0f} | "
                  f"{new['rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
