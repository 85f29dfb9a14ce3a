"""The demo's callbacks and figures, without a browser (untrained compact model, tiny images)."""
from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo import callbacks as cb
from demo.engine import FUSION_CONCURRENCY, MAX_SOURCES, UNTRAINED_WARNING, load_engine
from demo.example_sets import find_examples
from demo.layout import SourceImage, build_demo, slot_updates
from tcmoa import TASKS
from tcmoa.pipeline import FusionMaps
from tcmoa.visualize import map_cells, prompt_figure, routing_figure, save_map_images


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gr.Warning outside a request
        return cb.fuse_view(engine, slots, task, alpha, beta, **kw)


def assert_failed(view, *words):
    assert view.fused is None and view.prompts is None and view.comparison is None
    assert view.status.startswith("⚠️ **Cannot fuse:**"), view.status
    assert "Traceback" not in view.status
    for word in words:
        assert word.lower() in view.status.lower(), (word, view.status)


# ------------------------------------------------------------------------------ fusion
def test_fusion_outputs(engine, pair):
    view = fuse(engine, [*pair, None, None], alpha=1.5, beta=0.1)
    assert view.fused.shape == (64, 96, 3) and view.fused.dtype == np.uint8
    source, fused = view.comparison
    assert source.shape[:2] == fused.shape[:2] == (64, 96)
    for figure in (view.prompts, view.routing):
        assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3 and figure.shape[0] > 200
    assert view.baselines is None
    for text in ("Fused", "2 sources", "96×64", "CPU", "compact (untrained)", "α = 1.50", "β = +0.10", UNTRAINED_WARNING):
        assert text in view.status, text


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


def test_three_sources_and_compare_index(engine, pair):
    third = np.clip(pair[0] * 0.5, 0, 1)
    view = fuse(engine, [pair[0], None, third, pair[0]], task="mef", compare=3)
    assert "3 sources" in view.status and view.fused is not None
    assert np.array_equal(view.comparison[0], cb.to_display(pair[0]))


def test_baselines_gallery(engine, pair):
    view = fuse(engine, list(pair), baselines=True)
    captions = [c for _, c in view.baselines]
    assert captions == ["TC-MoA (this model)", "Average", "Laplacian pyramid", "Mertens"]
    assert all(img.shape[:2] == (64, 96) and img.dtype == np.uint8 for img, _ in view.baselines)


class SpyFuser:
    """Records the route each fusion used, then fuses as usual."""

    def __init__(self, fuser):
        self.fuser, self.routes = fuser, []

    def fuse(self, *args, **kwargs):
        self.routes.append(kwargs["route"])
        return self.fuser.fuse(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fuser, name)


def test_router_blending(engine, pair):
    spy = SpyFuser(engine.fuser)
    spying = dataclasses.replace(engine, fuser=spy)
    own = fuse(spying, list(pair), task="mri-spect")
    blended = fuse(spying, list(pair), task="mri-spect", blend=True, router_weights=[0.5, 0.5, 0.0, 0.0])
    assert spy.routes == ["medical", [0.5, 0.5, 0.0, 0.0]]
    assert "router `medical`" in own.status and "blended routers" in blended.status
    same = fuse(engine, list(pair), blend=True, router_weights=[1.0, 0.0, 0.0, 0.0])
    assert np.array_equal(fuse(engine, list(pair)).fused, same.fused)  # one-hot vif == the vif router
    assert_failed(fuse(engine, list(pair), blend=True, router_weights=[0, 0, 0, 0]), "positive weight")
    assert_failed(fuse(engine, list(pair), blend=True, router_weights=[float("nan"), 1, 0, 0]), "finite")


# ------------------------------------------------------------------------------ bad input
def test_fewer_than_two_sources(engine, pair):
    assert_failed(fuse(engine, [pair[0], None, None, None]), "at least two", "visible and infrared")
    assert_failed(fuse(engine, [None] * MAX_SOURCES), "got 0")


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
    assert_failed(fuse(engine, [pair[0], small]), "source 2 is 48x32", "Resize sources to source 1")
    view = fuse(engine, [pair[0], small], resize=True)
    assert view.fused.shape[:2] == (64, 96) and "resized from 48x32" in view.status


def test_pixel_and_file_size_limits(engine, pair, tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (8000, 6250)).save(big)  # 50 MP, a small file
    assert_failed(fuse(engine, [pair[0], str(big)]), "50.0 MP", "16.0 MP")
    tiny_limit = dataclasses.replace(engine, max_file_mb=1e-4)
    assert_failed(fuse(tiny_limit, [pair[0], str(big)]), "source 2", "above this demo's limit")


def test_nan_inputs(engine, pair):
    assert_failed(fuse(engine, list(pair), alpha=float("nan")), "α", "finite")
    assert_failed(fuse(engine, list(pair), beta=0.9), "β", "[-0.5, 0.5]")
    assert_failed(fuse(engine, list(pair), alpha="abc"), "α must be a number")
    poisoned = pair[1].copy()
    poisoned[3, 3] = np.nan
    assert_failed(fuse(engine, [pair[0], poisoned]), "source 2", "nan")


def test_unknown_task_and_internal_errors(engine, pair, monkeypatch):
    assert_failed(fuse(engine, list(pair), task="sonar"), "unknown task")
    broken = dataclasses.replace(engine, fuser=None)  # any bug inside: one line, no traceback
    assert_failed(fuse(broken, list(pair)), "internal error (AttributeError)")


