"""The `/fuse` endpoint for programs (gradio_client): N >= 2 sources in, the fused PNG and a JSON report out.

Files come in as uploads only: a request that names a path on the server is refused with one line
(`DemoBlocks`), for /fuse and the page's events alike.
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any, Sequence

import gradio as gr
import numpy as np
import torch

from gradio.exceptions import InvalidPathError

from tcmoa import ImageError
from tcmoa.align import Alignment
from tcmoa.fuse.pipeline import FusionResult, parse_route
from tcmoa.imaging import to_uint8
from tcmoa.tasks import Route

from .analysis import fusion_scores, metrics_note
from .engine import (DEFAULT_ALIGN, FULL_CONCURRENCY, FULL_LANE, FUSION_CONCURRENCY, FUSION_LANE, WORKING_PIXELS,
                     Engine)
from .sources import AlignOptions, InputError, prepare, scaled_to, strict_bool, user_message

RESIZE_HINT = "pass align='auto' if they come from different cameras, or resize=True"
SERVER_PATH_REFUSED = ("a file named by a path on the server is refused: send the file itself "
                       "(gradio_client's handle_file uploads it)")


API_NAMES = ("fuse", "fuse_full")  # the documented endpoints: arguments after `sources` may be left out


class DemoBlocks(gr.Blocks):
    """gr.Blocks whose events refuse a file named by a server path with one clear message, and whose documented
    endpoints take their later arguments as optional over plain HTTP too.

    Gradio refuses such a path before any callback runs, with an exception it neither explains to the
    caller (`{"error": null}`) nor keeps out of the server log (a traceback per request). gradio_client
    fills in left-out arguments; a plain HTTP call with fewer values than inputs got a traceback.
    """

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        """A documented endpoint's left-out arguments take their defaults (so a call that predates the alignment
        arguments works as it did); other events' are checked as Gradio does."""
        if block_fn.api_name in API_NAMES:
            inputs.extend(getattr(block, "value", None) for block in block_fn.inputs[len(inputs):])
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(self, *args: Any, **kwargs: Any) -> Any:
        """The event's inputs as Gradio prepares them; a server path is one gr.Error, not a traceback."""
        try:
            return await super().preprocess_data(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error(SERVER_PATH_REFUSED, print_exception=False) from None


class ApiValue(gr.Number):
    """gr.Number that hands any value to the endpoint, which explains a bad one (not Gradio's generic error)."""

    is_template = True  # rendered (never, it is hidden) and documented as gr.Number

    def preprocess(self, payload: Any) -> Any:
        """The value as sent: the endpoint checks it against the library's range."""
        return payload


class ApiFlag(gr.Checkbox):
    """gr.Checkbox that hands the value as sent to the endpoint, which parses it strictly ("false" is false)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        """The value as sent: demo.sources.strict_bool accepts true/false, 1/0 and their strings only."""
        return payload


def router_report(route: Route, names: Sequence[str]) -> str | dict[str, float]:
    """The router as the report states it: its name, or the weight of each router in a blend."""
    if isinstance(route, str):
        return route
    if isinstance(route, int):
        return names[route]
    return dict(zip(names, torch.as_tensor(route, dtype=torch.float64).tolist()))


def alignment_report(alignment: Alignment | None) -> dict[str, Any] | None:
    """Alignment.to_json() with sources numbered from 1 (as the `reference` argument and the notes): the reference,
    each source's status, model, matrix (its pixels to the reference's), confidence and note, the crop, the notes."""
    if alignment is None:
        return None
    report = alignment.to_json()
    sources = [{"source": s.pop("index") + 1, **s} for s in report["sources"]]
    return {**report, "reference": report["reference"] + 1, "sources": sources}


def motion_report(result: FusionResult) -> list[float] | None:
    """Exposure stacks: the share of each source's pixels whose moving content was taken from the reference."""
    return None if result.motion is None else [round(float(m.mean()), 5) for m in result.motion]


