"""The demo's callbacks, API, sweep and figures, without a browser (untrained compact model, tiny images); the
page's build and wiring are in test_app_page.py."""
from __future__ import annotations

import dataclasses
import pickle
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import torch
import pytest
from PIL import Image

from demo import analysis, gpu
from demo import callbacks as cb
from demo.api import api_fuse, router_report
from demo.engine import (MAX_SOURCES, UNTRAINED_WARNING,
                         load_engine)
from demo.components import SourceImage
from demo.sources import AlignOptions
from tcmoa.imaging import to_uint8
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE
from tcmoa.fuse.pipeline import FusionMaps
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
    small = pair[1][:48, :72]
    off = AlignOptions("off")
    view = fuse(engine, [pair[0], small], align=off)
    assert_failed(view, "source 2 is 72x48", "set “Align sources” to auto if they come from different cameras",
                  "tick “Resize sources to source 1's size”")
    assert "--resize" not in view.status and "resize='first'" not in view.status
    view = fuse(engine, [pair[0], small], resize=True, align=off)
    assert view.fused.shape[:2] == (64, 96) and "resized from 72x48" in view.status
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
    assert any("3 sources fused pairwise" in note for note in report["notes"])
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
        api_fuse(engine, [pair[0], pair[1][:48, :72]], "vif", 1.0, 0.0, align="off")
    assert ("(pass align='auto' if they come from different cameras, or resize=True)" in str(caught.value)
            and "--resize" not in str(caught.value))
    image, report = api_fuse(engine, [pair[0], pair[1][:48, :72]], "vif", 1.0, 0.0, resize=True, align="off")
    assert image.shape[:2] == (64, 96) and "resized from 72x48" in report["notes"][0]


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
    gallery, curve, status, sweep = cb.sweep_view(engine, [pair[0], pair[1][:48, :72]], "vif", 1.0, 0.0, "beta", "SSIM",
                                                  align=AlignOptions("off"))
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


# ------------------------------------------------------------------------------ controls
def test_compare_pair(engine, pair):
    shown = fuse(engine, list(pair)).shown
    compared = cb.compare_pair(shown, 2)
    assert compared is not None
    source, fused = compared
    assert source.shape == (64, 96) and fused.shape == (64, 96, 3)
    last = cb.compare_pair(shown, 9)  # past the last source: the last one
    assert last is not None and last[0].shape == (64, 96) and cb.compare_pair(None, 1) is None


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
