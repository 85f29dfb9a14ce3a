"""The demo's callbacks: plain functions of values (paths, arrays, numbers) -> output values.

No layout and no model maths here: fusion is `tcmoa.Fuser`, figures are `tcmoa.visualize`.
Every function takes the shared, immutable `Engine` first and keeps no state between calls,
so concurrent users cannot see each other's results; each is testable without a browser.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import NamedTuple, Sequence

import gradio as gr
import numpy as np

from tcmoa import ImageError, get_task, read_image
from tcmoa.baselines import run_baseline
from tcmoa.imaging import resize_to, to_uint8
from tcmoa.pipeline import FusionResult
from tcmoa.tasks import TaskPreset
from tcmoa.visualize import prompt_figure, routing_figure

from .engine import MAX_SOURCES, UNTRAINED_WARNING, Engine

log = logging.getLogger("tcmoa.demo")
BASELINE_NAMES = {"average": "Average", "laplacian": "Laplacian pyramid", "mertens": "Mertens"}


class InputError(ValueError):
    """A problem with what the user gave; its message is shown as is."""


class FuseView(NamedTuple):
    """Everything one fusion shows (None clears an output)."""

    fused: np.ndarray | None  # uint8, full resolution
    comparison: tuple[np.ndarray, np.ndarray] | None  # (source, fused) for the before/after slider
    prompts: np.ndarray | None  # prompt heatmap figure
    routing: np.ndarray | None  # routing figure
    baselines: list[tuple[np.ndarray, str]] | None  # (image, caption) pairs
    status: str  # Markdown


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


def explain(message: str) -> str:
    """Point library hints at the page's controls."""
    return message.replace("(or resize='first' / --resize first)", "(or tick “Resize sources to source 1's size”)")


def check_number(name: str, value: object, low: float, high: float) -> float:
    """A finite float within [low, high], else InputError."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or not low <= x <= high:
        raise InputError(f"{name} must be a finite number in [{low:g}, {high:g}], got {x}")
    return x


def route_for(engine: Engine, preset: TaskPreset, blend: bool, weights: Sequence[float]) -> object:
    """The task's own router, or the user's router blend (validated: finite, >= 0, positive sum)."""
    if not blend:
        return preset.route_for(engine.router_names)
    w = [check_number(f"{name} router weight", v, 0.0, 1.0) for name, v in zip(engine.router_names, weights)]
    if len(w) != len(engine.router_names) or sum(w) <= 0:
        raise InputError("router blending needs a positive weight on at least one router")
    return w


def slot_labels(task: str, n: int = MAX_SOURCES) -> list[str]:
    """The label of each source slot for a task, e.g. 'Source 1: visible (A)'."""
    preset = get_task(task)
    a, b = preset.roles
    labels = [f"Source 1: {a} (A)", f"Source 2: {b} (B)"]
    more = {"mef": "another exposure", "mff": "another focal plane"}.get(preset.key, f"another {b}")
    return (labels + [f"Source {i}: {more}" for i in range(3, MAX_SOURCES + 1)])[:n]


def to_display(image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A float [0, 1] image as uint8, resized to (h, w) when given and different."""
    if size is not None and image.shape[:2] != tuple(size):
        image = resize_to(image, size)
    return to_uint8(image)


# ------------------------------------------------------------------------------ fusion
def fuse_view(engine: Engine, slots: Sequence[object], task: str, alpha: float, beta: float, *,
              blend: bool = False, router_weights: Sequence[float] = (), resize: bool = False,
              baselines: bool = False, compare: int = 1, notify: bool = False) -> FuseView:
    """Fuse the filled slots and build every output; problems become a status message, never an exception."""
    try:
        return _fuse_view(engine, present(slots), task, alpha, beta, blend, router_weights, resize, baselines,
                          compare)
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
        message = str(exc)
    except Exception as exc:  # a bug, not bad input: log it, show one line
        log.exception("fusion failed")
        message = f"internal error ({type(exc).__name__}); the server log has the details"
    message = explain(message)
    if notify:
        gr.Warning(message)
    return FuseView(None, None, None, None, None, f"⚠️ **Cannot fuse:** {message}")


def _fuse_view(engine: Engine, sources: list[object], task: str, alpha: float, beta: float, blend: bool,
               weights: Sequence[float], resize: bool, baselines: bool, compare: int) -> FuseView:
    start = time.perf_counter()
    try:
        preset = get_task(str(task))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if len(sources) < 2:
        roles = " and ".join(preset.roles)
        raise InputError(f"fusion needs at least two source images ({roles}); got {len(sources)}. "
                         "Upload them above or click an example.")
    alpha = check_number("α", alpha, 0.0, 3.0)
    beta = check_number("β", beta, -0.5, 0.5)
    route = route_for(engine, preset, blend, weights)
    images = read_sources(engine, sources)
    result = engine.fuser.fuse(images, preset, alpha=alpha, beta=beta, route=route,
                               resize="first" if resize else None, maps=True)
    fused = to_uint8(result.image)
    t_maps = time.perf_counter()
    prompts = routing = None
    if result.maps is not None:
        if len(images) == 2:
            background, roles = images[result.order[0]], preset.roles
        else:
            background = images[result.order[-1]]  # the last step fuses the others' result (A) with it (B)
            roles = ("sources fused so far", f"source {result.order[-1] + 1}")
        prompts = prompt_figure(result.maps, background, roles)
        routing = routing_figure(result.maps)
    t_maps = time.perf_counter() - t_maps
    gallery = baseline_gallery(images, preset, fused) if baselines else None
    size = fused.shape[:2]
    pick = min(max(int(compare or 1), 1), len(images)) - 1
    status = status_line(engine, result, len(images), t_maps, time.perf_counter() - start, blend)
    return FuseView(fused, (to_display(images[pick], size), fused), prompts, routing, gallery, status)