def api_fuse(engine: Engine, sources: Sequence[object] | None, task: object, alpha: object, beta: object,
             router: str | None = None, resize: object = False, align: object = DEFAULT_ALIGN,
             reference: object = None, crop: object = False, deghost: object = True, *,
             full_resolution: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Fuse 2+ sources with the task, α, β, an optional router ('mff' or 'vif=0.5,medical=0.5'), resize, and the
    alignment (align, reference: 1-based or 0/None for the task's choice, crop, deghost).

    `/fuse` fuses at the working resolution (at most WORKING_PIXELS); `/fuse_full` (full_resolution=True)
    at the sources' own, in its own lane. Returns the fused uint8 image and a JSON-able report (timing,
    device, model, router, sizes, alignment, metrics); bad input raises gr.Error with the reason, as the
    CLI and the page word it.
    """
    start = time.perf_counter()
    endpoint = "/fuse_full" if full_resolution else "/fuse"
    try:
        route = parse_route(router, engine.router_names)
        request = prepare(engine, sources or [], task, alpha, beta, route=route,
                          resize=strict_bool(resize, "resize"), align=AlignOptions(align, reference, crop, deghost),
                          what=endpoint)
        images = (list(request.images) if full_resolution
                  else scaled_to(request.images, WORKING_PIXELS, request.reference))
        result = engine.fuse(images, [request.settings])[0]
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
        raise gr.Error(user_message(exc, RESIZE_HINT), print_exception=False) from None
    fused = to_uint8(result.image)
    t_metrics = time.perf_counter()
    # Metrics at most at the working resolution: at 11 MP they would cost more time and memory than the fusion.
    scored = scaled_to([result.image, *result.sources], WORKING_PIXELS)
    metrics = fusion_scores(to_uint8(scored[0]), scored[1:], request.preset.key)
    t_metrics = time.perf_counter() - t_metrics
    h, w = fused.shape[:2]
    notes = [*request.notes, *result.notes]
    if images[request.reference].shape != request.images[request.reference].shape:
        notes.append(f"fused at the working resolution {w}x{h} (sources {request.size[0]}x{request.size[1]}); "
                     "/fuse_full fuses the full resolution")
    report = {
        "task": request.preset.key, "sources": len(images), "fusion_order": [i + 1 for i in result.order],
        "size": [w, h], "source_size": list(request.size),
        "alpha": result.settings.alpha, "beta": result.settings.beta,
        "router": router_report(result.settings.route, engine.router_names),
        "model": engine.model_name, "trained": engine.trained, "device": engine.device_label,
        "timing_s": {"fusion": round(result.seconds, 4), "metrics": round(t_metrics, 4),
                     "total": round(time.perf_counter() - start, 4)},
        "metrics": {name: round(value, 5) for name, value in metrics.items()},
        "metrics_size": [scored[0].shape[1], scored[0].shape[0]],
        "metrics_note": metrics_note(list(metrics)),
        "align": result.settings.align,
        "reference": (result.alignment.reference if result.alignment is not None else request.reference) + 1,
        "alignment": alignment_report(result.alignment),
        "motion_share": motion_report(result),
        "notes": notes,
    }
    return fused, report


def wire_api(engine: Engine) -> None:
    """The documented endpoints on hidden components: `/fuse` at the working resolution, `/fuse_full` at the
    sources' own, each in its lane (call inside the Blocks)."""
    with gr.Column(visible=False):
        sources = gr.File(file_count="multiple", label="sources")
        task = gr.Textbox("vif", label="task")
        alpha, beta = ApiValue(1.0, label="alpha"), ApiValue(0.0, label="beta")
        router = gr.Textbox("", label="router")
        resize = ApiFlag(False, label="resize")
        align = gr.Textbox(DEFAULT_ALIGN, label="align")
        reference = ApiValue(0, label="reference")
        crop, deghost = ApiFlag(False, label="crop"), ApiFlag(True, label="deghost")
        fused = gr.Image(format="png", label="fused")
        report = gr.JSON(label="report")
        trigger, trigger_full = gr.Button(), gr.Button()
    # gradio_client calls these by position, in the order the README documents
    inputs = [sources, task, alpha, beta, router, resize, align, reference, crop, deghost]
    trigger.click(partial(api_fuse, engine), inputs, [fused, report], api_name="fuse",
                  concurrency_id=FUSION_LANE, concurrency_limit=FUSION_CONCURRENCY)
    trigger_full.click(partial(api_fuse, engine, full_resolution=True), inputs, [fused, report],
                       api_name="fuse_full", concurrency_id=FULL_LANE, concurrency_limit=FULL_CONCURRENCY)
