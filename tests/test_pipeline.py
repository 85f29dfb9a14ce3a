"""The inference pipeline on real-world inputs: colour, sizes, tiles, N > 2 sources, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tcmoa.model.checkpoint import load_model
from tcmoa.imaging import MIN_SIDE, ImageError, image_files, read_image, resize_to, rgb_to_ycbcr
from tcmoa.fuse.pipeline import Fuser, canonical_order
from tcmoa.tasks import get_preset
from tcmoa.fuse.tiling import plan_tiles

from .conftest import REPO


@pytest.fixture(scope="module")
def fuser():
    return Fuser(load_model("compact"), device="cpu")


def test_limits_that_refuse_everything_are_refused_up_front(fuser):
    for max_pixels, tile_batch in ((0, 4), (-1, 4), (10**6, 0)):
        with pytest.raises(ValueError, match="max_pixels and tile_batch must be at least 1"):
            Fuser(fuser.model, device="cpu", max_pixels=max_pixels, tile_batch=tile_batch)


def smooth_image(h, w, colour=True, seed=0):
    """A natural-ish test image: smooth colour gradients plus some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = [0.5 + 0.4 * np.sin(6 * x + 3 * y + k) for k in range(3 if colour else 1)]
    img = np.stack(base, -1) + 0.03 * rng.standard_normal((h, w, len(base)))
    img = np.clip(img, 0, 1).astype(np.float32)
    return img if colour else img[..., 0]


def test_grey_and_colour_source_keeps_the_colour(fuser):
    visible, infrared = smooth_image(70, 90), smooth_image(70, 90, colour=False, seed=1)
    result = fuser.fuse([visible, infrared], "vif")
    assert result.image.shape == (70, 90, 3) and result.image.dtype == np.float32
    _, cb_out, cr_out = rgb_to_ycbcr(result.image)
    _, cb_in, cr_in = rgb_to_ycbcr(visible)
    # Chroma is the visible image's, except where restoring it leaves the RGB gamut.
    assert np.median(np.abs(cb_out - cb_in)) < 1e-3 and np.median(np.abs(cr_out - cr_in)) < 1e-3
    grey = fuser.fuse([visible, infrared], "vif", colour="grey")
    assert grey.image.shape == (70, 90)
    # The official path: RGB in (infrared replicated), RGB out, chroma not preserved.
    official = fuser.fuse([visible, infrared], "vif", colour="rgb").image
    direct = fuser.fuse([visible, np.repeat(infrared[..., None], 3, -1) + 0.0], "vif", colour="rgb").image
    assert official.shape == (70, 90, 3) and np.array_equal(official, direct)
    assert np.abs(official - result.image).mean() > 1e-3
    with pytest.raises(ValueError, match="colour must be one of"):
        fuser.fuse([visible, infrared], "vif", colour="sepia")


def test_colour_pairs_stay_colour_and_grey_pairs_grey(fuser):
    assert fuser.fuse([smooth_image(64, 64), smooth_image(64, 64, seed=2)], "mef").image.shape == (64, 64, 3)
    grey = [smooth_image(50, 46, colour=False), smooth_image(50, 46, colour=False, seed=3)]
    assert fuser.fuse(grey, "mri-ct").image.shape == (50, 46)


@pytest.mark.parametrize("h, w", [(MIN_SIDE, MIN_SIDE), (97, 131), (64, 320)])
def test_output_has_the_sources_size(fuser, h, w):
    result = fuser.fuse([smooth_image(h, w), smooth_image(h, w, seed=1)], "mff", maps=True)
    assert result.image.shape == (h, w, 3)
    maps = result.maps
    assert maps.at_image_size(maps.prompt_a).shape == (3, h, w)
    assert maps.gates.shape[:2] == (3, 4)
    np.testing.assert_allclose(maps.expert_share().sum(1), 1, rtol=1e-5)
    assert ((0 <= maps.source_a_share()) & (maps.source_a_share() <= 1)).all()


def test_cpu_inference_is_deterministic(fuser):
    pair = [smooth_image(64, 128), smooth_image(64, 128, seed=4)]
    assert np.array_equal(fuser.fuse(pair, "vif").image, fuser.fuse(pair, "vif").image)


