"""The demo's callbacks: plain functions of values (paths, arrays, numbers) -> output values.

No layout and no model maths here: fusion is `tcmoa.Fuser` (through `Engine.fuse`), figures are
`tcmoa.fuse.figures`, metrics and the sweep are demo.analysis, checking a request is demo.sources.
Every function takes the shared, immutable `Engine` first and keeps no state between calls (what a
session needs later is returned to it as a `Shown`), so concurrent users cannot see each other's
results; each is testable without a browser.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterator, NamedTuple, Sequence

import gradio as gr
import numpy as np

from tcmoa import PRESETS, ImageError, get_preset
from tcmoa.fuse.figures import sweep_curve
from tcmoa.fuse.pipeline import FusionResult
from tcmoa.imaging import to_uint8
from tcmoa.metrics.baselines import run_baseline
from tcmoa.tasks import Preset

from . import analysis
from .alignment_view import alignment_table, page_note
from .analysis import Shown, SweepResult
from .engine import MAX_SOURCES, PREVIEW_PIXELS, PREVIEW_TOKEN_PIXELS, UNTRAINED_WARNING, WORKING_PIXELS, Engine
from .sources import (AlignOptions, InputError, KnobError, Request, TooFewSources, blend_route, present, prepare,
                      scaled_to, user_message)

log = logging.getLogger("tcmoa.demo")
BASELINE_NAMES = {"average": "Average", "laplacian": "Laplacian pyramid", "mertens": "Mertens"}
SKIP: Any = gr.skip()  # an output a step leaves as it is
BAD_INPUT = (InputError, ImageError, ValueError, RuntimeError)  # explained to the user as they are
# tcmoa.align.default_reference in words, where it is not source 1
REFERENCE_DEFAULTS = {"mef": "the middle exposure", "mff": "the sharpest focal plane"}


class FuseView(NamedTuple):
    """Everything one fusion shows, in the order of the page's outputs (None clears one, SKIP keeps it)."""

    fused: np.ndarray | str | None = SKIP  # uint8, at the working resolution (the page gets it as a named PNG file)
    comparison: tuple[np.ndarray, np.ndarray] | None = SKIP  # (source, fused) for the before/after slider
    status: str = SKIP  # Markdown
    metrics: str | None = SKIP  # Markdown table
    baselines: list[tuple[np.ndarray, str]] | None = SKIP  # (image, caption) pairs
    prompts: np.ndarray | None = SKIP  # the map tabs' figures (analysis.TABS order); closed tabs are None
    routing: np.ndarray | None = SKIP
    weight: np.ndarray | None = SKIP
    difference: np.ndarray | None = SKIP
    alignment: np.ndarray | None = SKIP
    alignment_report: str | None = SKIP  # Markdown: what alignment did to each source (the alignment tab's words)
    shown: Shown | None = SKIP  # kept by the session for the tabs, the slider and the full-resolution action
    alpha: Any = SKIP  # the sliders: set back to the fused values when a typed value is refused
    beta: Any = SKIP


# ------------------------------------------------------------------------------ inputs
def page_request(engine: Engine, slots: Sequence[object], task: object, alpha: object, beta: object, *,
                 blend: bool = False, router_weights: Sequence[object] = (), resize: bool = False,
                 align: AlignOptions = AlignOptions(), what: str = "fusion") -> Request:
    """The page's controls as a checked request (the task's own router, or the user's blend)."""
    route = blend_route(engine, router_weights) if blend else None
    return prepare(engine, slots, task, alpha, beta, route=route, resize=resize, align=align, what=what)


def add_source_note(shown: int) -> str | None:
    """What "+ Add source" tells the user when `shown` slots are open: None, or why no slot was added."""
    if shown >= MAX_SOURCES:
        return f"This demo fuses at most {MAX_SOURCES} sources; remove one to add another."
    return None


