"""The `/fuse` endpoint for programs (gradio_client): N >= 2 sources in, the fused PNG and a JSON report out."""
from __future__ import annotations

import time
from typing import Any, Sequence

import gradio as gr
import numpy as np

from tcmoa import ImageError, get_preset
from tcmoa.imaging import to_uint8
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE
from tcmoa.fuse.pipeline import match_sizes, parse_route

from .analysis import fusion_scores, metrics_note
from .callbacks import InputError, present, read_sources, user_message
from .engine import Engine

RESIZE_HINT = "or pass resize=True"


class ApiValue(gr.Number):
    """gr.Number that hands any value to the endpoint, which explains a bad one (not Gradio's generic error)."""

    is_template = True  # rendered (never, it is hidden) and documented as gr.Number

    def preprocess(self, payload: Any) -> Any:
        """The value as sent: the endpoint checks it against the library's range."""
        return payload


def api_fuse(engine: Engine, sources: Sequence[object] | None, task: object, alpha: object, beta: object,
             router: str | None = None, resize: object = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Fuse 2+ sources with the task, α, β, an optional router ('mff' or 'vif=0.5,medical=0.5') and resize.

    Returns the fused uint8 image and a JSON-able report (timing, device, model, router, metrics);
    bad input raises gr.Error with the reason, as the CLI and the page word it.
    """
    start = time.perf_counter()
    try:
        preset = get_preset(str(task))
        files = present(sources or [])
        if len(files) < 2:
            raise InputError(f"/fuse needs at least 2 source images, got {len(files)}")
        settings = {"alpha": ALPHA_RANGE.check(alpha), "beta": BETA_RANGE.check(beta),
                    "route": parse_route(router, engine.router_names), "resize": "first" if resize else None}
        images = read_sources(engine, files)
        result = engine.fuse(images, preset.key, [settings])[0]
        images, _ = match_sizes(images, settings["resize"])
    except (InputError, ImageError, ValueError, RuntimeError) as exc:
        raise gr.Error(user_message(exc, RESIZE_HINT), print_exception=False) from None
    fused = to_uint8(result.image)
    t_metrics = time.perf_counter()
    metrics = fusion_scores(fused, images, preset.key)
    t_metrics = time.perf_counter() - t_metrics
    route = settings["route"] if settings["route"] is not None else preset.route_for(engine.router_names)
    h, w = fused.shape[:2]
    report = {
        "task": preset.key, "sources": len(images), "fusion_order": [i + 1 for i in result.order], "size": [w, h],
        "alpha": result.alpha, "beta": result.beta,
        "router": route if isinstance(route, str) else dict(zip(engine.router_names, route)),
        "model": engine.model_name, "trained": engine.trained, "device": engine.device_label,
        "timing_s": {"fusion": round(result.seconds, 4), "metrics": round(t_metrics, 4),
                     "total": round(time.perf_counter() - start, 4)},
        "metrics": {name: round(value, 5) for name, value in metrics.items()},
        "metrics_note": metrics_note(list(metrics)),
        "notes": list(result.notes),
    }
    return fused, report
