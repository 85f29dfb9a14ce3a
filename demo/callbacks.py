"""The demo's callbacks: plain functions of values (paths, arrays, numbers) -> output values.

No layout and no model maths here: fusion is `tcmoa.Fuser` (through `Engine.fuse`), figures are
`tcmoa.fuse.figures`, metrics and the sweep are demo.analysis. Every function takes the shared,
immutable `Engine` first and keeps no state between calls (what a session needs later is returned
to it as a `Shown`), so concurrent users cannot see each other's results; each is testable
without a browser.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterator, NamedTuple, Sequence

import gradio as gr
import numpy as np

from tcmoa import ImageError, get_preset, read_image
from tcmoa.metrics.baselines import run_baseline
from tcmoa.imaging import to_uint8
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE, KnobRange
from tcmoa.fuse.pipeline import FusionResult, SizeMismatchError, match_sizes
from tcmoa.tasks import Preset
from tcmoa.fuse.figures import sweep_curve

from . import analysis
from .analysis import Shown, SweepResult
from .engine import MAX_SOURCES, UNTRAINED_WARNING, Engine

log = logging.getLogger("tcmoa.demo")
BASELINE_NAMES = {"average": "Average", "laplacian": "Laplacian pyramid", "mertens": "Mertens"}
RESIZE_HINT = "or tick “Resize sources to source 1's size”"
ROUTER_WEIGHT = KnobRange("router weight", 0.0, 1.0, 0.05)
SKIP: Any = gr.skip()  # an output a step leaves as it is


class InputError(ValueError):
    """A problem with what the user gave; its message is shown as is."""


class FuseView(NamedTuple):
    """Everything one fusion shows, in the order of the page's outputs (None clears one, SKIP keeps it)."""

    fused: np.ndarray | None  # uint8, full resolution
    comparison: tuple[np.ndarray, np.ndarray] | None  # (source, fused) for the before/after slider
    status: str  # Markdown
    metrics: str | None  # Markdown table
    baselines: list[tuple[np.ndarray, str]] | None  # (image, caption) pairs
    prompts: np.ndarray | None  # the map tabs' figures (analysis.TABS order); closed tabs are None
    routing: np.ndarray | None
    weight: np.ndarray | None
    difference: np.ndarray | None
    shown: Shown | None  # kept by the session for the tabs and the slider


# ------------------------------------------------------------------------------ inputs
def present(slots: Sequence[object]) -> list[object]:
    """The filled source slots, in order."""
    return [s for s in slots if s is not None and not (isinstance(s, str) and not s)]


def read_sources(engine: Engine, sources: Sequence[object]) -> list[np.ndarray]:
    """Read and validate each source (file size, pixel limit, decodability) into float arrays."""
    images = []
    for i, src in enumerate(sources, start=1):
        if isinstance(src, (str, os.PathLike)) and os.path.isfile(src):
            size_mb = os.path.getsize(src) / 2**20
            if size_mb > engine.max_file_mb:
                raise InputError(f"source {i}: the file is {size_mb:.0f} MB, above this demo's limit of "
                                 f"{engine.max_file_mb:.0f} MB; downscale or re-encode it")
        try:
            images.append(read_image(src, max_pixels=engine.max_pixels))
        except ImageError as exc:
            message = str(exc)
            if isinstance(src, (str, os.PathLike)):  # name the upload, not the server's temporary path
                message = message.replace(f"'{src}'", f"'{os.path.basename(src)}'")
            raise InputError(f"source {i}: {message.replace(' (or raise max_pixels)', '')}") from None
    return images


def user_message(exc: Exception, resize_hint: str = RESIZE_HINT) -> str:
    """The message to show for an input problem, pointing at this entry point's resize control."""
    return exc.explain(resize_hint) if isinstance(exc, SizeMismatchError) else str(exc)


def chosen_route(engine: Engine, preset: Preset, blend: bool, weights: Sequence[float]) -> object:
    """The task's own router, or the user's router blend (validated: within [0, 1], positive sum)."""
    if not blend:
        return preset.route_for(engine.router_names)
    w = [ROUTER_WEIGHT.check(v) for v in weights]
    if len(w) != len(engine.router_names) or sum(w) <= 0:
        raise InputError("router blending needs a positive weight on at least one router")
    return w


def prepare(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, blend: bool,
            router_weights: Sequence[float], resize: bool) -> tuple[Preset, dict[str, Any], list[np.ndarray]]:
    """Validate a request: the preset, the Fuser.fuse settings and the source images (cheap checks first)."""
    try:
        preset = get_preset(str(task))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    sources = present(slots)
    if len(sources) < 2:
        raise InputError(f"fusion needs at least two source images ({' and '.join(preset.roles)}); got "
                         f"{len(sources)}. Upload them above or click an example.")
    settings = {"alpha": ALPHA_RANGE.check(alpha), "beta": BETA_RANGE.check(beta),
                "route": chosen_route(engine, preset, blend, router_weights), "resize": "first" if resize else None}
    return preset, settings, read_sources(engine, sources)


