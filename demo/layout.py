"""The demo's page: layout in `build_demo`, events wired to the functions in demo.callbacks."""
from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from tcmoa import TASKS

from . import callbacks as cb
from .engine import FUSION_CONCURRENCY, MAX_SOURCES, UNTRAINED_WARNING, Engine
from .example_sets import find_examples

HEADER = """# TC-MoA: general image fusion
Task-Customized Mixture of Adapters ([CVPR 2024](https://arxiv.org/abs/2403.12494)) fuses registered images of one
scene (infrared + visible, exposure brackets, focal stacks, medical scans) with one model. Pick a task, upload the
sources or click an example, then drag **α** and **β**: the image re-fuses as you move them."""
ALPHA_INFO = "p_A' = 0.5 + α(p_A − 0.5) + β: α scales how decisively each region picks a source (0 = even mix)"
BETA_INFO = "β shifts dominance: > 0 towards source A, < 0 towards source B"
CSS = """
.tcmoa-warning {background: #fff4e5; border: 2px solid #f0a030; border-radius: 8px; padding: 6px 12px;}
.tcmoa-warning p {margin: 0; color: #7a4100;}
#status p {margin: 2px 0;}
"""
FUSION_EVENT: dict[str, Any] = dict(concurrency_limit=FUSION_CONCURRENCY, concurrency_id="fusion")


class SourceImage(gr.Image):
    """gr.Image whose upload handling never fails: an unreadable file reaches the callback, which explains it."""

    is_template = True  # rendered by gr.Image's front end

    def preprocess(self, payload: Any) -> Any:
        """The uploaded file's path; a file Pillow cannot open is passed through for a clear message later."""
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 (whatever Pillow refuses, the callback explains)
            return str(payload.path) if payload is not None and getattr(payload, "path", None) else None


def slot_updates(n: int) -> list[Any]:
    """Visibility of source slots 3..MAX_SOURCES (hidden ones are emptied) and the compare choices."""
    n = cb.clamp_sources(n)
    hidden = [gr.update(visible=True) if i <= n else gr.update(visible=False, value=None)
              for i in range(3, MAX_SOURCES + 1)]
    return [n, *hidden, gr.update(choices=[(f"Source {i}", i) for i in range(1, n + 1)], value=1)]


