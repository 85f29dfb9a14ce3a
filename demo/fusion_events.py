"""The events that fuse: the final fusion, the preview while a slider moves, and the full resolution on request.

The rules they keep (one user action, one fusion; always_last; a release cancels the preview) are in
demo.events. Each callback reads its inputs by component (`read_controls`) and answers by component
(`view_updates`): the order of a list never decides what goes where.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

import gradio as gr
from gradio.blocks import Block
from gradio.components import Component

from . import callbacks as cb
from .callbacks import SKIP
from .components import Inputs, Page
from .downloads import Cancelled, full_view, named_view
from .engine import FULL_CONCURRENCY, FULL_LANE, FUSION_CONCURRENCY, FUSION_LANE, Engine
from .sources import AlignOptions

T = TypeVar("T")
Values = Mapping[Component, Any]  # an event's inputs, given as a set: {component: value}
FUSION_EVENT: dict[str, Any] = dict(concurrency_limit=FUSION_CONCURRENCY, concurrency_id=FUSION_LANE)
FULL_EVENT: dict[str, Any] = dict(concurrency_limit=FULL_CONCURRENCY, concurrency_id=FULL_LANE)
# Cheap updates. Queued all the same: only queued events report `request` changes back to the page.
QUICK: dict[str, Any] = dict(api_visibility="private")


@dataclass(frozen=True)
class Controls:
    """The settings every fusion reads, by name."""

    task: str
    alpha: Any  # as typed: the callbacks check it against the library's range
    beta: Any
    slots: tuple[Any, ...]  # every slot, empty or hidden ones None
    blend: bool
    resize: bool
    router_weights: tuple[Any, ...]
    align: AlignOptions  # "Align sources", the reference frame, crop, remove moving content

    def options(self) -> dict[str, Any]:
        """The callbacks' keyword options."""
        return dict(blend=self.blend, router_weights=self.router_weights, resize=self.resize, align=self.align)

    def knobs(self) -> tuple[Any, ...]:
        """Everything but the sources: a preview of these knobs is dropped once a final fusion started with them."""
        return (self.task, self.alpha, self.beta, self.blend, self.resize, *self.router_weights, self.align)


def control_inputs(i: Inputs) -> set[Block]:
    """The components `read_controls` reads (an event's inputs: a set, so its callback gets a dict)."""
    return {i.task, i.alpha, i.beta, i.blend, i.resize, *i.slots, *i.routers, i.align, i.reference, i.crop,
            i.deghost}


def read_controls(i: Inputs, values: Values) -> Controls:
    """The Controls in an event's {component: value} inputs."""
    align = AlignOptions(values[i.align], values[i.reference] or None, bool(values[i.crop]), bool(values[i.deghost]))
    return Controls(values[i.task], values[i.alpha], values[i.beta], tuple(values[s] for s in i.slots),
                    bool(values[i.blend]), bool(values[i.resize]), tuple(values[r] for r in i.routers), align)


def view_targets(page: Page) -> dict[str, Component]:
    """The component that shows each field of a cb.FuseView."""
    i, o = page.inputs, page.outputs
    return {"fused": o.fused, "comparison": o.comparison, "status": o.status, "metrics": o.metrics,
            "baselines": o.baselines, **o.figures, "alignment_report": o.alignment_report, "shown": page.session.shown,
            "alpha": i.alpha, "beta": i.beta}


def view_updates(page: Page, view: cb.FuseView) -> dict[Component, Any]:
    """A FuseView as {component: value}; what it leaves as it is (SKIP) is left out (all of it: SKIP)."""
    targets = view_targets(page)
    return {targets[name]: value for name, value in view._asdict().items() if value is not SKIP} or SKIP


def announce_refusal(view: cb.FuseView) -> None:
    """A refused α or β also goes to a toast: putting the sliders back re-fuses, whose status replaces the line."""
    if view.alpha is not SKIP:  # only a refusal sets the sliders (cb.refused_view)
        gr.Warning(view.status.replace("**", "").removeprefix("⚠️ "))


def fusing_status(task: str) -> str:
    """The status while the fusion an action asked for runs (never the previous result's)."""
    return f"⏳ Fusing for **{cb.get_preset(task).label}**…"


class PerSession(Generic[T]):
    """One value per browser session, made by `factory` on first use (bounded: the oldest sessions' go)."""

    def __init__(self, factory: Callable[[], T], most: int = 1024):
        self.values: OrderedDict[str, T] = OrderedDict()
        self.factory, self.most, self.lock = factory, most, threading.Lock()

    def get(self, session: str) -> T:
        """The session's value."""
        with self.lock:
            value = self.values.pop(session) if session in self.values else self.factory()
            self.values[session] = value
            while len(self.values) > self.most:
                self.values.popitem(last=False)
            return value