def slot_labels(task: str, n: int = MAX_SOURCES) -> list[str]:
    """The label of each source slot for a task, e.g. 'Source 1: visible (A)'."""
    preset = get_preset(task)
    a, b = preset.roles
    labels = [f"Source 1: {a} (A)", f"Source 2: {b} (B)"]
    more = {"mef": "another exposure", "mff": "another focal plane"}.get(preset.key, f"another {b}")
    return (labels + [f"Source {i}: {more}" for i in range(3, MAX_SOURCES + 1)])[:n]


# ------------------------------------------------------------------------------ fusion
def fuse_steps(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, *,
               blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False,
               baselines: bool = False, compare: int = 1, open_tab: str = "prompts") -> Iterator[FuseView]:
    """Fuse the filled slots: first the image and status, then metrics, baselines and the open map tab.

    The image is shown as soon as it exists; the rest follows in a second step, so metrics never
    delay it. Problems become a status message, never an exception.
    """
    try:
        start = time.perf_counter()
        preset, settings, images = prepare(engine, slots, task, alpha, beta, blend, router_weights, resize)
        result = engine.fuse(images, preset.key, [{**settings, "maps": True}])[0]
        images, _ = match_sizes(images, settings["resize"])  # as the pipeline fused them
        fused = to_uint8(result.image)
        shown = analysis.shown_fusion(fused, images, result.maps, result.order, preset)
        status = status_line(engine, result, len(images), time.perf_counter() - start, blend)
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
        yield failed_view(user_message(exc))
        return
    except Exception as exc:  # a bug, not bad input: log it, show one line
        log.exception("fusion failed")
        yield failed_view(f"internal error ({type(exc).__name__}); the server log has the details")
        return
    yield FuseView(fused, compare_pair(shown, compare), status, SKIP, SKIP, SKIP, SKIP, SKIP, SKIP, shown)
    try:
        gallery = baseline_gallery(images, preset, fused) if baselines else None
        metrics = analysis.scores_table(fused, images, preset.key, gallery[1:] if gallery else ())
        figures = analysis.tab_figures(open_tab, shown)
    except Exception as exc:  # the image stands; say what is missing
        log.exception("metrics or maps failed")
        gallery, metrics = None, f"⚠️ metrics unavailable: internal error ({type(exc).__name__})"
        figures = [None] * len(analysis.TABS)
    yield FuseView(SKIP, SKIP, SKIP, metrics, gallery, *figures, SKIP)


def failed_view(message: str) -> FuseView:
    """Every output cleared and the reason in the status line."""
    return FuseView(None, None, f"⚠️ **Cannot fuse:** {message}", None, None, None, None, None, None, None)


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


def status_line(engine: Engine, result: FusionResult, n: int, total: float, blend: bool) -> str:
    """One Markdown line: what was fused, how long it took, on what, with which model."""
    h, w = result.image.shape[:2]
    route = "blended routers" if blend else f"router `{result.task.route_for(engine.router_names)}`"
    line = (f"**Fused** {n} sources · {w}×{h} px · **{total:.2f} s** (fusion {result.seconds:.2f} s) · "
            f"{engine.device_label} · model **{engine.model_label}** · α = {result.alpha:.2f}, "
            f"β = {result.beta:+.2f} · {route}")
    notes = [f"Note: {note}" for note in result.notes]
    if not engine.trained:
        notes.append(f"⚠️ **{UNTRAINED_WARNING}**")
    return "\n\n".join([line, *notes])


def compare_pair(shown: Shown | None, index: object) -> tuple[np.ndarray, np.ndarray] | None:
    """(source `index` (1-based), fused) for the before/after slider, or None before any fusion."""
    if shown is None:
        return None
    pick = min(max(int(index or 1), 1), len(shown.sources)) - 1
    return shown.sources[pick], shown.fused


# ------------------------------------------------------------------------------ sweep strip
def sweep_view(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, knob: str,
               metric: str, *, blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False
               ) -> tuple[list[tuple[np.ndarray, str]] | None, np.ndarray | None, str, SweepResult | None]:
    """The sweep strip: (thumbnails, curve, status, the sweep kept for re-plotting); problems in the status."""
    try:
        preset, settings, images = prepare(engine, slots, task, alpha, beta, blend, router_weights, resize)
        sweep = analysis.run_sweep(engine, images, preset, knob, settings)
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
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
    curve = sweep_curve(sweep.values, scores, sweep.knob, metric, sweep.current)
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


def swap_sources(first: object, second: object) -> tuple[object, object]:
    """Exchange source 1 and source 2."""
    return second, first


def clamp_sources(n: int) -> int:
    """The number of visible source slots, within [2, MAX_SOURCES]."""
    return min(max(int(n), 2), MAX_SOURCES)