def build_demo(engine: Engine) -> gr.Blocks:
    """The whole page for one loaded model."""
    labels = cb.slot_labels("vif")
    alpha0, beta0, weights0 = cb.task_defaults(engine, "vif")
    with gr.Blocks(title="TC-MoA image fusion") as demo:
        n_sources = gr.State(2)
        gr.Markdown(HEADER)
        if not engine.trained:
            gr.Markdown(f"⚠️ **{UNTRAINED_WARNING[0].upper() + UNTRAINED_WARNING[1:]}.** {engine.load_note}",
                        elem_classes=["tcmoa-warning"], elem_id="untrained-banner")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=380):
                task = gr.Dropdown([(p.label, k) for k, p in TASKS.items()], value="vif", label="Task",
                                   elem_id="task")
                info = gr.Markdown(cb.task_info(engine, "vif"))
                slots = []
                for row in range(MAX_SOURCES // 2):
                    with gr.Row():
                        for i in (2 * row, 2 * row + 1):
                            slots.append(SourceImage(type="filepath", image_mode=None, label=labels[i], height=210,
                                                     visible=i < 2, sources=["upload", "clipboard"],
                                                     elem_id=f"source-{i + 1}"))
                with gr.Row():
                    add = gr.Button("+ Add source", size="sm")
                    remove = gr.Button("− Remove source", size="sm")
                    swap = gr.Button("⇄ Swap 1 ↔ 2", size="sm")
                alpha = gr.Slider(0, 3, value=alpha0, step=0.05, label="α (alpha)", info=ALPHA_INFO, elem_id="alpha")
                beta = gr.Slider(-0.5, 0.5, value=beta0, step=0.01, label="β (beta)", info=BETA_INFO, elem_id="beta")
                with gr.Row():
                    fuse = gr.Button("Fuse", variant="primary", elem_id="fuse")
                    reset = gr.Button("Reset α, β and routers", elem_id="reset")
                with gr.Row():
                    resize = gr.Checkbox(False, label="Resize sources to source 1's size")
                    show_baselines = gr.Checkbox(False, label="Show classical baselines")
                with gr.Accordion("Advanced: blend the task routers", open=False):
                    blend = gr.Checkbox(False, label="Blend routers (instead of the task's own router)")
                    routers = [gr.Slider(0, 1, value=w, step=0.05, label=f"{name} router")
                               for name, w in zip(engine.router_names, weights0)]
                sets = find_examples()
                examples = gr.Examples([s.row() for s in sets], inputs=[task, *slots],
                                       example_labels=[s.label for s in sets], examples_per_page=12,
                                       label="Examples (one click loads and fuses)", elem_id="examples")
            with gr.Column(scale=7, min_width=480):
                status = gr.Markdown("Upload two or more sources, or click an example.", elem_id="status")
                with gr.Row(equal_height=True):
                    fused = gr.Image(label="Fused image (full resolution, PNG download)", format="png",
                                     interactive=False, buttons=["download", "fullscreen"], height=340,
                                     elem_id="fused")
                    with gr.Column():
                        comparison = gr.ImageSlider(label="Before / after (drag the handle)", interactive=False,
                                                    max_height=300, elem_id="comparison")
                        compare_with = gr.Radio([("Source 1", 1), ("Source 2", 2)], value=1,
                                                label="Compare the fused image with", elem_id="compare-with")
                baselines = gr.Gallery(label="TC-MoA and the classical baselines", columns=4, height="auto",
                                       visible=False, elem_id="baselines")
                with gr.Tabs():
                    with gr.Tab("Prompt maps", elem_id="prompt-tab"):
                        prompts = gr.Image(label="Prompt maps", show_label=False, interactive=False,
                                           buttons=["download", "fullscreen"], elem_id="prompt-maps")
                    with gr.Tab("Routing", elem_id="routing-tab", render_children=True):
                        routing = gr.Image(label="Routing", show_label=False, interactive=False,
                                           buttons=["download", "fullscreen"], elem_id="routing-maps")
        api_out = gr.Image(format="png", visible=False)
        api_trigger = gr.Button(visible=False)

        # -- fusion: every input change re-fuses; always_last drops stale requests while one runs
        outputs = [fused, comparison, prompts, routing, baselines, status]
        inputs = [task, alpha, beta, blend, resize, show_baselines, compare_with, *slots, *routers]

        def run(notify: bool, task_: str, a: float, b: float, blend_: bool, resize_: bool, base: bool,
                pick: int, *rest: Any) -> tuple[Any, ...]:
            view = cb.fuse_view(engine, rest[:MAX_SOURCES], task_, a, b, blend=blend_,
                                router_weights=rest[MAX_SOURCES:], resize=resize_, baselines=base, compare=pick,
                                notify=notify)
            return tuple(view)

        live = [s.change for s in slots] + [task.change, alpha.change, beta.change, blend.change, resize.change,
                                            show_baselines.change] + [r.change for r in routers]
        gr.on(live, partial(run, False), inputs, outputs, trigger_mode="always_last", show_progress="minimal",
              api_name="live_fuse", api_visibility="private", **FUSION_EVENT)
        fuse.click(partial(run, True), inputs, outputs, api_name="fuse_button", api_visibility="private",
                   **FUSION_EVENT)
        api_trigger.click(partial(cb.api_fuse, engine), [slots[0], slots[1], task, alpha, beta], api_out,
                          api_name="fuse", **FUSION_EVENT)

        # -- controls (cheap, no queue)
        def on_task(task_: str) -> list[Any]:
            a, b, weights = cb.task_defaults(engine, task_)
            return [*(gr.update(label=text) for text in cb.slot_labels(task_)), a, b, *weights,
                    cb.task_info(engine, task_)]

        task.change(on_task, task, [*slots, alpha, beta, *routers, info], queue=False, api_visibility="private")

        def on_reset(task_: str) -> list[Any]:
            a, b, weights = cb.task_defaults(engine, task_)
            return [a, b, False, *weights]

        reset.click(on_reset, task, [alpha, beta, blend, *routers], queue=False, api_visibility="private")
        swap.click(cb.swap_sources, slots[:2], slots[:2], queue=False, api_visibility="private")
        slot_outputs = [n_sources, *slots[2:], compare_with]
        add.click(lambda n: slot_updates(n + 1), n_sources, slot_outputs, queue=False, api_visibility="private")
        remove.click(lambda n: slot_updates(n - 1), n_sources, slot_outputs, queue=False, api_visibility="private")
        examples.load_input_event.then(lambda *s: slot_updates(cb.count_sources(s)), slots, slot_outputs,
                                       queue=False, api_visibility="private")
        show_baselines.change(lambda on: gr.update(visible=on), show_baselines, baselines, queue=False,
                              api_visibility="private")
        compare_with.change(partial(_compare, engine), [*slots, fused, compare_with], comparison,
                            api_name="compare", api_visibility="private", **FUSION_EVENT)
    demo.queue(max_size=64)
    return demo


def _compare(engine: Engine, *values: Any) -> Any:
    """Adapter: (slots..., fused, index) -> the before/after pair."""
    *slots, fused, index = values
    return cb.compare_view(slots, fused, index, engine.max_pixels)


def launch_options(engine: Engine) -> dict[str, Any]:
    """Keyword arguments for demo.launch() that belong to the page (style, upload limit)."""
    return {"css": CSS, "max_file_size": f"{int(engine.max_file_mb)}mb"}
