"""The events that set inputs or redraw a view without fusing: examples, task, reset, swap, add and remove a
source, uploads, map tabs, the before/after choice and the sweep strip.

An action that sets several inputs bumps `session.request` in the same update; its change runs the
one fusion with the new values (demo.events). Callbacks read and answer by component, as in
demo.fusion_events.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Sequence

import gradio as gr
from gradio.components import Component

from . import callbacks as cb
from .analysis import TABS, render_tab
from .callbacks import SKIP
from .components import Inputs, Page
from .downloads import browser_copy
from .engine import FUSION_CONCURRENCY, MAX_SOURCES, Engine
from .fusion_events import FUSION_EVENT, QUICK, control_inputs, fusing_status, read_controls


# In the browser, on an example's click: the fused image scrolled into view if it is not (on a phone it sits
# below the sources and the knobs; on a wide screen it is in view already, sticky).
SHOW_RESULT = "() => { document.getElementById('fused')?.scrollIntoView({block: 'nearest'}); }"


class SlotChanges(NamedTuple):
    """How many source slots are open, an update per slot, and the before/after choices."""

    n: int
    slots: list[Any]  # gr.update per slot, in slot order
    compare_with: Any


def slot_changes(n: int, task: str | None = None, files: Sequence[object] | None = None) -> SlotChanges:
    """Slots past n hidden and emptied, labels for `task`, values from `files` (an example's) when given."""
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
    return SlotChanges(n, slots, gr.update(choices=[(f"Source {i}", i) for i in range(1, n + 1)], value=1))


def reference_update(task: str, n: int, current: object = 0) -> Any:
    """"Keep the frame of" for `task` and `n` open slots: the choice kept while its source is open, else the task's."""
    keep = current if isinstance(current, int) and 0 <= current <= cb.clamp_sources(n) else 0
    return gr.update(choices=cb.reference_choices(task, n), value=keep)


def alignment_defaults(i: Inputs, task: str, align: str) -> dict[Component, Any]:
    """The alignment controls as a task or an example opens: `align`, the task's reference, no crop, moving content
    removed (its box shown for exposure stacks only)."""
    return {i.align: align, i.crop: False, i.deghost: gr.update(value=True, visible=task == "mef")}


def slot_updates(page: Page, changes: SlotChanges) -> dict[Component, Any]:
    """SlotChanges on the page's components."""
    return {page.session.n_sources: changes.n, **dict(zip(page.inputs.slots, changes.slots, strict=True)),
            page.outputs.compare_with: changes.compare_with}


def knob_defaults(engine: Engine, i: Inputs, task: str) -> dict[Component, Any]:
    """The task's α, β and router weights on their sliders."""
    alpha, beta, weights = cb.task_defaults(engine, task)
    return {i.alpha: alpha, i.beta: beta, **dict(zip(i.routers, weights, strict=True))}


def outdated(sweep: object) -> str:
    """Sources or task changed: the sweep's note (only if there was a sweep); the sweep and full result go."""
    return "Sources or task changed: press **Sweep** to sweep them." if sweep is not None else ""


def shown_upload(source: Any) -> Any:
    """The slot's new value: a PNG copy of an upload the browser cannot show, else the upload as it is."""
    copy = browser_copy(source)
    return SKIP if copy is None else copy


def on_upload(page: Page, index: int, values: dict[Component, Any]) -> dict[Component, Any]:
    """An upload into slot `index`: shown as the browser can show it; into an example's slots it starts a new
    set (an example's sources belong together: the others go); then the one fusion."""
    i, s = page.inputs, page.session
    slot = i.slots[index]
    changes: dict[Component, Any] = {s.from_example: False, s.request: values[s.request] + 1}
    if values[s.from_example]:
        changes.update({other: None for other in i.slots if other is not slot})
    shown = shown_upload(values[slot])
    if shown is not SKIP:  # a PNG of the same pixels: the fusion reads it as it would the upload
        changes[slot] = shown
    return changes


def wire_task(engine: Engine, page: Page) -> None:
    """The user picked a task (.select: .input fires twice for one pick): its labels and defaults, one fusion."""
    i, s = page.inputs, page.session

    def on_task(values: dict[Component, Any]) -> dict[Component, Any]:
        task = values[i.task]
        labels: dict[Component, Any] = {slot: gr.update(label=text)
                                        for slot, text in zip(i.slots, cb.slot_labels(task), strict=True)}
        return {**labels, **knob_defaults(engine, i, task), i.info: cb.task_info(engine, task),
                i.reference: reference_update(task, values[s.n_sources]),
                i.deghost: gr.update(visible=task == "mef"), page.outputs.status: fusing_status(task),
                s.request: values[s.request] + 1}

    i.task.select(on_task, {i.task, s.n_sources, s.request},
                  [*i.slots, i.alpha, i.beta, *i.routers, i.info, i.reference, i.deghost, page.outputs.status,
                   s.request], **QUICK)


def wire_examples(engine: Engine, page: Page) -> None:
    """One click on an example loads its sources, task and settings in one update, then fuses them once.

    First the previous result goes (status, image, metrics, maps), then the example arrives, so no
    moment shows the new sources beside the old status.
    """
    i, o, s = page.inputs, page.outputs, page.session

    def clear_result() -> dict[Component, Any]:
        return {o.status: "⏳ Loading the example…", o.fused: None, o.comparison: None, o.metrics: None,
                **{figure: None for figure in o.figures.values()}, o.alignment_report: None, s.shown: None}

    def on_example(values: dict[Component, Any]) -> dict[Component, Any]:
        example = i.example_sets[values[i.examples]]
        slots = slot_changes(len(example.files), example.task, example.row()[1:])
        return {i.task: example.task, **slot_updates(page, slots), **knob_defaults(engine, i, example.task),
                **alignment_defaults(i, example.task, example.align),
                i.reference: reference_update(example.task, slots.n), i.blend: False,
                i.info: cb.task_info(engine, example.task), o.status: fusing_status(example.task),
                s.from_example: True, s.request: values[s.request] + 1}

    i.examples.click(None, js=SHOW_RESULT)
    i.examples.click(clear_result, None, [o.status, o.fused, o.comparison, o.metrics, *o.figures.values(),
                                          o.alignment_report, s.shown],
                     queue=False, api_visibility="private").then(
        on_example, {i.examples, s.request},
        [i.task, s.n_sources, *i.slots, o.compare_with, i.alpha, i.beta, i.blend, *i.routers, i.align, i.reference,
         i.crop, i.deghost, i.info, o.status, s.from_example, s.request], **QUICK)


def wire_controls(engine: Engine, page: Page) -> None:
    """Reset, swap, add and remove a source, the baselines' visibility and the before/after choice."""
    i, o, s = page.inputs, page.outputs, page.session

    def on_reset(values: dict[Component, Any]) -> dict[Component, Any]:
        return {**knob_defaults(engine, i, values[i.task]), i.blend: False, s.request: values[s.request] + 1}

    def on_swap(values: dict[Component, Any]) -> dict[Component, Any]:
        first, second = cb.swap_sources(values[i.slots[0]], values[i.slots[1]])
        return {i.slots[0]: first, i.slots[1]: second, s.request: values[s.request] + 1}

    def slots_open(values: dict[Component, Any], n: int) -> dict[Component, Any]:
        changes = slot_changes(n)
        return {**slot_updates(page, changes),
                i.reference: reference_update(values[i.task], changes.n, values[i.reference])}

    def on_add(values: dict[Component, Any]) -> dict[Component, Any]:
        note = cb.add_source_note(values[s.n_sources])
        if note:
            gr.Info(note)
        return slots_open(values, values[s.n_sources] + 1)

    def on_remove(values: dict[Component, Any]) -> dict[Component, Any]:
        n = values[s.n_sources]
        emptied = n > 2 and values[i.slots[n - 1]] is not None  # the fusion changes only if the slot held a source
        return {**slots_open(values, n - 1), s.request: values[s.request] + (1 if emptied else 0)}

    slot_outputs = [s.n_sources, *i.slots, o.compare_with, i.reference]
    i.reset.click(on_reset, {i.task, s.request}, [i.alpha, i.beta, i.blend, *i.routers, s.request], **QUICK)
    i.swap.click(on_swap, {*i.slots[:2], s.request}, [*i.slots[:2], s.request], **QUICK)
    i.add.click(on_add, {s.n_sources, i.task, i.reference}, slot_outputs, **QUICK)
    i.remove.click(on_remove, {s.n_sources, s.request, i.task, i.reference, *i.slots}, [*slot_outputs, s.request],
                   **QUICK)
    i.show_baselines.change(lambda on: gr.update(visible=on), i.show_baselines, o.baselines, **QUICK)
    o.compare_with.change(lambda values: cb.compare_pair(values[s.shown], values[o.compare_with]),
                          {s.shown, o.compare_with}, o.comparison, **QUICK)


def wire_sources(page: Page) -> None:
    """Uploads (on_upload), and what was computed for other sources or another task removed."""
    i, o, s = page.inputs, page.outputs, page.session
    for k, slot in enumerate(i.slots):
        slot.upload(partial(on_upload, page, k), {slot, s.from_example, s.request}, [*i.slots, s.from_example,
                                                                                   s.request],
                    api_name=f"upload_{k + 1}", **QUICK)

    def on_change(values: dict[Component, Any]) -> dict[Component, Any]:
        gone = gr.update(value=None, visible=False)
        return {o.sweep_strip: gone, o.sweep_curve: gone, o.sweep_status: outdated(values[s.sweep]), s.sweep: None,
                o.full_file: gone, o.full_status: ""}

    changes = [*(slot.upload for slot in i.slots), *(slot.clear for slot in i.slots), i.task.select,
               i.examples.click, i.swap.click, i.remove.click]
    gr.on(changes, on_change, {s.sweep}, [o.sweep_strip, o.sweep_curve, o.sweep_status, s.sweep, o.full_file,
                                          o.full_status], queue=False, api_visibility="private")


def open_map_tab(page: Page, key: str, shown: Any) -> dict[Component, Any]:
    """A map tab was opened: remember it, and draw its figure for the last fusion."""
    return {page.session.open_tab: key, page.outputs.figures[key]: render_tab(key, shown)}


def wire_tabs(page: Page) -> None:
    """A map tab's figure is drawn when it opens; after each fusion only the open tab's is (demo.fusion_events)."""
    o, s = page.outputs, page.session
    for key in TABS:
        o.tabs[key].select(partial(open_map_tab, page, key), s.shown, [s.open_tab, o.figures[key]],
                           api_name=f"open_{key}", api_visibility="private", concurrency_id="figures",
                           concurrency_limit=FUSION_CONCURRENCY)


def wire_sweep(engine: Engine, page: Page) -> None:
    """The sweep strip: one click fuses at five values of the knob; picking a metric re-plots."""
    i, o, s = page.inputs, page.outputs, page.session

    def shown(strip: Any, curve: Any, status: str) -> dict[Component, Any]:  # no sweep: no empty boxes
        return {o.sweep_strip: gr.update(value=strip, visible=strip is not None),
                o.sweep_curve: gr.update(value=curve, visible=curve is not None), o.sweep_status: status}

    def sweep(values: dict[Component, Any]) -> dict[Component, Any]:
        c = read_controls(i, values)
        strip, curve, status, result = cb.sweep_view(engine, c.slots, c.task, c.alpha, c.beta, values[o.sweep_knob],
                                                     values[o.sweep_metric], **c.options())
        return {**shown(strip, curve, status), s.sweep: result}

    def replot(values: dict[Component, Any]) -> dict[Component, Any]:
        return shown(*cb.sweep_plot(values[s.sweep], values[o.sweep_metric]))

    o.sweep.click(sweep, control_inputs(i) | {o.sweep_knob, o.sweep_metric},
                  [o.sweep_strip, o.sweep_curve, o.sweep_status, s.sweep], api_name="sweep", api_visibility="private",
                  **FUSION_EVENT)
    o.sweep_metric.input(replot, {s.sweep, o.sweep_metric}, [o.sweep_strip, o.sweep_curve, o.sweep_status], **QUICK)