def slot_labels(task: str, n: int = MAX_SOURCES) -> list[str]:
    """The label of each source slot for a task, e.g. 'Source 1: visible (A)'."""
    preset = get_preset(task)
    a, b = preset.roles
    labels = [f"Source 1: {a} (A)", f"Source 2: {b} (B)"]
    more = {"mef": "another exposure", "mff": "another focal plane"}.get(preset.key, f"another {b}")
    return (labels + [f"Source {i}: {more}" for i in range(3, MAX_SOURCES + 1)])[:n]


def next_step(slots: Sequence[object], task: str, verb: str = "fuse") -> str:
    """With fewer than two sources in: which slot to fill next (Markdown; a step on the way in, not an error)."""
    labels = slot_labels(task)
    filled = [i for i, slot in enumerate(slots) if present([slot])]
    if not filled:
        return f"**Upload two sources** to {verb}: {labels[0]} and {labels[1]}, or click an example."
    return f"**Add a second source** to {verb}: upload {labels[1 if 0 in filled else 0]}."


# ------------------------------------------------------------------------------ fusion
def fuse_steps(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, *,
               blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False,
               align: AlignOptions = AlignOptions(), baselines: bool = False, compare: int = 1,
               open_tab: str = "prompts", shown: Shown | None = None, pixels: int = WORKING_PIXELS) -> Iterator[FuseView]:
    """Fuse the filled slots at the working resolution: first the image and status, then metrics,
    baselines and the open map tab.

    The image is shown as soon as it exists; the rest follows in a second step, so metrics never
    delay it. Problems become a status message, never an exception; a refused α or β leaves every
    output as it was and puts the sliders back to the values of the fusion shown (`shown`).
    """
    try:
        start = time.perf_counter()
        request = page_request(engine, slots, task, alpha, beta, blend=blend, router_weights=router_weights,
                               resize=resize, align=align)
        images = scaled_to(request.images, pixels, request.reference)
        result = engine.fuse(images, [request.settings], maps=True)[0]
        fused = to_uint8(result.image)
        shown = analysis.shown_fusion(fused, images, result, request, engine.fusion_output)
        scaled = images[request.reference].shape != request.images[request.reference].shape
        status = status_line(engine, result, request, time.perf_counter() - start, blend, scaled)
    except KnobError as exc:
        yield refused_view(str(exc), shown, engine, task)
        return
    except TooFewSources:
        yield waiting_view(next_step(slots, task))
        return
    except BAD_INPUT as exc:
        yield failed_view(user_message(exc))
        return
    except Exception as exc:  # a bug, not bad input: log it, show one line
        log.exception("fusion failed")
        yield failed_view(f"internal error ({type(exc).__name__}); the server log has the details")
        return
    yield FuseView(fused=fused, comparison=compare_pair(shown, compare), status=status,
                   alignment_report=alignment_table(shown.alignment), shown=shown)
    try:
        gallery = baseline_gallery(result.sources, request.preset, fused) if baselines else None
        metrics = analysis.scores_table(fused, result.sources, request.preset.key, gallery[1:] if gallery else ())
        figures = analysis.tab_figures(open_tab, shown)
    except Exception as exc:  # the image stands; say what is missing
        log.exception("metrics or maps failed")
        gallery, metrics = None, f"⚠️ metrics unavailable: internal error ({type(exc).__name__})"
        figures = [None] * len(analysis.TABS)
    prompts, routing, weight, difference, alignment = figures  # analysis.TABS order
    yield FuseView(metrics=metrics, baselines=gallery, prompts=prompts, routing=routing, weight=weight,
                   difference=difference, alignment=alignment)


