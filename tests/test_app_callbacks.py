"""The demo's callbacks, API, sweep, figures and wiring, without a browser (untrained compact model, tiny images)."""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import torch
import pytest
from gradio.components import Component
from PIL import Image

from demo import analysis, gpu
from demo import callbacks as cb
from demo.api import api_fuse, router_report
from demo.engine import (FULL_CONCURRENCY, FUSION_CONCURRENCY, MAX_SOURCES, QUEUE_SIZE, UNTRAINED_WARNING,
                         load_engine)
from demo.components import SourceImage
from demo.control_events import on_upload, outdated, slot_changes
from demo.example_sets import find_examples
from demo.fusion_events import PerSession, announce_refusal, cancel_full, view_targets
from demo.layout import page_layout
from demo.opening import OPENING_EXAMPLE, OPENING_NOTE, opening_view
from demo.page import build_demo
from tcmoa import PRESETS
from tcmoa.imaging import to_uint8
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE
from tcmoa.fuse.pipeline import FusionMaps
from tcmoa.tasks import get_preset
from tcmoa.fuse.figures import (difference_figure, map_cells, prompt_figure, routing_figure, save_map_images,
                             sweep_curve, weight_figure)


@pytest.fixture(scope="module")
def engine():
    return load_engine("compact", "cpu")


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    visible = rng.random((64, 96, 3), dtype=np.float32)
    infrared = rng.random((64, 96), dtype=np.float32)
    return visible, infrared


def fuse(engine, slots, task="vif", alpha=1.0, beta=0.0, **kw):
    return cb.final_view(cb.fuse_steps(engine, slots, task, alpha, beta, **kw))


def labels(blocks: Iterable[object]) -> list[object]:
    """The labels of an event's inputs or outputs (each one a component, not a layout block)."""
    found: list[object] = []
    for block in blocks:
        assert isinstance(block, Component), f"{block!r} is not a component"
        found.append(block.label)
    return found


def initial_values(blocks: Iterable[object]) -> dict[object, object]:
    """An event's inputs as the page holds them when it loads: {component: value}."""
    return {block: getattr(block, "value") for block in blocks}


def assert_failed(view, *words):
    assert view.fused is None and view.prompts is None and view.comparison is None and view.metrics is None
    assert view.status.startswith("⚠️ **Cannot fuse:**"), view.status
    assert "Traceback" not in view.status
    for word in words:
        assert word.lower() in view.status.lower(), (word, view.status)


def assert_refused(view, message, alpha=1.0, beta=0.0):
    """A typed α/β out of range: one message, nothing cleared, the sliders back to the fused (or default) values."""
    assert view.status.startswith("⚠️ **Value refused:**") and message in view.status, view.status
    assert (view.alpha, view.beta) == (alpha, beta)


def range_message(knob, value):
    with pytest.raises(ValueError) as caught:
        knob.check(value)
    return str(caught.value)


# ------------------------------------------------------------------------------ fusion
def test_fusion_outputs(engine, pair):
    view = fuse(engine, [*pair, None, None], alpha=1.5, beta=0.1)
    assert view.fused.shape == (64, 96, 3) and view.fused.dtype == np.uint8
    source, fused = view.comparison
    assert source.shape[:2] == fused.shape[:2] == (64, 96)
    assert view.prompts.dtype == np.uint8 and view.prompts.ndim == 3 and view.prompts.shape[0] > 200
    assert view.routing is None and view.weight is None and view.difference is None  # closed tabs: drawn on opening
    assert view.baselines is None
    for text in ("Fused", "2 sources", "96×64", "CPU", "compact (untrained)", "α = 1.50", "β = +0.10", UNTRAINED_WARNING):
        assert text in view.status, text
    for name in ("Qabf ↑", "VIF ↑", "SSIM ↑", "EN ↑", "SD ↑", "| TC-MoA |", "on luminance"):
        assert name in view.metrics, name
    assert "MEF-SSIM" not in view.metrics  # exposure stacks only


