"""Demo latency: the server-side time from an α/β slider change to the new image and heatmaps.

    python -m benchmarks.app_latency                 # CPU (all threads torch uses), compact model
    python -m benchmarks.app_latency --device cuda   # the GPU

A slider change runs `demo.callbacks.fuse_view` (fusion with maps + the two heatmap figures);
Gradio then encodes its outputs (fused PNG, before/after pair, figures). Each is timed on a
640x480 pair (the bundled MSRS example, resized), median of --runs after --warmup runs; alpha
alternates between two values so every run is a real re-fusion. The machine's load average is
printed too: timings on a shared machine are only as good as its load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from demo import callbacks as cb
from demo.engine import load_engine
from tcmoa import read_image
from tcmoa.imaging import resize_to
from tcmoa.visualize import prompt_figure, routing_figure

EXAMPLE = Path(__file__).resolve().parents[1] / "demo" / "examples" / "vif" / "msrs_00047N"


def pair(width: int, height: int) -> list[np.ndarray]:
    """The bundled visible/infrared example at width x height."""
    return [resize_to(read_image(f), (height, width)) for f in sorted(EXAMPLE.iterdir())]


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Time fuse / maps / callback / encode and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder / .pth / preset (default: as app.py)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: GPU when present)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the pair (default 640x480)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    engine = load_engine(args.model, args.device)
    device = engine.fuser.device
    sources = pair(width, height)
    encoders = {"fused": gr.Image(format="png"), "figure": gr.Image(format="webp"),
                "slider": gr.ImageSlider(format="webp")}
    load_before = os.getloadavg()
    rows: dict[str, list[float]] = {"fuse": [], "maps": [], "callback": [], "encode": []}
    for i in range(args.warmup + args.runs):
        alpha = 1.0 + 0.5 * (i % 2)
        sync(device)
        t0 = time.perf_counter()
        result = engine.fuser.fuse(sources, "vif", alpha=alpha, maps=True)
        sync(device)
        t1 = time.perf_counter()
        prompt_figure(result.maps, sources[0], result.task.roles)
        routing_figure(result.maps)
        t2 = time.perf_counter()
        view = cb.fuse_view(engine, sources, "vif", alpha, 0.0)  # what a slider change runs
        sync(device)
        t3 = time.perf_counter()
        encoders["fused"].postprocess(view.fused)
        encoders["slider"].postprocess(view.comparison)
        encoders["figure"].postprocess(view.prompts)
        encoders["figure"].postprocess(view.routing)
        t4 = time.perf_counter()
        if view.fused is None:
            raise SystemExit(f"fusion failed: {view.status}")
        if i >= args.warmup:
            for key, seconds in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                rows[key].append(seconds * 1000)
    ms = {key: statistics.median(values) for key, values in rows.items()}
    load_after = os.getloadavg()
    print(f"{width}x{height} pair, median of {args.runs} runs after {args.warmup} warm-up; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)\n")
    print("| device | model | ms fuse | ms maps | ms total (callback) | ms encode (Gradio) | ms slider-to-image |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(f"| {engine.device_label} | {engine.model_label} | {ms['fuse']:.0f} | {ms['maps']:.0f} | "
          f"{ms['callback']:.0f} | {ms['encode']:.0f} | {ms['callback'] + ms['encode']:.0f} |")


if __name__ == "__main__":
    main()
