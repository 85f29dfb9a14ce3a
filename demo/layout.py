"""The demo's page layout: which component goes where, as a components.Page (style in CSS).

The events are wired in demo.events, the callbacks are in demo.callbacks; demo.page puts them together.
"""
from __future__ import annotations

import gradio as gr

from tcmoa import PRESETS
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE, KnobRange

from . import callbacks as cb
from .analysis import KNOBS, SWEEP_COUNT, SWEEP_METRICS, TABS
from .components import Inputs, KnobSlider, Outputs, Page, Session, SourceImage
from .engine import MAX_SOURCES, UNTRAINED_WARNING, WORKING_PIXELS, Engine
from .example_sets import find_examples
from .sources import ROUTER_WEIGHT

HEADER = """# TC-MoA: general image fusion
Task-Customized Mixture of Adapters ([CVPR 2024](https://arxiv.org/abs/2403.12494)) fuses registered images of one
scene (infrared + visible, exposure brackets, focal stacks, medical scans) with one model. Pick a task, upload the
sources or click an example, then drag **α** and **β**: the image re-fuses as you move them, and the metrics,
maps and the sweep strip show what the knobs do."""
ALPHA_INFO = "p_A' = 0.5 + α(p_A − 0.5) + β: α scales how decisively each region picks a source (0 = even mix)"
BETA_INFO = "β shifts dominance: > 0 towards source A, < 0 towards source B"
CSS = """
.tcmoa-warning {background: #fff4e5; border: 2px solid #f0a030; border-radius: 8px; padding: 6px 12px;}
.tcmoa-warning p {margin: 0; color: #7a4100;}
#status p {margin: 2px 0;}
#metrics table {font-size: 0.9em;}
.tcmoa-slot-row:not(:has(*)) {display: none !important;}  /* a row of closed slots: no gap left behind */
"""
MAP_TABS = (("prompts", "Prompt maps"), ("routing", "Routing"), ("weight", "Source weight"),
            ("difference", "Difference"))
# The Source-weight tab's note, by the model's output head (Engine.fusion_output; tcmoa.model.fusion_head).
WEIGHT_NOTES = {
    "pyramid": "The weight of source A in the base band of the model's Laplacian pyramid (red: A, blue: B): which "
               "source the large-scale tones come from, where the prompts and β act most. The model mixes every band "
               "with its own weight; the detail bands' follow which source has more local contrast.",
    "source_weights": "The weight of source A at every pixel (red: A, blue: B): fused = w·A + (1 − w)·B + a small "
                      "residual.",
    "decoder": "This model decodes the image from its tokens and has no weight of a source: this tab stays empty.",
}


def knob_slider(knob: KnobRange, value: float, label: str, info: str, elem_id: str) -> gr.Slider:
    """A slider over the library's allowed range of one prompt knob."""
    return KnobSlider(knob.low, knob.high, value=value, step=knob.step, label=label, info=info, elem_id=elem_id,
                      elem_classes=["tcmoa-knob"])


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