def test_image_is_shown_before_metrics_and_maps(engine, pair):
    first, second = cb.fuse_steps(engine, list(pair), "vif", 1.0, 0.0, open_tab="weight")
    assert first.fused is not None and "Fused" in first.status and first.shown is not None
    assert all(x is cb.SKIP for x in (first.metrics, first.prompts, first.weight))  # the slow part comes next
    assert second.fused is cb.SKIP and second.status is cb.SKIP
    assert second.metrics is not None
    assert "Qabf" in second.metrics and second.weight is not None and second.prompts is None


def test_metrics_panel_scores_are_the_metrics_of_the_shown_image(engine, pair):
    from tcmoa.metrics.scores import evaluate

    view = fuse(engine, list(pair))
    grey = [analysis.luma8(x) for x in (view.fused, *pair)]
    expected = evaluate(grey[0], grey[1:], ["Qabf", "SD"])
    assert f"{expected['Qabf']:.3f}" in view.metrics and f"{expected['SD']:.3f}" in view.metrics


def test_alpha_changes_the_result(engine, pair):
    one, two = fuse(engine, list(pair)), fuse(engine, list(pair), alpha=2.5, beta=0.3)
    assert not np.array_equal(one.fused, two.fused)


def test_grey_sources_give_grey_result_and_files_work(engine, tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((np.random.default_rng(i).random((64, 64)) * 255).astype(np.uint8)).save(paths[-1])
    view = fuse(engine, [str(p) for p in paths], task="mri-ct")
    assert view.fused.shape == (64, 64)


def test_three_sources_compare_index_and_metrics(engine, pair):
    third = np.clip(pair[0] * 0.5, 0, 1)
    view = fuse(engine, [pair[0], None, third, pair[0]], task="mef", compare=3)
    assert "3 sources" in view.status and view.fused is not None
    assert np.array_equal(view.comparison[0], to_uint8(pair[0]))
    assert "MEF-SSIM ↑" in view.metrics and "EN ↑" in view.metrics
    assert "Qabf" not in view.metrics.split("\n")[0] and "exactly two sources" in view.metrics


def test_baselines_gallery_with_their_metrics(engine, pair):
    view = fuse(engine, list(pair), baselines=True)
    captions = [c for _, c in view.baselines]
    assert captions == ["TC-MoA (this model)", "Average", "Laplacian pyramid", "Mertens"]
    assert all(img.shape[:2] == (64, 96) and img.dtype == np.uint8 for img, _ in view.baselines)
    for method in ("| TC-MoA |", "| Average |", "| Laplacian pyramid |", "| Mertens |"):
        assert method in view.metrics


def test_every_map_tab_renders_and_the_weight_tab_handles_official_models(engine, pair):
    shown = fuse(engine, list(pair)).shown
    for tab in analysis.TABS:
        figure = analysis.render_tab(tab, shown)
        assert figure is not None, tab
        assert figure.dtype == np.uint8 and figure.shape[1] == 760, tab
    no_weight = dataclasses.replace(shown, maps=dataclasses.replace(shown.maps, source_weight=None))
    assert analysis.render_tab("weight", no_weight) is None  # an official checkpoint: the tab stays empty
    assert analysis.render_tab("prompts", None) is None
    with pytest.raises(ValueError, match="unknown tab"):
        analysis.render_tab("histogram", shown)


class SpyFuser:
    """Records the FuseSettings of each fusion, then fuses as usual."""

    def __init__(self, fuser):
        self.fuser, self.calls = fuser, []

    def fuse(self, sources, settings, **kwargs):
        self.calls.append(settings)
        return self.fuser.fuse(sources, settings, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fuser, name)


def test_router_blending(engine, pair):
    spy = SpyFuser(engine.fuser)
    spying = dataclasses.replace(engine, fuser=spy)
    own = fuse(spying, list(pair), task="mri-spect")
    blended = fuse(spying, list(pair), task="mri-spect", blend=True, router_weights=[0.5, 0.5, 0.0, 0.0])
    assert [c.route for c in spy.calls] == ["medical", [0.5, 0.5, 0.0, 0.0]]
    assert "router `medical`" in own.status and "blended routers" in blended.status
    same = fuse(engine, list(pair), blend=True, router_weights=[1.0, 0.0, 0.0, 0.0])
    assert np.array_equal(fuse(engine, list(pair)).fused, same.fused)  # one-hot vif == the vif router
    assert_failed(fuse(engine, list(pair), blend=True, router_weights=[0, 0, 0, 0]), "positive weight")
    assert_failed(fuse(engine, list(pair), blend=True, router_weights=[float("nan"), 1, 0, 0]),
                  "router weight must be a number in [0, 1], got nan")


# ------------------------------------------------------------------------------ bad input
def test_fewer_than_two_sources_say_what_to_do_next(engine, pair):
    """Uploading the first source is a step on the way in, not an error ("⚠️ Cannot fuse: ... got 1")."""
    view = fuse(engine, [pair[0], None, None, None])
    assert view.status == "**Add a second source** to fuse: upload Source 2: infrared (B)."
    assert view.fused is None and view.metrics is None and view.shown is None  # the last result was of other sources
    assert fuse(engine, [None, pair[1]]).status.endswith("upload Source 1: visible (A).")
    assert fuse(engine, [None] * MAX_SOURCES, task="mef").status == (
        "**Upload two sources** to fuse: Source 1: over-exposed (A) and Source 2: under-exposed (B), or click an "
        "example.")
    assert cb.preview_view(engine, [pair[0], None], "vif", 2.0, 0.0).status == view.status
    assert cb.sweep_view(engine, [pair[0]], "vif", 1.0, 0.0, "beta", "SSIM")[2].startswith(
        "**Add a second source** to sweep")


def test_corrupt_and_empty_files(engine, pair, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"\x89PNG not really" + bytes(200))
    view = fuse(engine, [pair[0], str(bad)])
    assert_failed(view, "source 2", "not a recognised image", "'holiday.png'")
    assert str(tmp_path) not in view.status  # the server's path is not shown
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert_failed(fuse(engine, [str(empty), pair[1]]), "source 1", "empty")


def test_mismatched_sizes_and_resize_policy(engine, pair):
    small = pair[1][:32, :48]
    view = fuse(engine, [pair[0], small])
    assert_failed(view, "source 2 is 48x32", "tick “Resize sources to source 1's size”")
    assert "--resize" not in view.status and "resize='first'" not in view.status
    view = fuse(engine, [pair[0], small], resize=True)
    assert view.fused.shape[:2] == (64, 96) and "resized from 48x32" in view.status
    assert "Qabf" in view.metrics and view.comparison[0].shape[:2] == (64, 96)


def test_pixel_and_file_size_limits(engine, pair, tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (8000, 6250)).save(big)  # 50 MP, a small file
    assert_failed(fuse(engine, [pair[0], str(big)]), "50.0 MP", "16.0 MP")
    tiny_limit = dataclasses.replace(engine, max_file_mb=1e-4)
    assert_failed(fuse(tiny_limit, [pair[0], str(big)]), "source 2", "above this demo's limit")


@pytest.mark.parametrize("knobs", [{"alpha": float("nan")}, {"alpha": 1e9}, {"alpha": -1}, {"alpha": "abc"},
                                   {"alpha": None}, {"alpha": True}, {"beta": 0.9}, {"beta": -50}])
def test_knobs_out_of_range_get_the_library_message(engine, pair, knobs):
    (name, value), = knobs.items()
    message = range_message(ALPHA_RANGE if name == "alpha" else BETA_RANGE, value)
    assert_refused(fuse(engine, list(pair), **knobs), message)
    shown = cb.final_view(cb.fuse_steps(engine, list(pair), "vif", 2.5, 0.2)).shown
    steps = list(cb.fuse_steps(engine, list(pair), "vif", **{"alpha": 2.5, "beta": 0.2, **knobs}, shown=shown))
    assert len(steps) == 1 and all(v is cb.SKIP for v in steps[0][:2] + steps[0][3:10])  # the page keeps its result
    assert_refused(steps[0], message, 2.5, 0.2)  # the sliders return to the values of the fusion shown


def test_nan_pixels_unknown_task_and_internal_errors(engine, pair):
    poisoned = pair[1].copy()
    poisoned[3, 3] = np.nan
    assert_failed(fuse(engine, [pair[0], poisoned]), "source 2", "nan")
    assert_failed(fuse(engine, list(pair), task="sonar"), "unknown task")
    broken = dataclasses.replace(engine, fuser=None)  # any bug inside: one line, no traceback
    assert_failed(fuse(broken, list(pair)), "internal error (AttributeError)")


def test_corrupt_upload_reaches_the_callback(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"garbage")
    payload = gr.FileData(path=str(bad), orig_name="x.png")
    assert SourceImage(type="filepath", image_mode=None).preprocess(payload) == str(bad)


# ------------------------------------------------------------------------------ /fuse
def test_api_fuse_two_and_three_sources(engine, pair):
    image, report = api_fuse(engine, list(pair), "vif", 1.5, -0.1)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert report["sources"] == 2 and report["size"] == [96, 64] and report["router"] == "vif"
    assert (report["alpha"], report["beta"]) == (1.5, -0.1) and report["trained"] is False
    assert set(report["metrics"]) == {"Qabf", "VIF", "SSIM", "EN", "SD"}
    assert report["timing_s"]["total"] >= report["timing_s"]["fusion"] > 0 and report["device"].startswith("CPU")
    third = np.clip(pair[0] * 0.4, 0, 1)
    image, report = api_fuse(engine, [pair[0], third, pair[0]], "mef", 1.0, 0.0, "mef=0.5,mff=0.5")
    assert report["sources"] == 3 and set(report["metrics"]) == {"EN", "SD", "MEF-SSIM"}
    assert report["router"] == {"vif": 0.0, "mef": 0.5, "mff": 0.5, "medical": 0.0}
    assert "3 sources fused pairwise" in report["notes"][0]
    names = ("vif", "mef", "mff", "medical")  # every form a Route takes reads as a name or a blend
    blend = router_report(torch.tensor([0.0, 1, 0, 0]), names)
    assert router_report(2, names) == "mff" and isinstance(blend, dict) and blend["mef"] == 1.0


@pytest.mark.parametrize("args, message", [
    (("vif", "abc", 0.0), "alpha must be a number in [0, 3], got 'abc'"),
    (("vif", None, 0.0), "alpha must be a number in [0, 3], got None"),
    (("vif", True, 0.0), "alpha must be a number in [0, 3], got True"),  # a bool is an int to Python: refused
    (("vif", 1.0, False), "beta must be a number in [-0.5, 0.5], got False"),
    (("vif", "1.5", 0.0), "alpha must be a number in [0, 3], got '1.5'"),
    (("vif", 1.0, -50), "beta must be a number in [-0.5, 0.5], got -50"),
    (("sonar", 1.0, 0.0), "unknown task 'sonar'"),
    (("vif", 1.0, 0.0, "pan=1"), "unknown router 'pan'"),
])
def test_api_fuse_bad_input(engine, pair, args, message):
    with pytest.raises(gr.Error) as caught:
        api_fuse(engine, list(pair), *args)
    assert message in str(caught.value)


def test_api_fuse_sources_and_sizes(engine, pair):
    with pytest.raises(gr.Error, match="needs at least 2 source images, got 1"):
        api_fuse(engine, [pair[0], None], "vif", 1.0, 0.0)
    with pytest.raises(gr.Error) as caught:
        api_fuse(engine, [pair[0], pair[1][:32, :48]], "vif", 1.0, 0.0)
    assert "(or pass resize=True)" in str(caught.value) and "--resize" not in str(caught.value)
    image, report = api_fuse(engine, [pair[0], pair[1][:32, :48]], "vif", 1.0, 0.0, resize=True)
    assert image.shape[:2] == (64, 96) and "resized from 48x32" in report["notes"][0]


# ------------------------------------------------------------------------------ sweep strip
def test_sweep_fuses_at_five_knob_values(engine, pair):
    spy = SpyFuser(engine.fuser)
    gallery, curve, status, sweep = cb.sweep_view(dataclasses.replace(engine, fuser=spy), list(pair), "vif", 1.2,
                                                  0.1, "beta", "Qabf")
    assert gallery is not None and curve is not None and sweep is not None, status
    assert [c.beta for c in spy.calls] == BETA_RANGE.sweep(5) == [-0.5, -0.25, 0.0, 0.25, 0.5]
    assert all(c.alpha == 1.2 for c in spy.calls)  # the other knob as set
    assert len(gallery) == 5 and gallery[0][1] == f"β -0.5 · {sweep.scores[0]['Qabf']:.3f}"
    assert curve.dtype == np.uint8 and "5 fusions at 96×64 px" in status
    assert len({t.tobytes() for t in sweep.thumbs}) == 5  # beta moves the result
    gallery, curve, status = cb.sweep_plot(sweep, "MEF-SSIM")  # re-plot without fusing again
    assert gallery is not None, status
    assert curve is not None and "MEF-SSIM is not computed here" in status and gallery[0][1] == "β -0.5"
    _, _, status, alphas = cb.sweep_view(engine, list(pair), "vif", 1.0, 0.0, "alpha", "SD")
    assert alphas is not None, status
    assert alphas.values == (0.0, 0.75, 1.5, 2.25, 3.0) and alphas.current == 1.0


def test_sweep_bad_input_and_large_sources(engine, pair):
    gallery, curve, status, sweep = cb.sweep_view(engine, [pair[0], pair[1][:32, :48]], "vif", 1.0, 0.0, "beta", "SSIM")
    assert gallery is None and sweep is None and "Cannot sweep" in status and "Resize sources" in status
    big = [np.zeros((700, 1400, 3), np.float32), np.ones((700, 1400), np.float32) * 0.5]
    _, _, status, sweep = cb.sweep_view(engine, big, "vif", 1.0, 0.0, "beta", "SSIM")
    assert sweep is not None, status
    assert sweep.thumbs[0].shape[:2] == (362, 724) and "at 724×362 px" in status  # about 512x512 px worth


# ------------------------------------------------------------------------------ ZeroGPU
class FakeSpaces:
    """Stands in for Hugging Face's `spaces` package: counts the calls that would hold a GPU."""

    def __init__(self):
        self.calls = 0

    def GPU(self, duration):  # noqa: N802 (the package's name)
        def wrap(fn):
            def on_gpu(*args, **kwargs):
                self.calls += 1
                pickle.dumps((args, kwargs))  # ZeroGPU pickles the arguments to its worker...
                return pickle.loads(pickle.dumps(fn(*args, **kwargs)))  # ...and the results back
            return on_gpu
        return wrap


def test_fusion_runs_inside_spaces_gpu_when_present(engine, pair, monkeypatch):
    def plain(x):
        return x

    assert gpu.spaces is None and gpu.on_gpu(plain) is plain  # locally nothing changes
    fake = FakeSpaces()
    monkeypatch.setattr(gpu, "spaces", fake)
    on_spaces = dataclasses.replace(engine)  # a new Engine wraps its fusion call at creation
    assert fuse(on_spaces, list(pair)).fused is not None and fake.calls == 1
    cb.sweep_view(on_spaces, list(pair), "vif", 1.0, 0.0, "beta", "SSIM")
    assert fake.calls == 2  # five fusions, one GPU call
    api_fuse(on_spaces, list(pair), "vif", 1.0, 0.0)
    assert fake.calls == 3


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


def test_compare_pair(engine, pair):
    shown = fuse(engine, list(pair)).shown
    compared = cb.compare_pair(shown, 2)
    assert compared is not None
    source, fused = compared
    assert source.shape == (64, 96) and fused.shape == (64, 96, 3)
    last = cb.compare_pair(shown, 9)  # past the last source: the last one
    assert last is not None and last[0].shape == (64, 96) and cb.compare_pair(None, 1) is None


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
    assert labels(fns["fuse"].inputs) == ["sources", "task", "alpha", "beta", "router", "resize"]
    assert labels(fns["fuse"].outputs) == ["fused", "report"]
    live = fns["live_fuse"]
    assert live.trigger_mode == "always_last"  # while one runs, only the latest request waits
    events = [event for _, event in live.targets]
    # Only user events fuse (".change" also fires on values a callback sets): one action, one fusion.
    assert events.count("change") == 1 and set(events) == {"clear", "input", "release", "click", "change"}
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
    assert [first[by_id[f"{key}-map"]] for key in analysis.TABS] == [None] * 4
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


def test_concurrent_users_get_their_own_results(engine, pair):
    settings = [(0.5, -0.2), (2.5, 0.3), (1.0, 0.0), (3.0, -0.5)]
    alone = [fuse(engine, list(pair), alpha=a, beta=b).fused for a, b in settings]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda s: fuse(engine, list(pair), alpha=s[0], beta=s[1]).fused, settings))
    for one, other in zip(alone, together):
        assert np.array_equal(one, other)


