"""Speed benchmark: time per image pair, after warm-up, median of many runs, with peak memory.

    python -m benchmarks.speed                      # CPU (2 threads): compact
    python -m benchmarks.speed --gpu                # + compact and official-large in bf16, batch 1 and 8
    python -m benchmarks.speed --sweep              # Fuser.fuse at 0.3 ... 16 MP: ms per MP, tiles, peak memory

Each row times one model forward on a pair already padded to the model's window multiple
(640x480 -> 640x512 for compact; 640x512 -> 672x560 for the official shapes, as the official
resize path does), plus an end-to-end row for `Fuser.fuse` on in-memory 640x480 arrays.
Weights are random: speed does not depend on them.

--sweep fuses a random visible/infrared pair at 0.3, 1, 1.3, 2, 4, 8 and 16 MP with the default tile
budget, each size in its own process (so its peak resident memory is its own), best of --sweep-runs
after a warm-up. "vs 1 MP" is the cost per pixel over the 1 MP row's, which runs as one tile (untiled):
the planner's promise is that tiling keeps it within 10% at every size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from tcmoa.model.checkpoint import load_model
from tcmoa.fuse.pipeline import Fuser


def padded(size: int, multiple: int) -> int:
    """Round a side up to the model's window multiple."""
    return -(-size // multiple) * multiple


def time_calls(fn, device: torch.device, warmup: int, runs: int) -> list[float]:
    """Seconds of each timed call, after warm-up, synchronising the GPU around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory since the last reset, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_forward(preset: str, device: torch.device, precision: str, batch: int, size: tuple[int, int],
                  warmup: int, runs: int) -> dict[str, object]:
    """Time model(a, b) on a random batch of padded pairs."""
    model = load_model(preset, device=device)
    h, w = (padded(s, model.config.size_multiple) for s in size)
    a, b = torch.randn(batch, 3, h, w, device=device), torch.randn(batch, 3, h, w, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def call():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(a, b, 0)

    times = time_calls(call, device, warmup, runs)
    median = statistics.median(times)
    return {"what": f"{preset} forward", "device": device.type, "precision": precision, "batch": batch,
            "input": f"{size[1]}x{size[0]} -> {w}x{h}", "ms/pair": 1000 * median / batch,
            "ms/call": 1000 * median, "peak MiB": peak_memory_mib(device), "runs": runs}


def bench_fuser(device: torch.device, warmup: int, runs: int) -> dict[str, object]:
    """Time the whole pipeline (colour rule, padding, model, crop) on 640x480 arrays."""
    fuser = Fuser(load_model("compact"), device=device)
    rng = np.random.default_rng(0)
    visible = rng.random((480, 640, 3), dtype=np.float32)
    infrared = rng.random((480, 640), dtype=np.float32)
    times = time_calls(lambda: fuser.fuse([visible, infrared], "vif"), device, warmup, runs)
    median = statistics.median(times)
    return {"what": "compact Fuser.fuse (vif)", "device": device.type, "precision": fuser.precision, "batch": 1,
            "input": "640x480 RGB + grey", "ms/pair": 1000 * median, "ms/call": 1000 * median,
            "peak MiB": peak_memory_mib(device), "runs": runs}


SWEEP_SIZES = ((640, 480), (1024, 1024), (1280, 1024), (1632, 1224), (2304, 1728), (3264, 2448), (4608, 3456))


def sweep_one(width: int, height: int, runs: int, tile_size: int | None = None) -> dict[str, object]:
    """Fuse one random width x height pair (tiled as planned, or with `tile_size`): time, tiles, memory."""
    from tcmoa.fuse.tiling import DEFAULT_TILE_SIZE, plan_tiles

    fuser = Fuser(load_model("compact"), device="cpu", tile_size=tile_size or DEFAULT_TILE_SIZE, max_pixels=10**9)
    rng = np.random.default_rng(0)
    pair = [rng.random((height, width, 3), dtype=np.float32), rng.random((height, width), dtype=np.float32)]
    fuser.fuse([p[:256, :256] for p in pair], "vif")  # warm-up
    before = peak_memory_mib(torch.device("cpu"))
    seconds = min(time_calls(lambda: fuser.fuse(pair, "vif"), torch.device("cpu"), 0, runs))
    cfg = fuser.model.config
    tiles = plan_tiles(height, width, fuser.tile_size ** 2, fuser.tile_overlap, int(cfg.pixel_patch), cfg.size_multiple)
    return {"size": f"{width}x{height}", "MP": width * height / 1e6, "tiles": f"{len(tiles)} of "
            f"{tiles[0].width}x{tiles[0].height}", "s": seconds, "ms/MP": 1000 * seconds / (width * height / 1e6),
            "peak MiB": peak_memory_mib(torch.device("cpu")), "before MiB": before}


def _sweep_row(width: int, height: int, threads: int, runs: int, tile_size: int | None = None) -> dict:
    """One sweep row, measured in a fresh process."""
    extra = ["--sweep-tile", str(tile_size)] if tile_size else []
    out = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--threads", str(threads), "--sweep-one",
                          f"{width}x{height}", "--sweep-runs", str(runs), *extra], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.stdout.splitlines()[-1])


def sweep(threads: int, runs: int, untiled: bool = False) -> None:
    """Every SWEEP_SIZES row in a fresh process; print the Markdown table (with --untiled: tiled rows run whole too)."""
    rows = []
    for width, height in SWEEP_SIZES:
        rows.append(_sweep_row(width, height, threads, runs))
        if untiled and not rows[-1]["tiles"].startswith("1 of"):  # the same image in one piece, for the ratio
            rows[-1]["untiled ms/MP"] = _sweep_row(width, height, threads, runs, tile_size=1 << 14)["ms/MP"]
        print(f"  {rows[-1]['size']}: {rows[-1]['ms/MP']:.0f} ms/MP", file=sys.stderr, flush=True)
    ref = next(r["ms/MP"] for r in rows if r["size"] == "1024x1024")
    print(f"torch {torch.__version__}; CPU, {threads} threads; best of {runs}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| size | MP | tiles | s | ms per MP | vs 1 MP | vs the same image untiled | peak RSS MiB |\n"
          "|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        whole = f"{r['ms/MP'] / r['untiled ms/MP']:.2f}" if "untiled ms/MP" in r else "(one tile)"
        print(f"| {r['size']} | {r['MP']:.1f} | {r['tiles']} | {r['s']:.2f} | {r['ms/MP']:.0f} | "
              f"{r['ms/MP'] / ref:.2f} | {whole} | {r['peak MiB']:.0f} |")


def main() -> None:
    """Run the configured rows and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="also benchmark on CUDA")
    parser.add_argument("--sweep", action="store_true", help="Fuser.fuse from 0.3 to 16 MP instead of the rows")
    parser.add_argument("--sweep-runs", type=int, default=2, help="timed runs per size (best is kept)")
    parser.add_argument("--untiled", action="store_true", help="with --sweep: run the tiled sizes whole too (memory!)")
    parser.add_argument("--sweep-one", default=None, metavar="WxH", help=argparse.SUPPRESS)  # one sweep row
    parser.add_argument("--sweep-tile", type=int, default=None, help=argparse.SUPPRESS)  # its tile size
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep_one:
        width, height = (int(v) for v in args.sweep_one.split("x"))
        print(json.dumps(sweep_one(width, height, args.sweep_runs, args.sweep_tile)))
        return
    if args.sweep:
        sweep(args.threads, args.sweep_runs, args.untiled)
        return
    cpu = torch.device("cpu")
    rows = [bench_forward("compact", cpu, "fp32", 1, (480, 640), args.warmup, args.runs),
            bench_fuser(cpu, args.warmup, args.runs)]
    if args.gpu:
        if not torch.cuda.is_available():
            sys.exit("--gpu: no CUDA device here")
        gpu = torch.device("cuda")
        for preset, size in (("compact", (480, 640)), ("official-large", (512, 640))):
            for batch in (1, 8):
                rows.append(bench_forward(preset, gpu, "bf16", batch, size, args.warmup, args.runs * 3))
        rows.append(bench_forward("official-large", gpu, "fp16", 1, (512, 640), args.warmup, args.runs * 3))
        rows.append(bench_fuser(gpu, args.warmup, args.runs * 3))
    name = torch.cuda.get_device_name() if args.gpu else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}; {name}\n")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