def final_actions(page: Page) -> list[Any]:
    """The user actions that run the final fusion directly (the others, uploads included, set inputs, then bump
    `request`)."""
    i = page.inputs
    return [*(s.clear for s in i.slots), i.alpha.release, i.beta.release,
            i.blend.input, i.resize.input, i.show_baselines.input, *(r.release for r in i.routers),
            i.align.select, i.reference.select, i.crop.input, i.deghost.input, i.fuse.click, page.session.request.change]


def wire_fusion(engine: Engine, page: Page) -> None:
    """The final fusion at the working resolution, and the preview that follows a moving slider.

    The final fusion shows the image first, then metrics, baselines and the open map tab. While a
    slider moves, a reduced preview; only the latest value waits (always_last), and a release cancels
    the preview still queued or running, so a late preview never hides the final.
    """
    i, o, s = page.inputs, page.outputs, page.session
    # The knobs of each session's latest final fusion, as it starts: a preview of the same knobs that
    # arrives later (Gradio sends the one it held back, always_last, after the release's cancel) would
    # replace the final with "the full fusion follows", and none would.
    finals: PerSession[list[tuple[Any, ...]]] = PerSession(list)
    outputs = list(view_targets(page).values())

    def live_fuse(req: gr.Request, values: dict[Component, Any]) -> Iterator[dict[Component, Any]]:
        c = read_controls(i, values)
        finals.get(req.session_hash or "")[:] = [c.knobs()]
        # The status never shows the previous result's, and no map tab the previous map, while this one runs.
        yield {o.status: fusing_status(c.task), **{figure: None for figure in o.figures.values()}}
        for view in cb.fuse_steps(engine, c.slots, c.task, c.alpha, c.beta, baselines=values[i.show_baselines],
                                  compare=values[o.compare_with], open_tab=values[s.open_tab], shown=values[s.shown],
                                  **c.options()):
            announce_refusal(view)
            yield view_updates(page, named_view(view))

    def preview(req: gr.Request, values: dict[Component, Any]) -> dict[Component, Any]:
        c = read_controls(i, values)
        final = finals.get(req.session_hash or "")
        if c.knobs() in final:  # already fused in full: nothing to preview
            return SKIP
        view = cb.preview_view(engine, c.slots, c.task, c.alpha, c.beta, shown=values[s.shown], **c.options())
        if c.knobs() in final:  # the final started meanwhile
            return SKIP
        announce_refusal(view)
        return view_updates(page, named_view(view))

    previews = gr.on([i.alpha.input, i.beta.input], preview, control_inputs(i) | {s.shown}, outputs,
                     trigger_mode="always_last", show_progress="hidden", api_visibility="private", **FUSION_EVENT)
    gr.on(final_actions(page), live_fuse, control_inputs(i) | {i.show_baselines, o.compare_with, s.open_tab, s.shown},
          outputs, trigger_mode="always_last", show_progress="hidden", api_name="live_fuse",
          api_visibility="private", cancels=[previews], **FUSION_EVENT)


def cancel_full(cancel_flags: PerSession[threading.Event], running: PerSession[threading.Event], session: str) -> str:
    """The Cancel button: stop the session's full-resolution fusion after its tile, and say so.

    The cancelled event's own reply never reaches the page, so the click's reply is what the user reads.
    """
    if not running.get(session).is_set():
        return "Nothing to cancel: no full-resolution fusion is running."
    cancel_flags.get(session).set()
    return "Full-resolution fusion cancelled."


def wire_full_resolution(engine: Engine, page: Page) -> None:
    """The full resolution, on request, in its own lane, with progress and a Cancel button."""
    i, o = page.inputs, page.outputs
    cancel_flags, running = PerSession(threading.Event), PerSession(threading.Event)

    def full(req: gr.Request, values: dict[Component, Any], progress: gr.Progress = gr.Progress()
             ) -> dict[Component, Any]:
        c = read_controls(i, values)
        flag, busy = cancel_flags.get(req.session_hash or ""), running.get(req.session_hash or "")
        flag.clear()
        busy.set()

        def step(fraction: float) -> None:
            if flag.is_set():
                raise Cancelled
            progress(fraction, desc="Fusing at full resolution")

        try:
            path, status = full_view(engine, c.slots, c.task, c.alpha, c.beta, progress=step, **c.options())
        finally:
            busy.clear()
        return {o.full_file: gr.update(value=path, visible=path is not None), o.full_status: status}

    def cancel(req: gr.Request) -> str:
        return cancel_full(cancel_flags, running, req.session_hash or "")

    # The progress bar is drawn on the status line under the image (the file appears when there is one).
    full_event = i.full.click(full, control_inputs(i), [o.full_file, o.full_status], api_name="full",
                              show_progress_on=[o.full_status], api_visibility="private", **FULL_EVENT)
    i.cancel.click(cancel, None, o.full_status, queue=False, cancels=[full_event], api_visibility="private")
