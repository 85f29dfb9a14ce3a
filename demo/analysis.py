"""What the app shows beside the fused image: image metrics, the map tabs and the sweep strip.

Plain functions of arrays, no layout. Metrics are computed on luminance (8-bit grey, VIFB's grey
mode), so a colour result costs one pass per metric instead of three: the slider loop stays fast.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tcmoa.imaging import resize_to, shrink_to, bt601_luma, to_uint8
from tcmoa.metrics.scores import evaluate
from tcmoa.fuse.pipeline import FusionMaps, FusionResult
from tcmoa.fuse.figures import difference_figure, prompt_figure, routing_figure, weight_figure
from tcmoa.fuse.sweeps import KNOBS, sweep_settings

from .alignment_view import AlignmentShown, alignment_figure
from .engine import Engine
from .sources import Request, scaled_to

# The panel's metrics, all "higher is better". Qabf, VIF and SSIM compare the result with two
# sources; MEF-SSIM (any number of exposures) is shown for exposure stacks only.
PAIR_METRICS = ("Qabf", "VIF", "SSIM")
PANEL_METRICS = (*PAIR_METRICS, "EN", "SD")
STACK_METRIC = "MEF-SSIM"
SWEEP_METRICS = (*PANEL_METRICS, STACK_METRIC)  # what the sweep can plot; a fusion lacking one says so
DISPLAY_SIDE = 1024  # the map tabs and the before/after slider work on copies at most this large
SWEEP_PIXELS = 262_144  # the sweep fuses five times: on copies of at most 512x512 px worth
SWEEP_COUNT = 5
TABS = ("prompts", "routing", "weight", "difference", "alignment")  # the map tabs, rendered when open


# ------------------------------------------------------------------------------ metrics
def metric_names(task: str, n_sources: int) -> list[str]:
    """The panel's metrics for a task and a number of sources."""
    names = list(PANEL_METRICS) if n_sources == 2 else [n for n in PANEL_METRICS if n not in PAIR_METRICS]
    return names + [STACK_METRIC] if task == "mef" else names


def luma8(image: np.ndarray) -> np.ndarray:
    """A float [0, 1] or uint8 image as 8-bit luminance."""
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    return to_uint8(bt601_luma(image) if image.ndim == 3 else image)


def fusion_scores(fused: np.ndarray, sources: Sequence[np.ndarray], task: str) -> dict[str, float]:
    """Image-level metrics of a fused image against its sources (same size), on luminance."""
    return evaluate(luma8(fused), [luma8(s) for s in sources], metric_names(task, len(sources)))