def baseline_gallery(images: Sequence[np.ndarray], preset: TaskPreset, fused: np.ndarray
                     ) -> list[tuple[np.ndarray, str]]:
    """The classical baselines (average, Laplacian, Mertens) beside the model's result."""
    size = images[0].shape[:2]
    same = [im if im.shape[:2] == size else resize_to(im, size) for im in images]
    out = [(fused, "TC-MoA (this model)")]
    for name, caption in BASELINE_NAMES.items():
        try:
            out.append((to_uint8(run_baseline(name, same, preset.router)), caption))
        except Exception as exc:  # noqa: BLE001 (a baseline failing must not hide the model's result)
            log.warning("baseline %s failed: %s", name, exc)
    return out


def status_line(engine: Engine, result: FusionResult, n: int, t_maps: float, total: float, blend: bool) -> str:
    """One Markdown line: what was fused, how long it took, on what, with which model."""
    h, w = result.image.shape[:2]
    route = "blended routers" if blend else f"router `{result.task.route_for(engine.router_names)}`"
    line = (f"**Fused** {n} sources · {w}×{h} px · **{total:.2f} s** (fusion {result.seconds:.2f} s, maps "
            f"{t_maps:.2f} s) · {engine.device_label} · model **{engine.model_label}** · α = {result.alpha:.2f}, "
            f"β = {result.beta:+.2f} · {route}")
    notes = [f"Note: {note}" for note in result.notes]
    if not engine.trained:
        notes.append(f"⚠️ **{UNTRAINED_WARNING}**")
    return "\n\n".join([line, *notes])


def compare_view(slots: Sequence[object], fused: np.ndarray | None, index: int, max_pixels: int
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(source `index` (1-based), fused) for the before/after slider, or None when either is missing."""
    sources = present(slots)
    if fused is None or not sources:
        return None
    pick = min(max(int(index or 1), 1), len(sources)) - 1
    try:
        image = read_image(sources[pick], max_pixels=max_pixels)
    except ImageError:
        return None
    return to_display(image, fused.shape[:2]), np.asarray(fused)


def api_fuse(engine: Engine, source_a: object, source_b: object, task: str, alpha: float, beta: float
             ) -> np.ndarray:
    """The /fuse endpoint: two sources -> the fused uint8 image; bad input raises gr.Error with the reason."""
    try:
        preset = get_task(str(task))
        alpha = check_number("alpha", alpha, 0.0, 3.0)
        beta = check_number("beta", beta, -0.5, 0.5)
        sources = present([source_a, source_b])
        if len(sources) < 2:
            raise InputError("the /fuse endpoint needs two source images")
        result = engine.fuser.fuse(read_sources(engine, sources), preset, alpha=alpha, beta=beta)
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return to_uint8(result.image)


# ------------------------------------------------------------------------------ controls
def task_defaults(engine: Engine, task: str) -> tuple[float, float, list[float]]:
    """The task's α, β and one-hot router weights (its own router, or the one it borrows)."""
    preset = get_task(task)
    route = preset.route_for(engine.router_names)
    return preset.alpha, preset.beta, [float(name == route) for name in engine.router_names]


def task_info(engine: Engine, task: str) -> str:
    """A short Markdown description of the task preset."""
    preset = get_task(task)
    route = preset.route_for(engine.router_names)
    seen = "trained task" if preset.seen else f"unseen task: zero-shot through the `{route}` router"
    order = " Source order does not matter (sorted by content)." if preset.order_free else ""
    return f"**{preset.label}**: A = {preset.roles[0]}, B = {preset.roles[1]} · {seen} · {preset.colour_rule}.{order}"


def swap_sources(first: object, second: object) -> tuple[object, object]:
    """Exchange source 1 and source 2."""
    return second, first


def clamp_sources(n: int) -> int:
    """The number of visible source slots, within [2, MAX_SOURCES]."""
    return min(max(int(n), 2), MAX_SOURCES)


def count_sources(slots: Sequence[object]) -> int:
    """Visible slots needed after an example fills them: the last filled slot's number (at least 2)."""
    filled = [i for i, s in enumerate(slots, start=1) if s is not None]
    return clamp_sources(max(filled, default=2))