def test_tiles_cover_the_image_on_the_token_grid():
    tiles = plan_tiles(1000, 700, 448 * 448, overlap=64, align=8, multiple=64)
    covered = np.zeros((1000, 700), bool)
    for t in tiles:
        assert t.top % 8 == 0 or t.top + t.height == 1000
        covered[t.top:t.top + t.height, t.left:t.left + t.width] = True
    assert covered.all()


def test_blender_cross_fades_between_tiles():
    from tcmoa.fuse.tiling import Tile, TileBlender

    blend = TileBlender(1, 8, 200, 1.0, overlap_px=40, device=torch.device("cpu"))
    blend.add(Tile(0, 0, 8, 120), torch.zeros(1, 8, 120))
    blend.add(Tile(0, 80, 8, 120), torch.ones(1, 8, 120))
    row = blend.result()[0, 0].numpy()
    assert row[:80].max() == 0 and row[120:].min() == 1
    steps = np.diff(row)
    assert (steps >= -1e-7).all() and steps.max() < 3 / 40  # monotone, no step bigger than a smooth ramp's


def seam_jump(image: np.ndarray, columns: list[int]) -> float:
    """Step of the column-mean profile across the given columns, relative to the typical step.

    Averaging down each column cancels texture noise but keeps an offset between tiles.
    """
    profile = image.astype(np.float64).mean(axis=0)  # (W, C)
    steps = np.abs(np.diff(profile, axis=0)).mean(axis=1)
    return float(np.mean([steps[c - 1] for c in columns]) / np.median(steps))


def tile_edges(tiles, width):
    return sorted({t.left for t in tiles if t.left} | {t.left + t.width for t in tiles if t.left + t.width < width})


def test_tiled_fusion_has_no_seams():
    # official-tiny's absolute positions make every tile see different positions than the whole
    # image, so tiles disagree clearly: a fair test of the blending.
    model = load_model("official-tiny")
    pair = [smooth_image(224, 672), smooth_image(224, 672, seed=5)]
    whole = Fuser(model, tile_size=1024).fuse(pair, "mef").image
    hard = Fuser(model, tile_size=224, tile_overlap=0)
    blended = Fuser(model, tile_size=224, tile_overlap=112)
    hard_diff = hard.fuse(pair, "mef").image - whole
    blended_diff = blended.fuse(pair, "mef").image - whole
    # Hard-pasted tiles jump at their edges: the measure sees that seam...
    assert seam_jump(hard_diff, tile_edges(plan_tiles(224, 672, 224 * 224, 0, 8, 112), 672)) > 2.0
    # ...while blended tiles' edges look like any other column. Measured 1.08 (deterministic, official-tiny
    # on CPU); with the fade ramps reversed 1.87, hard-pasted 2.78: 1.2 leaves ~10% for other CPUs and BLAS.
    assert seam_jump(blended_diff, tile_edges(plan_tiles(224, 672, 224 * 224, 112, 8, 112), 672)) < 1.2


def test_focal_stack_result_does_not_depend_on_upload_order(fuser):
    scene = REPO / "demo/examples/mff/lytro_triple_02"  # a bundled 3-plane Lytro stack
    stack = [resize_to(read_image(path), (128, 160)) for path in image_files(scene).values()]
    assert len(stack) == 3
    results = [fuser.fuse([stack[i] for i in order], "mff").image for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0])]
    for other in results[1:]:
        assert np.abs(other - results[0]).max() < 1e-6


def test_exposure_brackets_are_fused_brightest_first():
    mef = get_preset("mef")
    dark, mid, bright = (np.full((8, 8), v, np.float32) for v in (0.1, 0.5, 0.9))
    assert canonical_order([dark, bright, mid], mef) == [1, 2, 0]
    assert canonical_order([dark, bright, mid], get_preset("vif")) == [0, 1, 2]  # roles keep the user's order


