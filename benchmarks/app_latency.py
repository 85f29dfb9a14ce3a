"""Demo latency and memory: slider to image, the metrics panel's share, resident memory.

    nice -n 5 python -m benchmarks.app_latency                 # CPU (all threads torch uses), compact model
    python -m benchmarks.app_latency --device cuda             # the GPU
    python -m benchmarks.app_latency --memory                  # + RSS after load and after 20 fusions
    python -m benchmarks.app_latency --browser                 # drag-to-preview, release-to-final in chromium
    python -m benchmarks.app_latency --cold                    # a sleeping Space waking: start, load, first fusion

A slider change runs `demo.callbacks.fuse_steps`: step 1 fuses and returns the image (Gradio
encodes it and the before/after pair: "slider to image"), step 2 computes the metrics panel and
the open map tab's figure (the prompt maps). Timed on a 640x480 pair (the bundled MSRS example,
resized), median of --runs after --warmup runs; alpha alternates between two values so every run
is a real re-fusion. "metrics share" is the metrics panel's time over the rest of a full cycle:
what it adds to the slider loop when a drag keeps the server busy. The load average is printed
too: timings on a shared machine are only as good as its load.

--browser serves the page in this process, opens it in Debian's chromium (Playwright), uploads the
pair and drags the α slider with the mouse --runs times: *drag-to-preview* is the time from a mouse
move to the page showing the preview image at the new value, *release-to-final* from the mouse-up to
the status showing the final fusion at that value (what a user waits for, Gradio's round trips
included), both timed in the page (event time stamps, a MutationObserver).

--cold starts app.py as a new process (what a sleeping Space does when a visitor arrives) and times
its start until it answers (imports, model load, the page built), then the first and the second
/fuse call on the pair through gradio_client: the first pays what runs once (the int8 copy of the
blocks, first-call allocations), the second is the warm cost beside it.
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

from demo import analysis
from demo import callbacks as cb
from demo.downloads import named_view
from demo.engine import load_engine
from tcmoa import read_image
from tcmoa.device import reuse_freed_memory
from tcmoa.imaging import resize_to

from .app_process import REPO, free_port, memory_mib, running_app

EXAMPLE = REPO / "demo" / "examples" / "vif" / "msrs_00047N"


def pair(width: int, height: int) -> list[np.ndarray]:
    """The bundled visible/infrared example at width x height."""
    return [resize_to(read_image(f), (height, width)) for f in sorted(EXAMPLE.iterdir())]


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_line() -> str:
    """The machine's load average, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def main() -> None:
    """Time the slider loop's steps and print a Markdown table; with --memory, resident memory too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder / .pth / preset (default: as app.py)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: GPU when present)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the pair (default 640x480)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory", action="store_true", help="also measure app.py's resident memory")
    parser.add_argument("--browser", action="store_true", help="also drag the slider in chromium (Playwright)")
    parser.add_argument("--cold", action="store_true", help="only time app.py's start and its first fusions")
    args = parser.parse_args()
    reuse_freed_memory()  # as app.py does
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.cold:
        measure_cold_start(args.model, args.device, pair(width, height))
        return
    engine = load_engine(args.model, args.device)
    device = engine.fuser.device
    sources = pair(width, height)
    encoders = {"fused": gr.Image(format="png"), "figure": gr.Image(format="webp"),
                "slider": gr.ImageSlider(format="webp")}
    print(f"{width}x{height} pair, median of {args.runs} runs after {args.warmup} warm-up; before: {load_line()}")
    rows: dict[str, list[float]] = {key: [] for key in ("image", "encode_image", "after", "metrics", "encode_after")}
    for i in range(args.warmup + args.runs):
        alpha = 1.0 + 0.5 * (i % 2)
        sync(device)
        t0 = time.perf_counter()
        steps = cb.fuse_steps(engine, sources, "vif", alpha, 0.0)
        first = next(steps)
        sync(device)
        t1 = time.perf_counter()
        encoders["fused"].postprocess(named_view(first).fused)  # as the page does: its download PNG, then Gradio's copy
        encoders["slider"].postprocess(first.comparison)
        t2 = time.perf_counter()
        second = next(steps)
        t3 = time.perf_counter()
        encoders["figure"].postprocess(second.prompts)
        t4 = time.perf_counter()
        if not isinstance(first.fused, np.ndarray):
            raise SystemExit(f"fusion failed: {first.status}")
        fused = first.fused
        t5 = time.perf_counter()
        analysis.scores_table(fused, sources, "vif")  # the panel's share of step 2
        t6 = time.perf_counter()
        if i >= args.warmup:
            for key, seconds in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t6 - t5, t4 - t3)):
                rows[key].append(seconds * 1000)
    ms = {key: statistics.median(values) for key, values in rows.items()}
    to_image = ms["image"] + ms["encode_image"]
    cycle = to_image + ms["after"] + ms["encode_after"]
    print(f"after: {load_line()}\n")
    print("| device | model | ms fuse (step 1) | ms encode image | **ms slider-to-image** | ms metrics + map (step 2) "
          "| ms of which metrics | ms full cycle | metrics share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {engine.device_label} | {engine.model_label} | {ms['image']:.0f} | {ms['encode_image']:.0f} | "
          f"**{to_image:.0f}** | {ms['after'] + ms['encode_after']:.0f} | {ms['metrics']:.0f} | {cycle:.0f} | "
          f"{100 * ms['metrics'] / (cycle - ms['metrics']):.0f}% |")
    if args.memory:
        measure_memory(args.model, args.device)
    if args.browser:
        measure_drag(engine, sources, args.runs)


# In the page: the time stamp of every mouse move and mouse-up (the events' own), and of every change
# to the page, with the fused image's address and the status text at that moment.
RECORDER = """() => {
  window.__moves = []; window.__ups = []; window.__marks = [];
  document.addEventListener('mousemove', e => window.__moves.push(e.timeStamp), true);
  document.addEventListener('mouseup', e => window.__ups.push(e.timeStamp), true);
  const mark = () => window.__marks.push([performance.now(), document.querySelector('#fused img')?.src || '',
                                          document.querySelector('#status')?.innerText || '']);
  new MutationObserver(mark).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true, attributeFilter: ['src']});
}"""
# Of the marks after a mouse move, the first whose image is no longer `shown` (ms after the move); of the marks
# after a mouse-up, the first whose status has the final fusion at `value` (ms after the up).
LATENCIES = """([shown, value]) => {
  const move = window.__moves[window.__moves.length - 1], up = window.__ups[window.__ups.length - 1];
  const preview = window.__marks.find(m => m[0] >= move && m[1] && m[1] !== shown);
  const final = window.__marks.find(m => m[0] >= up && m[2].includes('Fused') && m[2].includes(value));
  return [preview ? preview[0] - move : null, final ? final[0] - up : null];
}"""


def measure_drag(engine, sources: list[np.ndarray], runs: int) -> None:
    """Drag the α slider in chromium: median drag-to-preview and release-to-final over `runs` drags.

    Both are timed inside the page, from the mouse event's own time stamp to the DOM change that shows
    the new image or status (a MutationObserver), so Playwright's polling does not add to them.
    """
    import tempfile

    from playwright.sync_api import expect, sync_playwright

    from demo import build_demo, launch_options
    from tcmoa.imaging import save_image

    demo = build_demo(engine)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_options(engine))
        files = [save_image(Path(tmp) / f"{k}.png", im) for k, im in enumerate(sources)]
        to_preview, to_final = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            for k, f in enumerate(files, start=1):
                page.locator(f"#source-{k} input[type=file]").set_input_files(str(f))
                time.sleep(1.0)
            status = page.locator("#status")
            # the page opens on a fused example: wait until its status has gone, then for the uploads' fusion
            expect(status).not_to_contain_text("bundled example", timeout=120_000)
            expect(status).to_contain_text("Fused", timeout=120_000)
            time.sleep(5.0)  # the uploads' fusions are done: nothing queued
            page.evaluate(RECORDER)
            image = page.locator("#fused img")
            track = page.locator("#alpha input[type=range]")
            track.scroll_into_view_if_needed()  # mouse coordinates are the viewport's
            box = track.bounding_box()
            if box is None:
                raise SystemExit("the α slider is not on the page")
            y = box["y"] + box["height"] / 2
            for i in range(runs + 1):
                x0 = box["x"] + box["width"] * (0.2 + 0.05 * (i % 8))
                page.mouse.move(x0, y)
                page.mouse.down()
                time.sleep(1.0)  # the press itself moves the thumb: let its preview pass
                shown = image.get_attribute("src")
                page.mouse.move(x0 + box["width"] * 0.03, y)
                value = f"α = {float(track.input_value()):.2f}"
                expect(image).not_to_have_attribute("src", shown or "", timeout=60_000)
                expect(status).to_contain_text("Preview", timeout=60_000)
                page.mouse.up()
                expect(status).to_contain_text("Fused", timeout=60_000)
                expect(status).to_contain_text(value, timeout=60_000)
                preview_ms, final_ms = page.evaluate(LATENCIES, [shown, value])
                if i and preview_ms is not None and final_ms is not None:  # the first drag warms up
                    to_preview.append(preview_ms)
                    to_final.append(final_ms)
                time.sleep(1.0)
            browser.close()
        demo.close()
    print(f"\n| in chromium ({len(sources[0][0])}x{len(sources[0])} pair, {len(to_preview)} drags) | median ms | max ms |\n"
          f"|---|---:|---:|\n| drag-to-preview | {statistics.median(to_preview):.0f} | {max(to_preview):.0f} |\n"
          f"| release-to-final | {statistics.median(to_final):.0f} | {max(to_final):.0f} |\n{load_line()}")


def app_options(model: str | None, device: str | None) -> list[str]:
    """app.py's command-line options for this model and device (none: its defaults)."""
    return (["--model", model] if model else []) + (["--device", device] if device else [])