def preview_view(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, *,
                 blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False,
                 align: AlignOptions = AlignOptions(), shown: Shown | None = None) -> FuseView:
    """While a slider moves: the image fused at PREVIEW_PIXELS, its token path at PREVIEW_TOKEN_PIXELS, nothing
    else (the final fusion follows)."""
    try:
        start = time.perf_counter()
        request = page_request(engine, slots, task, alpha, beta, blend=blend, router_weights=router_weights,
                               resize=resize, align=align)
        settings = dataclasses.replace(request.settings, token_pixels=PREVIEW_TOKEN_PIXELS)
        result = engine.fuse(scaled_to(request.images, PREVIEW_PIXELS, request.reference), [settings])[0]
    except KnobError as exc:
        return refused_view(str(exc), shown, engine, task)
    except TooFewSources:
        return waiting_view(next_step(slots, task))
    except BAD_INPUT as exc:
        return failed_view(user_message(exc))
    except Exception as exc:
        log.exception("preview failed")
        return failed_view(f"internal error ({type(exc).__name__}); the server log has the details")
    h, w = result.image.shape[:2]
    status = (f"**Preview** {w}×{h} px · {time.perf_counter() - start:.2f} s · α = {result.settings.alpha:.2f}, "
              f"β = {result.settings.beta:+.2f} · ⏳ the full fusion follows when the slider rests")
    return FuseView(fused=to_uint8(result.image), status=status)


def failed_view(message: str) -> FuseView:
    """Every output cleared and the reason in the status line."""
    return waiting_view(f"⚠️ **Cannot fuse:** {message}")


def waiting_view(status: str) -> FuseView:
    """Every output cleared (they belonged to other sources) and `status` in the status line."""
    return FuseView(None, None, status, None, None, None, None, None, None, None, None, None)


def refused_view(message: str, shown: Shown | None, engine: Engine, task: object) -> FuseView:
    """A typed α or β out of range: one message, every output kept, the sliders back to what was fused."""
    if shown is not None:
        alpha, beta = shown.alpha, shown.beta
    else:
        alpha, beta = (task_defaults(engine, str(task))[:2] if str(task) in PRESETS else (SKIP, SKIP))
    kept = f" (kept α = {alpha:.2f}, β = {beta:+.2f})" if shown is not None else ""
    return FuseView(status=f"⚠️ **Value refused:** {message}{kept}", alpha=alpha, beta=beta)


def final_view(steps: Iterator[FuseView]) -> FuseView:
    """What the page shows once every step of a fusion has arrived (for tests and benchmarks)."""
    shown: list[Any] = [None] * len(FuseView._fields)
    for view in steps:
        shown = [old if new is SKIP else new for old, new in zip(shown, view)]
    return FuseView(*shown)


def baseline_gallery(images: Sequence[np.ndarray], preset: Preset, fused: np.ndarray
                     ) -> list[tuple[np.ndarray, str]]:
    """The classical baselines (average, Laplacian, Mertens) beside the model's result (images of one size)."""
    out = [(fused, "TC-MoA (this model)")]
    for name, caption in BASELINE_NAMES.items():
        try:
            out.append((to_uint8(run_baseline(name, images, preset.router)), caption))
        except Exception as exc:  # noqa: BLE001 (a baseline failing must not hide the model's result)
            log.warning("baseline %s failed: %s", name, exc)
    return out


def status_line(engine: Engine, result: FusionResult, request: Request, total: float, blend: bool,
                scaled: bool = False) -> str:
    """One Markdown line: what was fused, at what size, how long it took, on what, with which model; then the
    notes (alignment's included; the misalignment hint as a suggestion), and whether the sources were `scaled`
    to the working resolution."""
    h, w = result.image.shape[:2]
    route = "blended routers" if blend else f"router `{result.settings.route}`"
    line = (f"**Fused** {len(request.images)} sources · {w}×{h} px · **{total:.2f} s** (fusion "
            f"{result.seconds:.2f} s) · {engine.device_label} · model **{engine.model_label}** · "
            f"α = {result.settings.alpha:.2f}, β = {result.settings.beta:+.2f} · {route}")
    notes = [page_note(note) for note in (*request.notes, *result.notes)]
    if scaled:
        notes.append(f"Note: shown at the working resolution; **Full resolution** fuses the {request.size[0]}×"
                     f"{request.size[1]} px originals")
    if not engine.trained:
        notes.append(f"⚠️ **{UNTRAINED_WARNING}**")
    return "\n\n".join([line, *notes])


