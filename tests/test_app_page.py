"""The page without a browser: how it is built and wired, what it opens on, and the events' own callbacks
(untrained compact model, tiny images). The browser tests are in test_app_e2e.py."""
from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.components import Component
from PIL import Image

from demo import analysis, gpu
from demo import callbacks as cb
from demo.control_events import on_upload, outdated, slot_changes
from demo.engine import FULL_CONCURRENCY, FUSION_CONCURRENCY, MAX_SOURCES, QUEUE_SIZE, load_engine
from demo.example_sets import find_examples
from demo.fusion_events import PerSession, announce_refusal, cancel_full, view_targets
from demo.layout import page_layout
from demo.opening import OPENING_EXAMPLE, OPENING_NOTE, opening_view
from demo.page import build_demo
from tcmoa import PRESETS
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE
from tcmoa.tasks import get_preset
from tests.test_app_callbacks import SpyFuser


@pytest.fixture(scope="module")
def engine():
    return load_engine("compact", "cpu")


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    return rng.random((64, 96, 3), dtype=np.float32), rng.random((64, 96), dtype=np.float32)


def fuse(engine, slots, task="vif", alpha=1.0, beta=0.0, **kw):
    return cb.final_view(cb.fuse_steps(engine, slots, task, alpha, beta, **kw))


def initial_values(blocks: Iterable[object]) -> dict[object, object]:
    """An event's inputs as the page holds them when it loads: {component: value}."""
    return {block: getattr(block, "value") for block in blocks}


def labels(blocks: Iterable[object]) -> list[object]:
    """The labels of an event's inputs or outputs (each one a component, not a layout block)."""
    found: list[object] = []
    for block in blocks:
        assert isinstance(block, Component), f"{block!r} is not a component"
        found.append(block.label)
    return found


# ------------------------------------------------------------------------------ controls and wiring
def test_swap_reset_labels_and_slots(engine):
    assert cb.swap_sources("a", "b") == ("b", "a")
    alpha, beta, weights = cb.task_defaults(engine, "mri-pet")
    preset = get_preset("mri-pet")  # the tuned medical defaults reach the sliders
    assert (alpha, beta) == (preset.alpha, preset.beta) and weights == [0.0, 0.0, 0.0, 1.0]  # the medical router
    assert cb.slot_labels("vif")[:2] == ["Source 1: visible (A)", "Source 2: infrared (B)"]
    assert cb.slot_labels("mef")[2] == "Source 3: another exposure"
    assert len(cb.slot_labels("mff")) == MAX_SOURCES
    assert "only the `medical` router" in cb.task_info(engine, "mri-ct") and "trained task" in cb.task_info(engine, "vif")
    n, slots, choices = slot_changes(MAX_SOURCES + 1)
    assert n == MAX_SOURCES == 8 and all(s["visible"] and "value" not in s for s in slots)
    assert len(choices["choices"]) == MAX_SOURCES
    n, slots, _ = slot_changes(1)
    assert n == 2 and slots[2] == {"__type__": "update", "visible": False, "value": None}
    n, slots, _ = slot_changes(3, "mff", ["a.jpg", "b.jpg", "c.jpg"] + [None] * (MAX_SOURCES - 3))
    assert [s.get("value") for s in slots] == ["a.jpg", "b.jpg", "c.jpg"] + [None] * (MAX_SOURCES - 3)
    assert slots[2]["label"] == "Source 3: another focal plane" and not slots[3]["visible"]


def test_cancel_says_what_it_did():
    cancel_flags, running = PerSession(threading.Event), PerSession(threading.Event)
    assert cancel_full(cancel_flags, running, "s") == "Nothing to cancel: no full-resolution fusion is running."
    assert not cancel_flags.get("s").is_set()
    running.get("s").set()  # as the full-resolution event does while it runs
    assert cancel_full(cancel_flags, running, "s") == "Full-resolution fusion cancelled."
    assert cancel_flags.get("s").is_set() and not cancel_flags.get("other").is_set()


def test_changed_sources_mention_the_sweep_only_when_there_was_one():
    assert outdated(None) == ""
    assert "Sources or task changed" in outdated(object())


def test_a_refused_value_is_also_a_toast(engine, pair):
    # Putting the sliders back re-fuses, and that fusion's status replaces the refusal's line: the toast stays.
    refused = cb.preview_view(engine, list(pair), "vif", 9, 0.0)
    with pytest.warns(UserWarning, match=r"Value refused: alpha must be a number in \[0, 3\], got 9"):
        announce_refusal(refused)  # gr.Warning outside an event is a Python warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        announce_refusal(cb.preview_view(engine, list(pair), "vif", 2.0, 0.0))  # a fusion: no toast