# ------------------------------------------------------------------------------ figures
def fake_maps(h=40, w=56, modules=8, experts=4, weight=True):
    rng = np.random.default_rng(1)
    gh, gw = -(-h // 8), -(-w // 8)
    names = [f"encoder {i + 1}" for i in range(modules - 2)] + ["decoder 1", "decoder 2"]
    gates = rng.random((modules, experts, gh, gw)).astype(np.float32)
    return FusionMaps(names, rng.random((modules, gh, gw)).astype(np.float32),
                      rng.random((modules, gh, gw)).astype(np.float32), gates, (h, w), 8,
                      rng.random((h, w)).astype(np.float32) if weight else None)


def test_figures_shapes_and_files(tmp_path):
    maps = fake_maps()
    for figure in (prompt_figure(maps, np.zeros((40, 56), np.float32)), prompt_figure(maps), routing_figure(maps),
                   weight_figure(maps, np.zeros((40, 56, 3), np.float32)),
                   difference_figure(np.zeros((40, 56, 3), np.uint8), [np.ones((40, 56), np.float32)] * 3,
                                     ["a", "b", "c"])):
        assert figure is not None
        assert figure.dtype == np.uint8 and figure.shape[1] == 760 and figure.shape[2] == 3
    assert weight_figure(fake_maps(weight=False)) is None
    # The shipped pyramid head's map is the base band's weight; the per-pixel head's title says so for its own.
    pyramid, per_pixel = (weight_figure(maps, head=head) for head in ("pyramid", "source_weights"))
    assert pyramid is not None and per_pixel is not None and not np.array_equal(pyramid, per_pixel)
    with pytest.raises(ValueError, match="the 'decoder' output has no weight of source A"):
        weight_figure(maps, head="decoder")
    assert sweep_curve([0, 1, 2], [0.1, None, 0.3], "α", "SD", current=1.0).shape == (240, 420, 3)
    paths = save_map_images(maps, tmp_path, np.zeros((40, 56, 3), np.float32), ("visible", "infrared"))
    assert [p.name for p in paths] == ["prompts.png", "routing.png", "source_weight.png"]
    assert all(Image.open(p).size[0] == 760 for p in paths)
    assert len(save_map_images(fake_maps(weight=False), tmp_path / "official")) == 2
    assert map_cells(np.ones((2, 300, 200)), 96).shape == (2, 75, 50)
