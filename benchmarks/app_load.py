"""The app under load, as a public Space sees it: large requests beside small ones, and many users at once.

    python -m benchmarks.app_load                          # 2 x 11 MP pairs + small ones; 50 concurrent small ones
    python -m benchmarks.app_load --large-mp 4 --concurrent 20   # lighter, for a busy machine

Starts `app.py` (the shipped model, CPU) on a free port of 127.0.0.1 and talks to it through
`gradio_client`, as a program would.

1. **Large beside small.** Two large visible/infrared pairs (the bundled TNO example enlarged to
   --large-mp megapixels, JPEG, so the upload stays under the 25 MB limit) go to `/fuse_full` (or
   `/fuse` with --large-endpoint fuse) at once; while they run, a small pair (512x372) goes to `/fuse`
   every --small-every seconds. A small request's *wait* is its latency minus the server's own
   time for it (report `timing_s.total`): time spent queued behind others.
2. **Many small at once.** --concurrent calls of `/fuse` on the small pair at ten α values, all
   submitted together; each result must equal the sequential call's with the same α, pixel for pixel.

Prints both tables and the app's peak resident memory (VmHWM of its process). Times depend on the
machine's load, which is printed; run it on a quiet machine for the README's figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .app_process import REPO, memory_mib, running_app

SMALL = REPO / "demo" / "examples" / "vif" / "tno_18"


def large_pair(megapixels: float, folder: Path) -> list[Path]:
    """The small example enlarged to `megapixels` (4:3 crop-free stretch), as JPEG files."""
    out = []
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    for src in sorted(SMALL.iterdir()):
        with Image.open(src) as im:
            big = im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        path = folder / f"large_{src.stem}.jpg"
        big.save(path, quality=90)
        out.append(path)
    return out


def png_pixels(path: str) -> bytes:
    """The decoded pixels of a result file (PNG metadata aside)."""
    with Image.open(path) as im:
        return np.asarray(im).tobytes()


def large_beside_small(client, large: list[Path], small: list[Path], endpoint: str, every: float,
                       max_small: int) -> None:
    """Scenario 1: print each small request's latency and wait while two large ones run."""
    from gradio_client import handle_file

    started = time.perf_counter()
    big_jobs = [client.submit([handle_file(str(p)) for p in large], "vif", 1.0, 0.0, "", False,
                              api_name=f"/{endpoint}") for _ in range(2)]
    time.sleep(2.0)  # both large requests are in (one running, one queued in its lane)
    rows: list[tuple[float, float, float, float]] = []
    while not all(job.done() for job in big_jobs) and len(rows) < max_small:
        t0 = time.perf_counter()
        _, report = client.predict([handle_file(str(p)) for p in small], "vif", 1.0 + 0.1 * (len(rows) % 10), 0.0,
                                   api_name="/fuse")
        latency = time.perf_counter() - t0
        rows.append((t0 - started, latency, latency - report["timing_s"]["total"], report["timing_s"]["total"]))
        time.sleep(max(0.0, every - latency))
    big_reports = [job.result()[1] for job in big_jobs]
    big_done = time.perf_counter() - started
    w, h = big_reports[0]["size"]
    print(f"\n### Two large requests ({w}x{h} = {w * h / 1e6:.1f} MP pairs, `/{endpoint}`) and small ones "
          f"(512x372, `/fuse`)\n")
    print("| small request sent at s | latency s | of which waiting s | server s |\n|---:|---:|---:|---:|")
    for sent, latency, wait, server in rows:
        print(f"| {sent:.1f} | {latency:.2f} | {wait:.2f} | {server:.2f} |")
    waits = [r[2] for r in rows]
    fusions = ", ".join(f"{r['timing_s']['fusion']:.1f}" for r in big_reports)
    print(f"\nlarge requests: fusion {fusions} s each, "
          f"both done after {big_done:.1f} s; small requests while they ran: {len(rows)}, "
          f"longest wait {max(waits):.2f} s, median latency {statistics.median(r[1] for r in rows):.2f} s")


def many_small(client, small: list[Path], count: int) -> None:
    """Scenario 2: `count` concurrent small calls; each must equal the sequential call with its α."""
    from gradio_client import handle_file

    alphas = [round(0.5 + 0.2 * k, 2) for k in range(10)]
    files = [handle_file(str(p)) for p in small]
    reference = {a: png_pixels(client.predict(files, "vif", a, 0.0, api_name="/fuse")[0]) for a in alphas}
    started = time.perf_counter()

    def call(k: int) -> tuple[bool, float]:
        t0 = time.perf_counter()
        try:
            fused, _ = client.predict(files, "vif", alphas[k % len(alphas)], 0.0, api_name="/fuse")
        except Exception as exc:  # noqa: BLE001 (e.g. "Queue is full": counted as not correct, and said)
            print(f"request {k}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return False, time.perf_counter() - t0
        return png_pixels(fused) == reference[alphas[k % len(alphas)]], time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(call, range(count)))
    total = time.perf_counter() - started
    latencies = [r[1] for r in results]
    print(f"\n### {count} concurrent small requests (`/fuse`, 512x372)\n")
    print("| correct | all done s | median latency s | longest latency s |\n|---:|---:|---:|---:|")
    print(f"| {sum(r[0] for r in results)} of {count} | {total:.1f} | {statistics.median(latencies):.2f} | "
          f"{max(latencies):.2f} |")


def main() -> None:
    """Run both scenarios against a fresh app.py and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mp", type=float, default=11.0, help="megapixels of each large source (default 11)")
    parser.add_argument("--large-endpoint", choices=("fuse_full", "fuse"), default="fuse_full")
    parser.add_argument("--small-every", type=float, default=3.0, help="seconds between small requests")
    parser.add_argument("--max-small", type=int, default=40, help="most small requests while the large ones run")
    parser.add_argument("--concurrent", type=int, default=50, help="concurrent small requests in scenario 2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        large = large_pair(args.large_mp, folder)
        small = sorted(SMALL.iterdir())
        with running_app(folder / "app.log", ["--device", "cpu"]) as (app, client):
            after_load, _ = memory_mib(app.pid)
            print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores); "
                  f"app.py resident after load: {after_load:.0f} MiB; large files: "
                  f"{', '.join(f'{p.stat().st_size / 2**20:.1f} MB' for p in large)}")
            large_beside_small(client, large, small, args.large_endpoint, args.small_every, args.max_small)
            many_small(client, small, args.concurrent)
            rss, peak = memory_mib(app.pid)
    print(f"\napp.py resident memory: peak {peak:.0f} MiB, at the end {rss:.0f} MiB; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