def compare_pair(shown: Shown | None, index: float | str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(source `index` (1-based), fused) for the before/after slider, or None before any fusion."""
    if shown is None:
        return None
    pick = min(max(int(index or 1), 1), len(shown.sources)) - 1
    return shown.sources[pick], shown.fused


# ------------------------------------------------------------------------------ sweep strip
def sweep_view(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, knob: str,
               metric: str, *, blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False,
               align: AlignOptions = AlignOptions()
               ) -> tuple[list[tuple[np.ndarray, str]] | None, np.ndarray | None, str, SweepResult | None]:
    """The sweep strip: (thumbnails, curve, status, the sweep kept for re-plotting); problems in the status."""
    try:
        request = page_request(engine, slots, task, alpha, beta, blend=blend, router_weights=router_weights,
                               resize=resize, align=align, what="the sweep")
        sweep = analysis.run_sweep(engine, request, knob)
    except TooFewSources:
        return None, None, next_step(slots, task, "sweep"), None
    except BAD_INPUT as exc:
        return None, None, f"⚠️ **Cannot sweep:** {user_message(exc)}", None
    except Exception as exc:
        log.exception("sweep failed")
        return None, None, f"⚠️ **Cannot sweep:** internal error ({type(exc).__name__})", None
    return (*sweep_plot(sweep, metric), sweep)


def sweep_plot(sweep: SweepResult | None, metric: str) -> tuple[list[tuple[np.ndarray, str]] | None,
                                                                np.ndarray | None, str]:
    """Thumbnails captioned with `metric`, its curve against the knob, and a status line."""
    if sweep is None:
        return None, None, "Press **Sweep** to fuse at five values of the knob."
    scores = [s.get(metric) for s in sweep.scores]
    h, w = sweep.thumbs[0].shape[:2]
    status = f"{len(sweep.values)} fusions at {w}×{h} px in {sweep.seconds:.1f} s"
    if None in scores:
        status += f" · ⚠️ {metric} is not computed here (MEF-SSIM: exposure stacks; Qabf, VIF, SSIM: two sources)"
    curve = sweep_curve(sweep.values, scores, analysis.KNOBS[sweep.knob].symbol, metric, sweep.current)
    return analysis.sweep_gallery(sweep, metric), curve, status


# ------------------------------------------------------------------------------ controls
def task_defaults(engine: Engine, task: str) -> tuple[float, float, list[float]]:
    """The task's α, β and one-hot router weights (its own router, or the one it borrows)."""
    preset = get_preset(task)
    route = preset.route_for(engine.router_names)
    return preset.alpha, preset.beta, [float(name == route) for name in engine.router_names]


def task_info(engine: Engine, task: str) -> str:
    """A short Markdown description of the task preset."""
    preset = get_preset(task)
    route = preset.route_for(engine.router_names)
    if preset.seen:
        seen = "trained task"
    elif route == preset.router:  # its own router, fitted alone; the shared adapters never saw the task
        seen = f"unseen by the adapters: only the `{route}` router was fitted to this kind of pair"
    else:
        seen = f"unseen task: zero-shot through the `{route}` router"
    order = " Source order does not matter (sorted by content)." if preset.order_free else ""
    return f"**{preset.label}**: A = {preset.roles[0]}, B = {preset.roles[1]} · {seen} · {preset.colour_rule}.{order}"


def reference_choices(task: str, n: int) -> list[tuple[str, int]]:
    """"Keep the frame of" choices for `n` sources: 0 = the task's own choice (said in words), then each source."""
    preset = get_preset(task)
    default = REFERENCE_DEFAULTS.get(preset.key, f"source 1 ({preset.roles[0]})")
    return [(f"the task's choice: {default}", 0)] + [(f"source {k}", k) for k in range(1, clamp_sources(n) + 1)]


def swap_sources(first: object, second: object) -> tuple[object, object]:
    """Exchange source 1 and source 2."""
    return second, first


def clamp_sources(n: int) -> int:
    """The number of visible source slots, within [2, MAX_SOURCES]."""
    return min(max(int(n), 2), MAX_SOURCES)

