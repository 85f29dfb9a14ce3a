"""The page's events: which user action runs which callback.

One user action gives exactly one fusion. Fusions run only on *user* events (`.input`, `.select`,
`.upload`, `.clear`, clicks), never on `.change`, which also fires when a callback sets a value. Actions
that set several inputs at once (a task change, an example, swap, reset, removing a filled slot)
update them without a fusion and bump `request`, whose change runs the one fusion with the new
values. Every fusion goes through one event with trigger_mode="always_last": while one runs, only
the latest request waits, and results arrive in order.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Generic, Sequence, TypeVar

import gradio as gr
import numpy as np

from . import callbacks as cb
from .analysis import TABS, Shown, render_tab
from .api import ApiFlag, ApiValue, api_fuse
from .callbacks import SKIP
from .downloads import Cancelled, browser_copy, full_view, named_png, result_name
from .engine import FULL_CONCURRENCY, FUSION_CONCURRENCY, MAX_SOURCES, Engine

if TYPE_CHECKING:
    from .layout import Inputs, Outputs

T = TypeVar("T")
FUSION_EVENT: dict[str, Any] = dict(concurrency_limit=FUSION_CONCURRENCY, concurrency_id="fusion")
# Cheap updates. Queued all the same: only queued events report `request` changes back to the page.
QUICK: dict[str, Any] = dict(api_visibility="private")


def slot_updates(n: int, task: str | None = None, files: Sequence[object] | None = None) -> list[Any]:
    """[n, an update per source slot, compare choices]: slots past n hidden and emptied, labels for `task`,
    values from `files` (an example's) when given."""
    n = cb.clamp_sources(n)
    labels = cb.slot_labels(task) if task else [None] * MAX_SOURCES
    slots = []
    for i, label in enumerate(labels):
        change: dict[str, Any] = {"visible": i < n}
        if i >= n or files is not None:
            change["value"] = files[i] if files is not None and i < n else None
        if label:
            change["label"] = label
        slots.append(gr.update(**change))
    return [n, *slots, gr.update(choices=[(f"Source {i}", i) for i in range(1, n + 1)], value=1)]


def open_map_tab(key: str, shown: Any) -> tuple[str, Any]:
    """A map tab was opened: remember it, and draw its figure for the last fusion."""
    return key, render_tab(key, shown)


def announce_refusal(view: cb.FuseView) -> None:
    """A refused α or β also goes to a toast: putting the sliders back re-fuses, whose status replaces the line."""
    if view.alpha is not SKIP:  # only a refusal sets the sliders (cb.refused_view)
        gr.Warning(view.status.replace("**", "").removeprefix("⚠️ "))


def outdated(sweep: Any) -> tuple[Any, ...]:
    """Sources or task changed: the sweep and the full-resolution result go (the sweep says so if there was one)."""
    note = "Sources or task changed: press **Sweep** to sweep them." if sweep is not None else ""
    return None, None, note, None, None, ""


def shown_upload(source: Any) -> Any:
    """The slot's new value: a PNG copy of an upload the browser cannot show, else the upload as it is."""
    copy = browser_copy(source)
    return SKIP if copy is None else copy


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


def cancel_full(cancel_flags: PerSession[threading.Event], running: PerSession[threading.Event], session: str) -> str:
    """The Cancel button: stop the session's full-resolution fusion after its tile, and say so.

    The cancelled event's own reply never reaches the page, so the click's reply is what the user reads.
    """
    if not running.get(session).is_set():
        return "Nothing to cancel: no full-resolution fusion is running."
    cancel_flags.get(session).set()
    return "Full-resolution fusion cancelled."


def wire_events(engine: Engine, i: Inputs, o: Outputs) -> None:
    """Connect the input and output columns (call inside the Blocks)."""
    n_sources = gr.State(2)
    request = gr.State(0)
    open_tab = gr.State(TABS[0])
    shown = gr.State(None)
    figures = [o.figures[key] for key in TABS]
    knobs = [i.alpha, i.beta]
    view_outputs = [o.fused, o.comparison, o.status, o.metrics, o.baselines, *figures, shown, *knobs]
    settings = [i.task, i.alpha, i.beta, i.blend, i.resize, *i.slots, *i.routers]

    def options(blend: bool, resize: bool, rest: Sequence[Any]) -> dict[str, Any]:
        return dict(blend=blend, router_weights=rest[MAX_SOURCES:], resize=resize)

    def shown_files(view: cb.FuseView) -> tuple[Any, ...]:
        """The view with the fused image as a PNG named for what it is (download name), figures as they are."""
        if isinstance(view.fused, np.ndarray) and isinstance(view.shown, Shown):
            name = result_name("fused", view.shown.task, view.shown.alpha, view.shown.beta)
            view = view._replace(fused=named_png(view.fused, name))
        return tuple(view)

    # The knobs of each session's latest final fusion, as it starts: a preview of the same knobs that
    # arrives later (Gradio sends the one it held back, always_last, after the release's cancel) would
    # replace the final with "the full fusion follows", and none would.
    finals: PerSession[list[tuple[Any, ...]]] = PerSession(list)

    def knob_key(task: str, a: Any, b: Any, blend: bool, resize: bool, controls: Sequence[Any]) -> tuple[Any, ...]:
        return (task, a, b, blend, resize, *controls[MAX_SOURCES:])

    # -- the final fusion (working resolution): image first, then metrics, baselines and the open map tab
    def run(req: gr.Request, task: str, a: Any, b: Any, blend: bool, resize: bool, *rest: Any) -> Any:
        *controls, base, pick, tab, last = rest
        finals.get(req.session_hash or "")[:] = [knob_key(task, a, b, blend, resize, controls)]
        # The status never shows the previous result's, and no map tab the previous map, while this one runs.
        yield tuple(cb.FuseView(SKIP, SKIP, fusing_status(task), SKIP, SKIP, None, None, None, None, SKIP))
        for view in cb.fuse_steps(engine, controls[:MAX_SOURCES], task, a, b, baselines=base, compare=pick,
                                  open_tab=tab, shown=last, **options(blend, resize, controls)):
            announce_refusal(view)
            yield shown_files(view)

    final_actions = [*(s.upload for s in i.slots), *(s.clear for s in i.slots), i.alpha.release, i.beta.release,
                     i.blend.input, i.resize.input, i.show_baselines.input, *(r.release for r in i.routers),
                     i.fuse.click, request.change]
    # -- while a slider moves: a reduced preview; only the latest value waits (always_last), and a
    # release cancels the preview still queued or running, so a late preview never hides the final
    def preview(req: gr.Request, task: str, a: Any, b: Any, blend: bool, resize: bool, *rest: Any) -> Any:
        *controls, last = rest
        final, key = finals.get(req.session_hash or ""), knob_key(task, a, b, blend, resize, controls)
        if key in final:  # already fused in full: nothing to preview
            return (SKIP,) * len(view_outputs)
        view = cb.preview_view(engine, controls[:MAX_SOURCES], task, a, b, shown=last, **options(blend, resize, controls))
        if key in final:  # the final started meanwhile
            return (SKIP,) * len(view_outputs)
        announce_refusal(view)
        return shown_files(view)

    previews = gr.on([i.alpha.input, i.beta.input], preview, [*settings, shown], view_outputs,
                     trigger_mode="always_last", show_progress="hidden", api_visibility="private",
                     **FUSION_EVENT)
    gr.on(final_actions, run, [*settings, i.show_baselines, o.compare_with, open_tab, shown], view_outputs,
          trigger_mode="always_last", show_progress="hidden", api_name="live_fuse", api_visibility="private",
          cancels=[previews], **FUSION_EVENT)

    # -- the full resolution, on request, in its own lane, with progress and a cancel button
    cancel_flags, running = PerSession(threading.Event), PerSession(threading.Event)

    def full(req: gr.Request, progress: gr.Progress = gr.Progress(), *values: Any) -> tuple[Any, str]:
        task, a, b, blend, resize, *rest = values
        flag, busy = cancel_flags.get(req.session_hash or ""), running.get(req.session_hash or "")
        flag.clear()
        busy.set()

        def step(fraction: float) -> None:
            if flag.is_set():
                raise Cancelled
            progress(fraction, desc="Fusing at full resolution")

        try:
            return full_view(engine, rest[:MAX_SOURCES], task, a, b, progress=step, **options(blend, resize, rest))
        finally:
            busy.clear()

    full_event = i.full.click(full, settings, [o.full_file, o.full_status], api_visibility="private",
                              concurrency_id="full", concurrency_limit=FULL_CONCURRENCY)

    def cancel(req: gr.Request) -> str:
        return cancel_full(cancel_flags, running, req.session_hash or "")

    i.cancel.click(cancel, None, o.full_status, queue=False, cancels=[full_event], api_visibility="private")

    # -- actions that set several inputs, then ask for one fusion
    def on_task(task: str, req: int) -> list[Any]:
        a, b, weights = cb.task_defaults(engine, task)
        labels = [gr.update(label=text) for text in cb.slot_labels(task)]
        return [*labels, a, b, *weights, cb.task_info(engine, task), fusing_status(task), req + 1]

    # .select: the user picked a task (.input fires twice for one pick)
    i.task.select(on_task, [i.task, request], [*i.slots, i.alpha, i.beta, *i.routers, i.info, o.status, request],
                  **QUICK)
    def on_example(index: int, req: int) -> list[Any]:
        example = i.example_sets[index]
        a, b, weights = cb.task_defaults(engine, example.task)
        return [example.task, *slot_updates(len(example.files), example.task, example.row()[1:]), a, b, False,
                *weights, cb.task_info(engine, example.task), fusing_status(example.task), req + 1]

    # First the previous result goes (status, image, metrics, maps), then the example's sources
    # arrive with its task and settings in one update, and the request runs one fusion: no moment
    # shows the new sources beside the old status.
    i.examples.click(lambda: ["⏳ Loading the example…", None, None, None, *[None] * len(TABS), None], None,
                     [o.status, o.fused, o.comparison, o.metrics, *figures, shown], queue=False,
                     api_visibility="private").then(
        on_example, [i.examples, request],
        [i.task, n_sources, *i.slots, o.compare_with, i.alpha, i.beta, i.blend, *i.routers, i.info, o.status,
         request], **QUICK)

    def on_reset(task: str, req: int) -> list[Any]:
        a, b, weights = cb.task_defaults(engine, task)
        return [a, b, False, *weights, req + 1]

    i.reset.click(on_reset, [i.task, request], [i.alpha, i.beta, i.blend, *i.routers, request], **QUICK)

    def on_swap(first: Any, second: Any, req: int) -> list[Any]:
        return [*cb.swap_sources(first, second), req + 1]

    i.swap.click(on_swap, [*i.slots[:2], request], [*i.slots[:2], request], **QUICK)
    slot_outputs = [n_sources, *i.slots, o.compare_with]

    def on_add(n: int) -> list[Any]:
        note = cb.add_source_note(n)
        if note:
            gr.Info(note)
        return slot_updates(n + 1)

    i.add.click(on_add, n_sources, slot_outputs, **QUICK)

    def on_remove(n: int, req: int, *slots: Any) -> list[Any]:
        emptied = n > 2 and slots[n - 1] is not None  # the fusion changes only if the slot held a source
        return [*slot_updates(n - 1), req + 1 if emptied else req]

    i.remove.click(on_remove, [n_sources, request, *i.slots], [*slot_outputs, request], **QUICK)
    i.show_baselines.change(lambda on: gr.update(visible=on), i.show_baselines, o.baselines, **QUICK)
    o.compare_with.change(cb.compare_pair, [shown, o.compare_with], o.comparison, **QUICK)

    # -- map tabs: a tab's figure is drawn when it opens, and after each fusion only for the open tab
    for key in TABS:
        o.tabs[key].select(partial(open_map_tab, key), shown, [open_tab, o.figures[key]], api_visibility="private",
                           concurrency_id="figures", concurrency_limit=FUSION_CONCURRENCY)

    # -- an upload the browser cannot show (TIFF) is replaced in its slot by a PNG of the same pixels;
    # its fusion already runs on the upload itself
    for slot in i.slots:
        slot.upload(shown_upload, slot, slot, **QUICK)

    # -- what was computed for other sources or another task goes when they change
    source_changes = [*(s.upload for s in i.slots), *(s.clear for s in i.slots), i.task.select, i.examples.click,
                      i.swap.click, i.remove.click]
    gr.on(source_changes, outdated, o.sweep_state,
          [o.sweep_strip, o.sweep_curve, o.sweep_status, o.sweep_state, o.full_file, o.full_status],
          queue=False, api_visibility="private")

    wire_sweep(engine, i, o)
    wire_api(engine)


def wire_sweep(engine: Engine, i: Inputs, o: Outputs) -> None:
    """The sweep strip: one click fuses at five values of the knob; picking a metric re-plots."""
    sweep = o.sweep_state

    def run(task: str, a: float, b: float, knob: str, metric: str, blend: bool, resize: bool, *rest: Any) -> Any:
        return cb.sweep_view(engine, rest[:MAX_SOURCES], task, a, b, knob, metric, blend=blend,
                             router_weights=rest[MAX_SOURCES:], resize=resize)

    o.sweep.click(run, [i.task, i.alpha, i.beta, o.sweep_knob, o.sweep_metric, i.blend, i.resize, *i.slots,
                        *i.routers], [o.sweep_strip, o.sweep_curve, o.sweep_status, sweep],
                  api_name="sweep", api_visibility="private", **FUSION_EVENT)
    o.sweep_metric.input(cb.sweep_plot, [sweep, o.sweep_metric], [o.sweep_strip, o.sweep_curve, o.sweep_status],
                         **QUICK)


def wire_api(engine: Engine) -> None:
    """The documented endpoints on hidden components (see demo.api): `/fuse` at the working resolution,
    `/fuse_full` at the sources' own, each in its own lane."""
    with gr.Column(visible=False):
        sources = gr.File(file_count="multiple", label="sources")
        task = gr.Textbox("vif", label="task")
        alpha, beta = ApiValue(1.0, label="alpha"), ApiValue(0.0, label="beta")
        router = gr.Textbox("", label="router")
        resize = ApiFlag(False, label="resize")
        fused = gr.Image(format="png", label="fused")
        report = gr.JSON(label="report")
        trigger, trigger_full = gr.Button(), gr.Button()
    inputs = [sources, task, alpha, beta, router, resize]
    trigger.click(partial(api_fuse, engine), inputs, [fused, report], api_name="fuse", **FUSION_EVENT)
    trigger_full.click(partial(api_fuse, engine, full_resolution=True), inputs, [fused, report],
                       api_name="fuse_full", concurrency_id="full", concurrency_limit=FULL_CONCURRENCY)
