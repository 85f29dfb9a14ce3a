"""What one request may ask of the shared demo: source count, pixels, working and preview resolution,
small images, strict flags, the full-resolution action (progress, cancel, named file), the PNG shown for an
upload the browser cannot show. No browser."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo import callbacks as cb
from demo import downloads
from demo.api import api_fuse
from demo.control_events import shown_upload
from demo.engine import MAX_SOURCES, MIN_SIDE, PREVIEW_PIXELS, WORKING_PIXELS, load_engine
from demo.sources import scaled_to, strict_bool
from tcmoa.imaging import read_image


@pytest.fixture(scope="module")
def engine():
    return load_engine("compact", "cpu")


def scene(h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((h, w, 3), dtype=np.float32), rng.random((h, w), dtype=np.float32)]


def api_error(engine, *args, **kwargs) -> str:
    with pytest.raises(gr.Error) as caught:
        api_fuse(engine, *args, **kwargs)
    return str(caught.value)


def test_source_cap_is_the_same_on_the_page_and_in_fuse(engine):
    many = [scene(48, 48)[1]] * (MAX_SOURCES + 2)  # 10 sources: /fuse accepted them, the page had 4 slots
    message = f"at most {MAX_SOURCES} sources at once, got {MAX_SOURCES + 2}"
    assert message in api_error(engine, many, "mef", 1.0, 0.0)
    assert message in cb.final_view(cb.fuse_steps(engine, many, "mef", 1.0, 0.0)).status
    image, report = api_fuse(engine, many[:MAX_SOURCES], "mef", 1.0, 0.0)
    assert report["sources"] == MAX_SOURCES == 8


def test_pixel_budget_over_all_sources_is_checked_on_headers(engine, tmp_path):
    files = []
    for k in range(3):  # 3 x 12 MP: each within the 16 MP per source, 36 MP together
        files.append(tmp_path / f"{k}.png")
        Image.new("L", (4000, 3000)).save(files[-1])
    small = dataclasses.replace(engine, fuser=None)  # nothing may be decoded or fused: the headers decide
    status = cb.final_view(cb.fuse_steps(small, [str(f) for f in files], "mef", 1.0, 0.0)).status
    assert "3 sources hold 36.0 MP together, above this demo's limit of 32 MP per request" in status


def test_large_sources_fuse_at_the_working_resolution_and_fuse_full_at_their_own(engine):
    big = scene(1200, 1600)  # 1.9 MP
    view = cb.final_view(cb.fuse_steps(engine, big, "vif", 1.0, 0.0))
    assert isinstance(view.fused, np.ndarray), view.status
    h, w = view.fused.shape[:2]
    assert h * w <= WORKING_PIXELS and abs(w / h - 4 / 3) < 0.01
    assert "working resolution" in view.status and "1600×1200" in view.status
    image, report = api_fuse(engine, big, "vif", 1.0, 0.0)
    assert report["size"] == [w, h] and report["source_size"] == [1600, 1200]
    assert any("/fuse_full" in note for note in report["notes"])
    image, report = api_fuse(engine, big, "vif", 1.0, 0.0, full_resolution=True)
    assert image.shape[:2] == (1200, 1600) and report["size"] == [1600, 1200]
    assert report["metrics_size"] == [w, h]  # metrics on working-size copies: bounded time and memory


def test_preview_is_small_and_leaves_the_rest(engine):
    pair = scene(480, 640)
    view = cb.preview_view(engine, pair, "vif", 2.0, 0.1)
    assert isinstance(view.fused, np.ndarray), view.status
    h, w = view.fused.shape[:2]
    assert h * w <= PREVIEW_PIXELS and view.status.startswith("**Preview**") and "α = 2.00" in view.status
    assert all(v is cb.SKIP for v in view[3:])  # metrics, maps, the kept fusion: the final fusion brings them
    refused = cb.preview_view(engine, pair, "vif", 9, 0.1)  # a typed 9: refused, the sliders go back
    assert "alpha must be a number in [0, 3], got 9" in refused.status and refused.alpha == 1.0


@pytest.mark.parametrize("side", [8, 30, MIN_SIDE - 1])
def test_small_images_get_one_clear_message_everywhere(engine, side):
    """The reported defect: under 41 px the page said 'metrics unavailable: internal error (ValueError)',
    the sweep failed and /fuse answered Gradio's generic error."""
    tiny = scene(side, side + 10)
    message = f"needs at least {MIN_SIDE} px on each side"
    assert message in cb.final_view(cb.fuse_steps(engine, tiny, "vif", 1.0, 0.0)).status
    assert message in cb.sweep_view(engine, tiny, "vif", 1.0, 0.0, "beta", "SSIM")[2]
    assert message in api_error(engine, tiny, "vif", 1.0, 0.0)
    view = cb.final_view(cb.fuse_steps(engine, scene(MIN_SIDE, MIN_SIDE), "mef", 1.0, 0.0))
    assert view.metrics is not None, view.status
    assert "MEF-SSIM" in view.metrics and "unavailable" not in view.metrics  # the smallest accepted size works