def test_examples_cover_every_task_and_are_small():
    sets = find_examples()
    assert {s.task for s in sets} == set(PRESETS)
    # Lossless PNG (a JPEG re-encode laid its own 8-px grid on the sources; demo/examples/README.md):
    # about 130-360 KB per 512-px image, so ~1.1 MB for the three-source set.
    assert sum(f.stat().st_size for s in sets for f in s.files) < 4_000_000
    for s in sets:
        assert sum(f.stat().st_size for f in s.files) < 400_000 * len(s.files), s.name
        for f in s.files:
            with Image.open(f) as im:
                assert max(im.size) <= 512, f
        row = s.row()
        assert row[0] == s.task and len(row) == 1 + MAX_SOURCES
    assert any(len(s.files) == 3 for s in sets)


def test_sliders_use_the_library_ranges(engine):
    demo = build_demo(engine)
    sliders = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Slider)}
    for elem_id, knob in (("alpha", ALPHA_RANGE), ("beta", BETA_RANGE)):
        assert (sliders[elem_id].minimum, sliders[elem_id].maximum, sliders[elem_id].step) == (knob.low, knob.high,
                                                                                              knob.step)


def test_build_demo_wiring(engine):
    demo = build_demo(engine)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert fns["fuse"].api_visibility == "public"  # the /fuse endpoint for gradio_client
    assert labels(fns["fuse"].inputs) == ["sources", "task", "alpha", "beta", "router", "resize", "align", "reference",
                                          "crop", "deghost"]
    assert labels(fns["fuse"].outputs) == ["fused", "report"]
    live = fns["live_fuse"]
    assert live.trigger_mode == "always_last"  # while one runs, only the latest request waits
    events = [event for _, event in live.targets]
    # Only user events fuse (".change" also fires on values a callback sets): one action, one fusion.
    assert events.count("change") == 1 and set(events) == {"clear", "input", "release", "click", "select", "change"}
    preview_id, preview = next((k, fn) for k, fn in demo.fns.items() if fn.api_name == "preview")
    assert {event for _, event in preview.targets} == {"input"} and preview.trigger_mode == "always_last"
    # every action that runs the final fusion also cancels a preview still queued or running: no late preview
    # hides the final
    assert any(fn.cancels == [preview_id] and fn.targets == live.targets for fn in demo.fns.values())
    (request_id,) = [block_id for block_id, event in live.targets if event == "change"]
    assert request_id is not None
    assert isinstance(demo.blocks[request_id], gr.State)
    setters = [fn for fn in demo.fns.values() if any(o._id == request_id for o in fn.outputs)]
    assert {fn.api_name for fn in setters} == {"on_task", "on_example", "on_reset", "on_swap", "on_remove",
                                               *(f"upload_{k}" for k in range(1, MAX_SOURCES + 1))}
    assert all(fn.queue for fn in setters)  # only queued events report State changes to the page
    for name in ("live_fuse", "fuse", "sweep", "preview"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("fusion", FUSION_CONCURRENCY)
    # the full resolution runs in a lane of its own: a large request never holds up a small one
    for name in ("fuse_full", "full"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("full", FULL_CONCURRENCY)
    assert demo.delete_cache and demo._queue.max_size == QUEUE_SIZE  # the upload cache is cleaned; the queue bounded
    # a fusion starts by saying so and clearing the maps: no previous error, timer or map while it runs
    assert live.fn is not None and preview.fn is not None
    request = gr.Request()  # one session
    values = initial_values(live.inputs)  # the page as it loads
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    first = next(live.fn(request, values))
    assert first[by_id["status"]].startswith("⏳ Fusing")
    assert [first[by_id[f"{key}-map"]] for key in analysis.TABS] == [None] * len(analysis.TABS)
    # A preview of the knobs a final fusion already started with shows nothing (Gradio sends the preview it
    # held back after the release: it would replace the final with "the full fusion follows"); others show.
    assert preview.fn(request, initial_values(preview.inputs)) is cb.SKIP
    other = preview.fn(request, {**initial_values(preview.inputs), by_id["alpha"]: 1.5})
    assert other[by_id["status"]].startswith("⚠️")
    # Callbacks read their inputs by component: an event with several inputs gets them as one dict, so no
    # list order decides which value is which (only /fuse's documented positional arguments are a list).
    for fn in demo.fns.values():
        if len(fn.inputs) > 1 and fn.api_name not in ("fuse", "fuse_full"):
            assert fn.inputs_as_dict, fn.api_name
    maps = [block for block in demo.blocks.values() if getattr(block, "elem_id", "") in
            ("prompts-map", "routing-map", "weight-map", "difference-map")]
    assert len(maps) == 4 and all(isinstance(m, gr.Image) and m.format == "png" for m in maps)  # map downloads are PNG, not WebP


def test_the_weight_tab_describes_the_models_output_head(engine, pair):
    assert engine.fusion_output == "pyramid"  # the compact preset, as shipped
    demo = build_demo(engine)
    (note,) = [getattr(b, "value") for b in demo.blocks.values() if getattr(b, "elem_id", None) == "weight-note"]
    assert "base band" in note and "residual" not in note  # not the per-pixel head's "w·A + (1 − w)·B + r"
    assert fuse(engine, list(pair), open_tab="weight").shown.head == "pyramid"


def empty_page(engine):
    """The page's components, opened empty (no start-up fusion), outside any event."""
    with gr.Blocks():
        return page_layout(engine, opening_view(engine, sets=[]))


def test_the_page_opens_on_a_fused_example(engine):
    """A first visit showed empty boxes: the opening example is fused at start-up and shown with its sources."""
    opening = opening_view(engine)
    assert opening.example is not None and (opening.task, opening.example.name) == OPENING_EXAMPLE
    view = opening.view
    assert isinstance(view.fused, str) and Path(view.fused).name == "fused_vif_a1.00_b+0.00.png"
    assert view.status.startswith("**Fused** 2 sources") and OPENING_NOTE in view.status
    assert view.metrics is not None and "Qabf" in view.metrics and view.prompts is not None
    assert view.comparison is not None and view.shown is not None and view.shown.task == "vif" and opening.seconds > 0
    with gr.Blocks():
        page = page_layout(engine, opening)
    i, o, s = page.inputs, page.outputs, page.session
    assert [slot.value is not None for slot in i.slots] == [True, True] + [False] * (MAX_SOURCES - 2)
    assert i.task.value == "vif" and o.fused.value is not None and o.status.value == view.status
    assert np.array_equal(s.shown.value.fused, view.shown.fused)  # the state holds a copy: each session its own
    assert s.from_example.value is True and s.n_sources.value == 2
    # what has nothing to show yet is not an empty box: the full-resolution file, the sweep's strip and curve
    assert not (o.full_file.visible or o.sweep_strip.visible or o.sweep_curve.visible or o.baselines.visible)
    empty = empty_page(engine)  # without examples the page opens empty, and says what to do
    assert empty.outputs.status.value.startswith("**Upload two sources**") and empty.session.from_example.value is False


def test_on_zerogpu_the_page_opens_empty(engine, monkeypatch):
    monkeypatch.setattr(gpu, "ZERO_GPU", True)  # the GPU exists only inside a request there; start-up is not one
    spy = SpyFuser(engine.fuser)
    opening = opening_view(dataclasses.replace(engine, fuser=spy))
    assert opening.example is None and opening.view.status.startswith("**Upload two sources**") and not spy.calls


def test_an_upload_into_an_examples_slots_starts_a_new_set(engine, tmp_path):
    """Uploading over an example replaced one of its sources and fused it with the example's other one (another
    scene, usually another size: an error). An example's sources go together; later uploads keep the others."""
    page = empty_page(engine)
    i, s = page.inputs, page.session
    own = tmp_path / "mine.png"
    Image.new("RGB", (80, 60)).save(own)
    values = {i.slots[0]: str(own), s.from_example: True, s.request: 3}
    changes = on_upload(page, 0, values)
    assert changes[s.request] == 4 and changes[s.from_example] is False  # one fusion follows
    assert [changes.get(slot, "kept") for slot in i.slots] == ["kept"] + [None] * (MAX_SOURCES - 1)
    changes = on_upload(page, 1, {i.slots[1]: str(own), s.from_example: False, s.request: 4})
    assert changes[s.request] == 5 and not any(slot in changes for slot in i.slots)  # the other sources stay


def test_every_fused_view_field_has_its_component(engine):
    page = empty_page(engine)
    targets = view_targets(page)
    assert list(targets) == list(cb.FuseView._fields)  # every field shown, by name
    assert len({id(c) for c in targets.values()}) == len(targets)  # each in a component of its own
    assert view_targets(page)["weight"] is page.outputs.figures["weight"]