def measure_cold_start(model: str | None, device: str | None, sources: list[np.ndarray]) -> None:
    """app.py from a new process: seconds until it answers, then the first and second /fuse of `sources`."""
    import tempfile

    from gradio_client import handle_file

    from tcmoa.imaging import save_image

    print(f"cold start; before: {load_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = [handle_file(str(save_image(Path(tmp) / f"{k}.png", im))) for k, im in enumerate(sources)]
        t0 = time.perf_counter()
        with running_app(Path(tmp) / "app.log", app_options(model, device)) as (_, client):
            serving = time.perf_counter() - t0  # start_app returns once the app answers
            calls = []
            for alpha in (1.0, 1.5):
                t1 = time.perf_counter()
                client.predict(files, "vif", alpha, 0.0, api_name="/fuse")
                calls.append(time.perf_counter() - t1)
    print(f"\n| cold start (app.py, {len(sources[0][0])}x{len(sources[0])} pair) | s |\n|---|---:|\n"
          f"| start until it answers (imports, model, page) | {serving:.1f} |\n| first /fuse | {calls[0]:.2f} |\n"
          f"| second /fuse (warm) | {calls[1]:.2f} |\n| **until the first result** | **{serving + calls[0]:.1f}** |\n"
          f"{load_line()}")


def measure_memory(model: str | None, device: str | None) -> None:
    """The app's own process (app.py): RSS after load, and after 20 /fuse calls over three example sets."""
    import tempfile

    from gradio_client import handle_file

    with tempfile.TemporaryDirectory() as tmp, running_app(Path(tmp) / "app.log", app_options(model, device)) \
            as (app, client):
        after_load, _ = memory_mib(app.pid)
        sets = [("vif", "vif/tno_18"), ("mff", "mff/lytro_triple_02"), ("mef", "mef/mefb_cave")]
        for i in range(20):
            task, folder = sets[i % len(sets)]
            files = [handle_file(str(f)) for f in sorted((REPO / "demo" / "examples" / folder).iterdir())]
            client.predict(files, task, 1.0 + 0.1 * (i % 5), 0.0, api_name="/fuse")
        after_20, peak = memory_mib(app.pid)
    print(f"\n| app.py resident memory | MiB |\n|---|---:|\n| after load | {after_load:.0f} |\n"
          f"| after 20 fusions (/fuse: 512-px pairs and a triple) | {after_20:.0f} |\n| peak | {peak:.0f} |")


if __name__ == "__main__":
    main()