def test_bad_inputs_get_specific_errors(fuser, tmp_path):
    img = smooth_image(48, 48)
    with pytest.raises(ImageError, match="at least 2 source images, got 1"):
        fuser.fuse([img], "vif")
    with pytest.raises(ImageError, match="source 2 is 44x48 but source 1 is 48x48"):
        fuser.fuse([img, smooth_image(48, 44)], "vif")
    assert fuser.fuse([img, smooth_image(56, 44)], "vif", resize="first").image.shape == (48, 48, 3)
    with pytest.raises(ImageError, match=rf"^source 2: the image array: image is 8x8 px; fusion needs at least {MIN_SIDE} px"):
        fuser.fuse([img, smooth_image(8, 8)], "vif", resize="first")  # too small to fuse or score, resized or not
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="source 2"):
        fuser.fuse([img, corrupt], "vif")
    nan = img.copy()
    nan[3, 3] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        fuser.fuse([img, nan], "vif")
    big = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(big)
    with pytest.raises(ImageError, match="limit"):
        Fuser(fuser.model, max_pixels=50_000).fuse([big, big], "vif")
    with pytest.raises(ValueError, match="unknown task"):
        fuser.fuse([img, img], "pansharpening")
    for knobs, message in (({"alpha": float("nan")}, r"alpha must be a number in \[0, 3\], got nan"),
                           ({"alpha": 1e9}, "alpha must be a number in"), ({"alpha": -1}, "got -1"),
                           ({"beta": -50}, r"beta must be a number in \[-0.5, 0.5\], got -50")):
        with pytest.raises(ValueError, match=message):  # the library's one range, as every entry point uses
            fuser.fuse([img, img], "vif", **knobs)


def test_source_weight_map_follows_beta_and_is_none_for_the_official_decoder(fuser):
    pair = [smooth_image(70, 90), smooth_image(70, 90, colour=False, seed=1)]
    towards_a, towards_b = (fuser.fuse(pair, "vif", beta=b, maps=True).maps.source_weight for b in (0.3, -0.3))
    assert towards_a.shape == (70, 90) and 0 <= towards_b.min() and towards_a.max() <= 1
    # beta shifts every logit of the weight by 2 * gain * beta: A gains weight at every pixel
    assert towards_a.min() > 0.5 > towards_b.max()
    tiled = Fuser(fuser.model, device="cpu", tile_size=64).fuse(pair, "vif", beta=0.3, maps=True).maps
    assert tiled is not None
    assert np.abs(tiled.source_weight - towards_a).mean() < 0.05  # blended across tiles like the image
    official = Fuser(load_model("official-tiny"), device="cpu").fuse(pair, "vif", maps=True)
    assert official.maps is not None and official.maps.source_weight is None


def test_size_mismatch_names_the_way_to_resize(fuser):
    from tcmoa.colour import SizeMismatchError

    with pytest.raises(SizeMismatchError) as caught:
        fuser.fuse([smooth_image(48, 56), smooth_image(44, 56)], "vif")
    assert str(caught.value).endswith("(or resize='first')")
    assert caught.value.explain("or --resize first").startswith("source 2 is 56x44 but source 1 is 56x48")
    import pickle

    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses process boundaries