def metrics_table(rows: dict[str, dict[str, float]], seconds: float) -> str:
    """Markdown: one row per method (TC-MoA first, then any baselines), one column per metric."""
    names = list(next(iter(rows.values())))
    lines = ["| method | " + " | ".join(f"{n} ↑" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for method, scores in rows.items():
        lines.append(f"| {method} | " + " | ".join(f"{scores[n]:.3f}" for n in names) + " |")
    return "\n".join(lines) + f"\n\n<small>{metrics_note(names)} · computed in {seconds:.2f} s</small>"


def metrics_note(names: Sequence[str]) -> str:
    """How to read the metrics: on luminance, VIFB's SSIM convention, pair metrics for two sources only."""
    if "SSIM" in names:
        return "on luminance; SSIM is summed over both sources (VIFB convention, at most 2)"
    return "on luminance; Qabf, VIF and SSIM compare with exactly two sources, so they are not shown"


def scores_table(fused: np.ndarray, sources: Sequence[np.ndarray], task: str,
                 baselines: Sequence[tuple[np.ndarray, str]] = ()) -> str:
    """The metrics panel: the model's scores, and each baseline's beside them."""
    start = time.perf_counter()
    rows = {"TC-MoA": fusion_scores(fused, sources, task)}
    for image, caption in baselines:
        rows[caption] = fusion_scores(image, sources, task)
    return metrics_table(rows, time.perf_counter() - start)


# ------------------------------------------------------------------------------ map tabs
def display_copy(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """An image (or map) at most `side` px on its longer side, keeping its dtype kind."""
    return shrink_to(image, side)


@dataclass(frozen=True)
class Shown:
    """What the map tabs, the before/after slider and a refused value need from the last fusion (small)."""

    maps: FusionMaps | None  # the source weight at display size
    roles: tuple[str, str]  # what stream A and stream B of the mapped (last) fusion step are
    background: np.ndarray  # uint8 display copy of stream A's source, under the maps
    fused: np.ndarray  # uint8 display copy
    sources: tuple[np.ndarray, ...]  # uint8 display copies of the sources as fused (aligned), in upload order
    labels: tuple[str, ...]  # "visible", "infrared", ... per source
    alpha: float  # the knobs it was fused with: the sliders return to them when a typed value is refused
    beta: float
    task: str
    head: str  # the model's output head (Engine.fusion_output): what its weight map means
    alignment: AlignmentShown | None = None  # the alignment tab's (None: nothing to show)


def shown_alignment(given: Sequence[np.ndarray], result: FusionResult, reference: int) -> AlignmentShown:
    """Display copies for the alignment tab: the sources as given (in the reference's display size), where each
    source as fused has no pixels of its own or had moving content (bool masks), and what was done to each."""
    alignment = result.alignment
    ref = alignment.reference if alignment is not None else reference
    frame = display_copy(to_uint8(given[ref]))
    as_given = tuple(frame if i == ref else to_uint8(resize_to(im, frame.shape[:2])) for i, im in enumerate(given))
    coverage = alignment.coverage if alignment is not None else [None] * len(given)
    return AlignmentShown(ref, as_given, tuple(alignment.sources) if alignment is not None else None,
                          tuple(None if c is None else display_copy(c) < 0.5 for c in coverage),
                          None if result.motion is None else tuple(display_copy(m) > 0.5 for m in result.motion),
                          tuple(result.notes))


def shown_fusion(fused: np.ndarray, images: Sequence[np.ndarray], result: FusionResult, request: Request,
                 head: str) -> Shown:
    """Keep display copies of one fusion (`images` as given to it, by a model with output `head`) for the tabs
    and the slider."""
    maps, order, preset, sources = result.maps, result.order, request.preset, result.sources
    if len(sources) == 2:
        background, roles = sources[order[0]], preset.roles
    else:  # the last step fuses the others' result (A) with the last source (B)
        background, roles = sources[order[-1]], ("sources fused so far", f"source {order[-1] + 1}")
    if maps is not None and maps.source_weight is not None:
        maps = dataclasses.replace(maps, source_weight=display_copy(maps.source_weight))
    labels = list(preset.roles) + [f"source {i}" for i in range(3, len(sources) + 1)]
    return Shown(maps, roles, display_copy(to_uint8(background)), display_copy(fused),
                 tuple(display_copy(to_uint8(im)) for im in sources), tuple(labels), result.settings.alpha,
                 result.settings.beta, preset.key, head, shown_alignment(images, result, request.reference))


def render_tab(tab: str, shown: Shown | None) -> np.ndarray | None:
    """The figure of one map tab for the last fusion; None when there is nothing to show."""
    if shown is None:
        return None
    if tab == "difference":
        return difference_figure(shown.fused, shown.sources, shown.labels)
    if tab == "alignment":
        return None if shown.alignment is None else alignment_figure(shown.alignment, shown.sources)
    if shown.maps is None:
        return None
    if tab == "prompts":
        return prompt_figure(shown.maps, shown.background, shown.roles)
    if tab == "routing":
        return routing_figure(shown.maps)
    if tab == "weight":
        return weight_figure(shown.maps, shown.background, shown.roles, head=shown.head)
    raise ValueError(f"unknown tab {tab!r}; one of {TABS}")


def tab_figures(open_tab: str, shown: Shown | None) -> list[np.ndarray | None]:
    """One entry per tab: the open tab's figure, None (cleared, rendered when opened) for the others."""
    return [render_tab(tab, shown) if tab == open_tab else None for tab in TABS]


# ------------------------------------------------------------------------------ sweep strip
@dataclass(frozen=True)
class SweepResult:
    """The fusion at SWEEP_COUNT values of one knob, with every panel metric of each."""

    knob: str  # "alpha" or "beta" (KnobRange.name)
    values: tuple[float, ...]
    thumbs: tuple[np.ndarray, ...]  # uint8, at most SWEEP_PIXELS
    scores: tuple[dict[str, float], ...]
    current: float  # the knob's value on the sliders
    seconds: float


def run_sweep(engine: Engine, request: Request, knob: str) -> SweepResult:
    """Fuse at SWEEP_COUNT evenly spaced values of `knob` (the other settings as given), at SWEEP_PIXELS."""
    if knob not in KNOBS:
        raise ValueError(f"the sweep varies {' or '.join(KNOBS)}, not {knob!r}")
    start = time.perf_counter()
    knob_range = KNOBS[knob]
    values = tuple(knob_range.sweep(SWEEP_COUNT))
    small = scaled_to(request.images, SWEEP_PIXELS, request.reference)
    results = engine.fuse(small, sweep_settings(request.settings, knob, values))
    thumbs = tuple(to_uint8(r.image) for r in results)
    scores = tuple(fusion_scores(t, r.sources, request.preset.key) for t, r in zip(thumbs, results))
    return SweepResult(knob, values, thumbs, scores, float(getattr(request.settings, knob)),
                       time.perf_counter() - start)


def sweep_gallery(sweep: SweepResult, metric: str) -> list[tuple[np.ndarray, str]]:
    """(thumbnail, caption) per knob value: the caption is the value and the chosen metric's score."""
    symbol = KNOBS[sweep.knob].symbol
    return [(thumb, f"{symbol} {v:g} · {s[metric]:.3f}" if metric in s else f"{symbol} {v:g}")
            for thumb, v, s in zip(sweep.thumbs, sweep.values, sweep.scores)]