def input_column(engine: Engine) -> Inputs:
    """Task, source slots, α/β, options, router blend and examples."""
    labels = cb.slot_labels("vif")
    alpha0, beta0, weights0 = cb.task_defaults(engine, "vif")
    task = gr.Dropdown([(p.label, k) for k, p in PRESETS.items()], value="vif", label="Task", elem_id="task")
    info = gr.Markdown(cb.task_info(engine, "vif"))
    slots = []
    for row in range(-(-MAX_SOURCES // 2)):
        with gr.Row(elem_classes=["tcmoa-slot-row"]):
            for i in (2 * row, 2 * row + 1):
                slots.append(SourceImage(type="filepath", image_mode=None, label=labels[i], height=210,
                                         visible=i < 2, sources=["upload", "clipboard"], elem_id=f"source-{i + 1}"))
    with gr.Row():
        add = gr.Button("+ Add source", size="sm")
        remove = gr.Button("− Remove source", size="sm")
        swap = gr.Button("⇄ Swap 1 ↔ 2", size="sm")
    alpha = knob_slider(ALPHA_RANGE, alpha0, "α (alpha)", ALPHA_INFO, "alpha")
    beta = knob_slider(BETA_RANGE, beta0, "β (beta)", BETA_INFO, "beta")
    with gr.Row():
        fuse = gr.Button("Fuse", variant="primary", elem_id="fuse")
        reset = gr.Button("Reset α, β and routers", elem_id="reset")
    with gr.Row():
        full = gr.Button("Full resolution (PNG)", elem_id="full")
        cancel = gr.Button("Cancel", size="sm", elem_id="cancel")
    with gr.Row():
        resize = gr.Checkbox(False, label="Resize sources to source 1's size")
        show_baselines = gr.Checkbox(False, label="Show classical baselines", elem_id="show-baselines")
    with gr.Accordion("Advanced: blend the task routers", open=False):
        blend = gr.Checkbox(False, label="Blend routers (instead of the task's own router)")
        routers = [knob_slider(ROUTER_WEIGHT, w, f"{name} router", "", f"router-{name}")
                   for name, w in zip(engine.router_names, weights0)]
    sets = find_examples()
    examples = gr.Dataset(components=[task, *slots], samples=[s.row() for s in sets], type="index",
                          sample_labels=[s.label for s in sets], samples_per_page=12,
                          label="Examples (one click loads and fuses)", elem_id="examples")
    return Inputs(task, info, slots, add, remove, swap, alpha, beta, fuse, reset, full, cancel, resize, show_baselines,
                  blend, routers, examples, sets)


def output_column(head: str) -> Outputs:
    """Status, fused image and before/after, metrics, baselines, map tabs (the weight tab's note for the model's
    output `head`, Engine.fusion_output) and the sweep strip."""
    status = gr.Markdown("Upload two or more sources, or click an example.", elem_id="status")
    with gr.Row(equal_height=True):
        fused = gr.Image(label=f"Fused image (up to {WORKING_PIXELS / 2**20:.0f} MP; PNG download)", type="filepath",
                         interactive=False, buttons=["download", "fullscreen"], height=340, elem_id="fused")
        with gr.Column():
            comparison = gr.ImageSlider(label="Before / after (drag the handle)", interactive=False, max_height=300,
                                        elem_id="comparison")
            compare_with = gr.Radio([("Source 1", 1), ("Source 2", 2)], value=1,
                                    label="Compare the fused image with", elem_id="compare-with")
    full_status = gr.Markdown("", elem_id="full-status")
    full_file = gr.File(label="Full-resolution result", interactive=False, elem_id="full-file")
    metrics = gr.Markdown("", label="Metrics", elem_id="metrics")
    baselines = gr.Gallery(label="TC-MoA and the classical baselines", columns=4, rows=1, height=230,
                           object_fit="contain", visible=False, elem_id="baselines")
    tabs, figures = {}, {}
    with gr.Tabs():
        for key, title in MAP_TABS:
            with gr.Tab(title, id=key, elem_id=f"{key}-tab") as tabs[key]:
                if key == "weight":
                    gr.Markdown(WEIGHT_NOTES[head], elem_id="weight-note")
                figures[key] = gr.Image(label=title, show_label=False, interactive=False, format="png",
                                        buttons=["download", "fullscreen"], elem_id=f"{key}-map")
    with gr.Accordion("Sweep: what α and β do", open=True, elem_id="sweep-section"):
        gr.Markdown(f"One click fuses at {SWEEP_COUNT} values of the chosen knob across its whole range (the other "
                    f"settings as set above; sources reduced to about 512×512 px) and plots a metric against it.")
        with gr.Row(equal_height=True):
            sweep_knob = gr.Radio([(k.symbol, name) for name, k in KNOBS.items()], value="beta", label="Knob",
                                  elem_id="sweep-knob")
            sweep_metric = gr.Dropdown(list(SWEEP_METRICS), value="SSIM", label="Metric", elem_id="sweep-metric")
            sweep = gr.Button("Sweep", variant="secondary", elem_id="sweep")
        sweep_status = gr.Markdown("", elem_id="sweep-status")
        sweep_strip = gr.Gallery(label="Fused at each value (caption: the knob, then the metric)",
                                 columns=SWEEP_COUNT, rows=1, height=180, object_fit="contain", elem_id="sweep-strip")
        sweep_curve = gr.Image(label="Metric against the knob", interactive=False, height=260, show_label=False,
                               buttons=["download"], elem_id="sweep-curve")
    return Outputs(status, fused, comparison, compare_with, metrics, baselines, tabs, figures, sweep_knob,
                   sweep_metric, sweep, sweep_strip, sweep_curve, sweep_status, full_file, full_status)


def page_layout(engine: Engine) -> Page:
    """The header, the input and output columns and the session's values (call inside the Blocks)."""
    gr.Markdown(HEADER)
    if not engine.trained:
        gr.Markdown(f"⚠️ **{UNTRAINED_WARNING[0].upper() + UNTRAINED_WARNING[1:]}.** {engine.load_note}",
                    elem_classes=["tcmoa-warning"], elem_id="untrained-banner")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=380):
            inputs = input_column(engine)
        with gr.Column(scale=7, min_width=480):
            outputs = output_column(engine.fusion_output)
    session = Session(n_sources=gr.State(2), request=gr.State(0), open_tab=gr.State(TABS[0]), shown=gr.State(None),
                      sweep=gr.State(None))
    return Page(inputs, outputs, session)