def test_official_resize_path_matches_the_official_recipe():
    """fit='resize': bilinear up to whole windows, the model, bilinear (antialiased) back."""
    import torch.nn.functional as F

    from tcmoa.model.network import normalize

    model = load_model("official-tiny")
    a, b = smooth_image(100, 150), smooth_image(100, 150, seed=7)
    result = Fuser(model, fit="resize").fuse([a, b], "mef", maps=True)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None] for x in (a, b))
    up = [F.interpolate(normalize(x), size=(112, 224), mode="bilinear", align_corners=False) for x in (ta, tb)]
    with torch.no_grad():
        fused = model(*up, "mef").fused
    expected = F.interpolate(fused, size=(100, 150), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_allclose(result.image, expected[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-5)
    assert result.maps is not None
    assert result.maps.prompt_a.shape[1:] == (13, 19)  # the 14x28 grid resampled onto 8-px cells
    padded = Fuser(model).fuse([a, b], "mef").image
    assert np.abs(padded - result.image).mean() > 1e-3  # the two fits really differ for this model
    with pytest.raises(ValueError, match="fit must be one of"):
        Fuser(model, fit="stretch")


def test_reduced_precision_is_refused_on_cpu():
    with pytest.raises(ValueError, match="for GPUs"):
        Fuser(load_model("compact"), device="cpu", precision="bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_bf16_matches_cpu_closely():
    model = load_model("compact")
    pair = [smooth_image(128, 192), smooth_image(128, 192, seed=6)]
    cpu = Fuser(model, device="cpu").fuse(pair, "vif").image
    gpu = Fuser(load_model("compact"), device="cuda", precision="bf16").fuse(pair, "vif").image
    assert np.abs(cpu - gpu).mean() < 0.02


def test_the_result_carries_what_was_decided(fuser):
    mri, pet = smooth_image(48, 64, colour=False), smooth_image(44, 56, seed=5)
    result = fuser.fuse([mri, pet], "MRI-PET", resize="first", maps=True)
    s = result.settings
    assert (s.preset.key, s.alpha, s.beta, s.route, s.resize) == ("mri-pet", 2.0, -0.1, "medical", "first")
    assert [im.shape[:2] for im in result.sources] == [(48, 64), (48, 64)]  # size-matched, as fused
    assert np.array_equal(result.sources[0], mri) and result.order == [0, 1]
    assert result.mapped_pair is not None and np.array_equal(result.mapped_pair[0], mri)
    blended = fuser.fuse([mri, result.sources[1]], "mri-pet", route=[0.5, 0, 0, 0.5]).settings
    assert blended.route == [0.5, 0, 0, 0.5]
    with pytest.raises(ValueError, match="weights in router order \\(vif, mef, mff, medical\\)"):
        fuser.fuse([mri, result.sources[1]], "mri-pet", route={"vif": 1.0})  # a dict: one clear message
    # Settings made once and reused give the same fusion; knobs are given one way at a time.
    settings = fuser.settings("mef", beta=0.1)
    dark, bright = smooth_image(48, 48) * 0.3, smooth_image(48, 48, seed=1) * 0.4 + 0.6
    again = fuser.fuse([dark, bright], settings, maps=True)
    assert np.array_equal(again.image, fuser.fuse([dark, bright], "mef", beta=0.1).image)
    assert again.order == [1, 0] and np.array_equal(again.mapped_pair[0], again.sources[1])  # brightest is A
    with pytest.raises(ValueError, match="not both"):
        fuser.fuse([dark, bright], settings, alpha=1.0)
    # Three sources: the note gives the order, and speaks of maps only when they were made.
    three = [dark, bright, smooth_image(48, 48, seed=2) * 0.6]
    assert fuser.fuse(three, "mef").notes == ["3 sources fused pairwise in order [2, 3, 1]"]
    assert fuser.fuse(three, "mef", maps=True).notes[-1].endswith("; the maps show the last step")


def test_source_count_and_size_have_one_message_everywhere(fuser):
    from tcmoa.colour import check_sources
    from tcmoa.metrics.baselines import run_baseline

    one, small = smooth_image(48, 48), smooth_image(44, 48)
    for call in (lambda: fuser.fuse([one], "vif"), lambda: check_sources([one]), lambda: run_baseline("average", [one], "vif")):
        with pytest.raises(ImageError, match=r"^fusion needs at least 2 source images, got 1$"):
            call()
    for call in (lambda: fuser.fuse([one, small], "vif"), lambda: check_sources([one, small])):
        with pytest.raises(ImageError, match=r"^source 2 is 48x44 but source 1 is 48x48 \(width x height\); fusion"):
            call()


def test_sweep_settings_vary_one_knob_by_its_one_name(fuser):
    from tcmoa.fuse.sweeps import sweep_settings

    base = fuser.settings("mri-pet", route=[0.5, 0, 0, 0.5])
    betas = sweep_settings(base, "beta", [-0.2, 0.0, 0.3])
    assert [s.beta for s in betas] == [-0.2, 0.0, 0.3] and {(s.alpha, s.preset.key) for s in betas} == {(2.0, "mri-pet")}
    assert all(s.route == [0.5, 0, 0, 0.5] for s in betas)  # everything else as decided
    assert [s.alpha for s in sweep_settings(base, "alpha", [0, 3])] == [0.0, 3.0]
    with pytest.raises(ValueError, match="a sweep varies beta or alpha, not 'β'"):
        sweep_settings(base, "β", [0.1])
    with pytest.raises(ValueError, match=r"beta must be a number in \[-0.5, 0.5\], got 0.9"):
        sweep_settings(base, "beta", [0.9])