def test_notify_raises_a_toast_not_an_exception(engine, pair):
    with pytest.warns(UserWarning, match="at least two"):
        view = cb.fuse_view(engine, [pair[0]], "vif", 1.0, 0.0, notify=True)
    assert view.fused is None


def test_api_fuse(engine, pair):
    out = cb.api_fuse(engine, pair[0], pair[1], "vif", 1.0, 0.0)
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    with pytest.raises(gr.Error, match="two source images"):
        cb.api_fuse(engine, pair[0], None, "vif", 1.0, 0.0)
    with pytest.raises(gr.Error, match="alpha"):
        cb.api_fuse(engine, pair[0], pair[1], "vif", float("inf"), 0.0)


def test_corrupt_upload_reaches_the_callback(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"garbage")
    payload = gr.FileData(path=str(bad), orig_name="x.png")
    assert SourceImage(type="filepath", image_mode=None).preprocess(payload) == str(bad)


# ------------------------------------------------------------------------------ controls
def test_swap_reset_labels_and_slots(engine):
    assert cb.swap_sources("a", "b") == ("b", "a")
    alpha, beta, weights = cb.task_defaults(engine, "mri-pet")
    assert (alpha, beta) == (1.0, 0.0) and weights == [0.0, 0.0, 0.0, 1.0]  # the medical router
    assert cb.slot_labels("vif")[:2] == ["Source 1: visible (A)", "Source 2: infrared (B)"]
    assert cb.slot_labels("mef")[2] == "Source 3: another exposure"
    assert len(cb.slot_labels("mff")) == MAX_SOURCES
    assert "zero-shot" in cb.task_info(engine, "mri-ct") and "trained task" in cb.task_info(engine, "vif")
    assert cb.count_sources(["a", "b", None, None]) == 2 and cb.count_sources(["a", "b", "c", None]) == 3
    n, third, fourth, choices = slot_updates(9)
    assert n == MAX_SOURCES and third["visible"] and fourth["visible"] and len(choices["choices"]) == 4
    n, third, fourth, _ = slot_updates(1)
    assert n == 2 and third == {"__type__": "update", "visible": False, "value": None}


def test_compare_view(engine, pair):
    fused = np.zeros((64, 96, 3), np.uint8)
    source, same = cb.compare_view([pair[0], pair[1], None, None], fused, 2, engine.max_pixels)
    assert source.shape == (64, 96) and same is not None
    assert cb.compare_view([pair[0], None], None, 1, engine.max_pixels) is None


def test_examples_cover_every_task_and_are_small():
    sets = find_examples()
    assert {s.task for s in sets} == set(TASKS)
    for s in sets:
        assert sum(f.stat().st_size for f in s.files) < 400_000, s.name
        for f in s.files:
            with Image.open(f) as im:
                assert max(im.size) <= 512, f
        row = s.row()
        assert row[0] == s.task and len(row) == 1 + MAX_SOURCES
    assert any(len(s.files) == 3 for s in sets)


def test_build_demo_wiring(engine):
    demo = build_demo(engine)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert fns["fuse"].api_visibility == "public"  # the /fuse endpoint for gradio_client
    live = fns["live_fuse"]
    assert live.trigger_mode == "always_last"  # while one runs, only the latest slider value waits
    assert len(live.targets) == MAX_SOURCES + 6 + len(engine.router_names)  # slots, task, α, β, 3 boxes, routers
    for name in ("live_fuse", "fuse_button", "fuse", "compare"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("fusion", FUSION_CONCURRENCY)


def test_concurrent_users_get_their_own_results(engine, pair):
    settings = [(0.5, -0.2), (2.5, 0.3), (1.0, 0.0), (3.0, -0.5)]
    alone = [fuse(engine, list(pair), alpha=a, beta=b).fused for a, b in settings]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda s: fuse(engine, list(pair), alpha=s[0], beta=s[1]).fused, settings))
    for one, other in zip(alone, together):
        assert np.array_equal(one, other)


# ------------------------------------------------------------------------------ figures
def fake_maps(h=40, w=56, modules=8, experts=4):
    rng = np.random.default_rng(1)
    gh, gw = -(-h // 8), -(-w // 8)
    names = [f"encoder {i + 1}" for i in range(modules - 2)] + ["decoder 1", "decoder 2"]
    gates = rng.random((modules, experts, gh, gw)).astype(np.float32)
    return FusionMaps(names, rng.random((modules, gh, gw)).astype(np.float32),
                      rng.random((modules, gh, gw)).astype(np.float32), gates, (h, w), 8)


def test_figures_shapes_and_files(tmp_path):
    maps = fake_maps()
    for figure in (prompt_figure(maps, np.zeros((40, 56), np.float32)), prompt_figure(maps), routing_figure(maps)):
        assert figure.dtype == np.uint8 and figure.shape[1] == 760 and figure.shape[2] == 3
    paths = save_map_images(maps, [np.zeros((40, 56, 3), np.float32)], tmp_path, ("visible", "infrared"))
    assert [p.name for p in paths] == ["prompts.png", "routing.png"]
    assert all(Image.open(p).size[0] == 760 for p in paths)
    assert map_cells(np.ones((2, 300, 200)), 96).shape == (2, 75, 50)
