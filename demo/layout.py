"""The demo's page layout: which component goes where, as a components.Page (style in CSS).

The events are wired in demo.events, the callbacks are in demo.callbacks; demo.page puts them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from tcmoa import PRESETS
from tcmoa.align import ALIGN_MODES
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE, KnobRange

from . import callbacks as cb
from .analysis import KNOBS, SWEEP_COUNT, SWEEP_METRICS, TABS
from .components import Inputs, KnobSlider, Outputs, Page, Session, SourceImage
from .engine import MAX_SOURCES, UNTRAINED_WARNING, WORKING_PIXELS, Engine
from .example_sets import find_examples
from .opening import Opening
from .sources import ROUTER_WEIGHT

HEADER = """# TC-MoA: general image fusion
One model fuses images of a scene (infrared + visible, exposure brackets, focal stacks, medical scans):
Task-Customized Mixture of Adapters ([CVPR 2024](https://arxiv.org/abs/2403.12494)). Click an example or upload
your sources (not registered? choose **Align sources** below), then drag **α** and **β**: the image re-fuses as you
move them; the metrics, maps and the sweep below show what the knobs do."""
ALPHA_INFO = "p_A' = 0.5 + α(p_A − 0.5) + β: α scales how decisively each region picks a source (0 = even mix)"
BETA_INFO = "β shifts dominance: > 0 towards source A, < 0 towards source B"
CSS = (Path(__file__).resolve().parent / "style.css").read_text(encoding="utf-8")
MAP_TABS = (("prompts", "Prompt maps"), ("routing", "Routing"), ("weight", "Source weight"),
            ("difference", "Difference"), ("alignment", "Alignment"))
# "Align sources": each mode of tcmoa.align.ALIGN_MODES in words.
ALIGN_LABELS = {"off": "off: fuse as given", "auto": "auto: detect and align", "translation": "translation (shift)",
                "similarity": "similarity (shift, turn, zoom)", "affine": "affine (+ shear)",
                "homography": "homography (perspective)"}
ALIGN_INFO = "into one frame first (other cameras, a hand-held bracket); auto leaves registered sources as given"
# The Source-weight tab's note, by the model's output head (Engine.fusion_output; tcmoa.model.fusion_head).
WEIGHT_NOTES = {
    "pyramid": "The weight of source A in the base band of the model's Laplacian pyramid (red: A, blue: B): which "
               "source the large-scale tones come from. The model mixes every band with its own weight; those of the "
               "detail bands (not shown) also weigh each source's local contrast.",
    "source_weights": "The weight of source A at every pixel (red: A, blue: B): fused = w·A + (1 − w)·B + a small "
                      "residual.",
    "decoder": "This model decodes the image from its tokens and has no weight of a source: this tab stays empty.",
}


# Gradio's slider sends `release` on pointer-up only; a key that moves it (arrows, Page Up/Down, Home/End,
# Enter in the number box) sends the same pointer-up here, so keyboard users get the final fusion too.
KEY_RELEASE = """<script>
document.addEventListener('keyup', (e) => {
  const keys = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'PageUp', 'PageDown', 'Home', 'End', 'Enter'];
  if (keys.includes(e.key) && e.target.closest && e.target.closest('.tcmoa-knob') && e.target.matches('input')) {
    e.target.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
  }
});
</script>"""


def knob_slider(knob: KnobRange, value: float, label: str, info: str, elem_id: str) -> gr.Slider:
    """A slider over the library's allowed range of one prompt knob."""
    return KnobSlider(knob.low, knob.high, value=value, step=knob.step, label=label, info=info, elem_id=elem_id,
                      elem_classes=["tcmoa-knob"])


def source_panel(engine: Engine, opening: Opening) -> dict[str, Any]:
    """The task, the examples (one compact strip) and the source slots, filled with the opening example."""
    task = gr.Dropdown([(p.label, k) for k, p in PRESETS.items()], value=opening.task, label="Task", elem_id="task")
    info = gr.Markdown(cb.task_info(engine, opening.task), elem_id="task-info")
    labels, files = cb.slot_labels(opening.task), opening.files
    n = cb.clamp_sources(len(files))
    slots = [SourceImage(type="filepath", image_mode=None, label=labels[k], value=files[k] if k < len(files) else None,
                         visible=k < n, sources=["upload", "clipboard"], min_width=120, elem_id=f"source-{k + 1}",
                         elem_classes=["tcmoa-slot"], render=False) for k in range(MAX_SOURCES)]
    sets = find_examples()
    examples = gr.Dataset(components=[task, *slots], samples=[s.row() for s in sets], type="index",
                          sample_labels=[s.label for s in sets], samples_per_page=len(sets) or 1,
                          label="Examples: one click loads and fuses", elem_id="examples")
    for row in range(-(-MAX_SOURCES // 2)):
        with gr.Row(elem_classes=["tcmoa-slot-row"]):
            for slot in slots[2 * row:2 * row + 2]:
                slot.render()
    with gr.Row(elem_id="slot-buttons"):
        add = gr.Button("+ Add source", size="sm", min_width=80)
        remove = gr.Button("− Remove", size="sm", min_width=80)
        swap = gr.Button("⇄ Swap 1 ↔ 2", size="sm", min_width=80)
    return dict(task=task, info=info, slots=slots, add=add, remove=remove, swap=swap, examples=examples,
                example_sets=sets)


def knob_panel(engine: Engine, task: str) -> dict[str, Any]:
    """α and β (the task's defaults), Fuse and Reset."""
    alpha0, beta0, _ = cb.task_defaults(engine, task)
    alpha = knob_slider(ALPHA_RANGE, alpha0, "α (alpha)", ALPHA_INFO, "alpha")
    beta = knob_slider(BETA_RANGE, beta0, "β (beta)", BETA_INFO, "beta")
    with gr.Row():
        fuse = gr.Button("Fuse", variant="primary", size="sm", elem_id="fuse")
        reset = gr.Button("Reset α, β and routers", size="sm", elem_id="reset")
    return dict(alpha=alpha, beta=beta, fuse=fuse, reset=reset)


def result_panel(opening: Opening) -> dict[str, Any]:
    """The fused image, the status under it, and the full resolution with its progress and file."""
    view = opening.view
    fused = gr.Image(view.fused, label=f"Fused image (up to {WORKING_PIXELS / 2**20:.0f} MP; PNG download)",
                     type="filepath", interactive=False, buttons=["download", "fullscreen"], elem_id="fused")
    status = gr.Markdown(view.status, elem_id="status")
    with gr.Row(elem_id="full-row"):
        full = gr.Button("Full resolution (PNG)", size="sm", elem_id="full")
        cancel = gr.Button("Cancel", size="sm", elem_id="cancel", min_width=80)
    full_status = gr.Markdown("", elem_id="full-status")
    full_file = gr.File(label="Full-resolution result", interactive=False, visible=False, elem_id="full-file")
    return dict(fused=fused, status=status, full=full, cancel=cancel, full_status=full_status, full_file=full_file)


def alignment_options(opening: Opening) -> dict[str, Any]:
    """Align sources, the reference frame, crop, and (exposure stacks) remove moving content."""
    task, n = opening.task, cb.clamp_sources(len(opening.files))
    with gr.Group(elem_id="alignment-options"):
        with gr.Row():
            align = gr.Dropdown([(ALIGN_LABELS[mode], mode) for mode in ALIGN_MODES], value=opening.align,
                                label="Align sources", info=ALIGN_INFO, elem_id="align")
            reference = gr.Dropdown(cb.reference_choices(task, n), value=0, label="Keep the frame of",
                                    info="the output keeps this source's frame and size", elem_id="reference")
        with gr.Row():
            crop = gr.Checkbox(False, label="Crop to the common area", elem_id="crop")
            deghost = gr.Checkbox(True, label="Remove moving content (exposure stacks)", visible=task == "mef",
                                  elem_id="deghost")
    return dict(align=align, reference=reference, crop=crop, deghost=deghost)


def option_panel(engine: Engine, opening: Opening) -> dict[str, Any]:
    """Alignment, resize, the classical baselines, and the router blend (its weights start at the task's own
    router)."""
    _, _, weights = cb.task_defaults(engine, opening.task)
    aligning = alignment_options(opening)
    with gr.Row():
        resize = gr.Checkbox(False, label="Resize sources to source 1's size")
        show_baselines = gr.Checkbox(False, label="Show classical baselines", elem_id="show-baselines")
    with gr.Accordion("Advanced: blend the task routers", open=False):
        blend = gr.Checkbox(False, label="Blend routers (instead of the task's own router)")
        routers = [knob_slider(ROUTER_WEIGHT, w, f"{name} router", "", f"router-{name}")
                   for name, w in zip(engine.router_names, weights, strict=True)]
    return dict(resize=resize, show_baselines=show_baselines, blend=blend, routers=routers, **aligning)


def analysis_panel(head: str, opening: Opening) -> dict[str, Any]:
    """Before/after and the metrics, the baselines, and the map tabs (the weight tab's note for the model's
    output `head`, Engine.fusion_output); the open tab shows the opening's figure."""
    view, n = opening.view, cb.clamp_sources(len(opening.files))
    comparison = gr.ImageSlider(view.comparison, label="Before / after (drag the handle)", interactive=False,
                                max_height=320, elem_id="comparison")
    compare_with = gr.Radio([(f"Source {k}", k) for k in range(1, n + 1)], value=1,
                            label="Compare the fused image with", elem_id="compare-with")
    metrics = gr.Markdown(view.metrics or "", label="Metrics", elem_id="metrics")
    baselines = gr.Gallery(label="TC-MoA and the classical baselines", columns=4, rows=1, height=230,
                           object_fit="contain", visible=False, elem_id="baselines")
    tabs, figures = {}, {}
    with gr.Tabs():
        for key, title in MAP_TABS:
            with gr.Tab(title, id=key, elem_id=f"{key}-tab") as tabs[key]:
                if key == "weight":
                    gr.Markdown(WEIGHT_NOTES[head], elem_id="weight-note")
                if key == "alignment":
                    report = gr.Markdown(view.alignment_report or "", elem_id="alignment-report")
                figures[key] = gr.Image(getattr(view, key), label=title, show_label=False, interactive=False,
                                        format="png", buttons=["download", "fullscreen"], elem_id=f"{key}-map")
    return dict(comparison=comparison, compare_with=compare_with, metrics=metrics, baselines=baselines, tabs=tabs,
                figures=figures, alignment_report=report)


def sweep_panel() -> dict[str, Any]:
    """The sweep: knob, metric and button; the strip and its curve appear once there is a sweep."""
    with gr.Accordion("Sweep: what α and β do", open=True, elem_id="sweep-section"):
        gr.Markdown(f"One click fuses at {SWEEP_COUNT} values of the chosen knob across its whole range (the other "
                    f"settings as set above; sources reduced to about 512×512 px) and plots a metric against it.")
        with gr.Row(equal_height=True):
            sweep_knob = gr.Radio([(k.symbol, name) for name, k in KNOBS.items()], value="beta", label="Knob",
                                  elem_id="sweep-knob")
            sweep_metric = gr.Dropdown(list(SWEEP_METRICS), value="SSIM", label="Metric", elem_id="sweep-metric")
            sweep = gr.Button("Sweep", variant="secondary", elem_id="sweep")
        sweep_status = gr.Markdown("", elem_id="sweep-status")
        sweep_strip = gr.Gallery(label="Fused at each value (caption: the knob, then the metric)", visible=False,
                                 columns=SWEEP_COUNT, rows=1, height=180, object_fit="contain", elem_id="sweep-strip")
        sweep_curve = gr.Image(label="Metric against the knob", interactive=False, height=260, show_label=False,
                               visible=False, buttons=["download"], elem_id="sweep-curve")
    return dict(sweep_knob=sweep_knob, sweep_metric=sweep_metric, sweep=sweep, sweep_status=sweep_status,
                sweep_strip=sweep_strip, sweep_curve=sweep_curve)


def page_layout(engine: Engine, opening: Opening) -> Page:
    """The page (call inside the Blocks), as `opening` shows it.

    A grid (style.css): on a wide screen the sources, the knobs and the analysis on the left, the result
    on the right, sticky; on a phone the sources, then the result (sticky while the knobs below it are
    in view), the knobs, and the analysis.
    """
    gr.Markdown(HEADER, elem_id="header")
    if not engine.trained:
        gr.Markdown(f"⚠️ **{UNTRAINED_WARNING[0].upper() + UNTRAINED_WARNING[1:]}.** {engine.load_note}",
                    elem_classes=["tcmoa-warning"], elem_id="untrained-banner")
    with gr.Row(elem_id="workspace", equal_height=False):
        with gr.Column(elem_id="sources-panel"):
            sources = source_panel(engine, opening)
        with gr.Column(elem_id="stage"):
            with gr.Column(elem_id="result"):
                result = result_panel(opening)
            with gr.Column(elem_id="knobs"):
                knobs = knob_panel(engine, opening.task)
        with gr.Column(elem_id="analysis"):
            options = option_panel(engine, opening)
            analysis = analysis_panel(engine.fusion_output, opening)
            sweep = sweep_panel()
    inputs = Inputs(**sources, **knobs, **options, full=result.pop("full"), cancel=result.pop("cancel"))
    outputs = Outputs(**result, **analysis, **sweep)
    session = Session(n_sources=gr.State(cb.clamp_sources(len(opening.files))), request=gr.State(0),
                      open_tab=gr.State(TABS[0]), shown=gr.State(opening.view.shown),
                      from_example=gr.State(opening.example is not None), sweep=gr.State(None))
    return Page(inputs, outputs, session)