def test_thin_images_keep_the_smallest_side_when_scaled():
    thin = scene(60, 16000)  # 0.96 MP: the sweep's 0.26 MP would make it 2 px high
    small = scaled_to(thin, 262_144)
    assert small[0].shape[0] >= MIN_SIDE and small[0].shape == small[1].shape + (3,)


def test_resize_flag_is_parsed_strictly(engine):
    pair = scene(64, 96)
    other = scene(48, 64)[1]
    assert "resize must be true or false, got 'yes please'" in api_error(engine, [pair[0], other], "vif", 1.0, 0.0,
                                                                           "", "yes please")
    # "false" was read as true: the mismatch was silently resized
    assert "or resize=True)" in api_error(engine, [pair[0], other], "vif", 1.0, 0.0, "", "false", "off")
    assert [strict_bool(v, "x") for v in (True, "True", "1", 1, False, "false", "0", 0)] == [True] * 4 + [False] * 4
    with pytest.raises(ValueError):
        strict_bool(2, "x")


def test_full_resolution_action_names_its_file_reports_progress_and_cancels(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "OUTPUT_DIR", tmp_path)
    pair = scene(100, 140)
    fractions: list[float] = []
    path, status = downloads.full_view(engine, pair, "vif", 1.25, -0.1, progress=fractions.append)
    assert path is not None, status
    assert Path(path).name == "fused_full_vif_a1.25_b-0.10.png" and Image.open(path).size == (140, 100)
    assert fractions and fractions[-1] == 1.0 and "Full resolution" in status

    def cancel(_fraction):
        raise downloads.Cancelled

    assert downloads.full_view(engine, pair, "vif", 1.0, 0.0, progress=cancel) == (
        None, "Full-resolution fusion cancelled.")
    path, status = downloads.full_view(engine, pair[:1], "vif", 1.0, 0.0)
    assert path is None and status == "**Add a second source** to fuse: upload Source 2: infrared (B)."


def test_named_outputs_are_removed_after_an_hour(tmp_path):
    first = Path(downloads.named_png(np.zeros((4, 4), np.float32), "fused_vif_a1.00_b+0.00.png", tmp_path))
    assert first.name == "fused_vif_a1.00_b+0.00.png"
    old = time.time() - downloads.KEEP_S - 10
    os.utime(first.parent, (old, old))
    second = Path(downloads.named_png(np.zeros((4, 4), np.float32), "fused_vif_a1.00_b+0.00.png", tmp_path))
    assert second.exists() and not first.exists()  # same name, another folder; the old one is gone


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow on the broken file below
def test_a_tiff_upload_is_shown_as_a_png_of_the_same_pixels(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    rotated = tmp_path / "rotated.tif"  # EXIF orientation 6: read_image turns it, so must the copy
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(rotated, exif=exif)
    twelve_bit = tmp_path / "ir12.tif"  # 16-bit container, 12-bit data: the same note either way
    Image.frombytes("I;16", (64, 48), (rng.random((48, 64)) * 4095).astype("<u2").tobytes()).save(twelve_bit)
    for upload in (rotated, twelve_bit):
        copy = downloads.browser_copy(str(upload), folder=tmp_path / "out")
        assert copy is not None and Image.open(copy).format == "PNG"
        notes_upload: list[str] = []
        notes_copy: list[str] = []
        np.testing.assert_array_equal(read_image(copy, notes=notes_copy), read_image(upload, notes=notes_upload))
        assert [n.split(": ", 1)[1] for n in notes_copy] == [n.split(": ", 1)[1] for n in notes_upload]
        assert shown_upload(str(upload)) not in (None, cb.SKIP)
    turned = downloads.browser_copy(str(rotated), folder=tmp_path / "out")
    assert turned is not None and read_image(turned).shape[:2] == (64, 48)
    # shown as they are: what browsers show, what PNG cannot hold exactly, and what Pillow cannot read
    png, floats, corrupt = tmp_path / "a.png", tmp_path / "f.tif", tmp_path / "bad.tif"
    rgb.save(png)
    Image.fromarray(rng.random((48, 64)).astype(np.float32)).save(floats)
    corrupt.write_bytes(b"II*\x00 not really a tiff")
    for path in (png, floats, corrupt):
        assert downloads.browser_copy(str(path), folder=tmp_path / "out") is None
        assert shown_upload(str(path)) is cb.SKIP
    assert shown_upload(None) is cb.SKIP


def test_add_source_says_why_at_the_cap():
    # "+ Add source" with every slot open used to do nothing, silently: now it says why.
    assert cb.add_source_note(MAX_SOURCES - 1) is None
    note = cb.add_source_note(MAX_SOURCES)
    assert note is not None and str(MAX_SOURCES) in note and "remove one" in note
