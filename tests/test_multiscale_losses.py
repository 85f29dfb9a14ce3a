"""Our loss terms (tcmoa/train/multiscale_losses.py) and the "tcmoa" recipe that uses them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tcmoa.train.loss_weights import LOSS_WEIGHTS, LOSS_WEIGHTS_2024, LOSS_WEIGHTS_2025
from tcmoa.train.losses import task_loss
from tcmoa.model import pyramid
from tcmoa.model.pyramid_head import luma
from tcmoa.metrics import matlab as mf
from tcmoa.metrics.vifb import mefb_mef_ssim as mefb_mef_ssim_numpy
from tcmoa.train.multiscale_losses import (clip_aware_pixel_loss, detail_targets, differentiable_mefb_mef_ssim,
                                           local_contrast_loss, multiscale_detail_loss)

from .conftest import MEF_SSIM_FIXTURE, REPO, fixture_file

MEF_SSIM_CASES = json.loads(fixture_file(MEF_SSIM_FIXTURE, "expected.json").read_text())["cases"]


def scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A: textured with a white (clipped) disc; B: a different texture everywhere; the disc mask."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    disc = ((yy - 48) ** 2 + (xx - 48) ** 2 <= 24**2).float()
    tex_a = 0.4 + 0.1 * torch.sin(yy * 0.9) + 0.05 * torch.rand(96, 96, generator=g)
    a = torch.where(disc.bool(), torch.ones(()), tex_a).expand(1, 3, 96, 96).clone()
    b = (0.3 + 0.15 * torch.sin(xx * 1.1) * torch.cos(yy * 0.4)).expand(1, 3, 96, 96).clone()
    return a, b, disc.bool()


def test_clip_aware_pixel_loss_does_not_reward_the_white_blob():
    a, b, disc = scene()
    keep_b_inside = torch.where(disc, b, torch.maximum(a, b))
    keep_white = torch.maximum(a, b)  # what the official max-intensity target rewards
    assert clip_aware_pixel_loss(keep_b_inside, a, b) < 1e-3
    assert clip_aware_pixel_loss(keep_white, a, b) > 0.05


def test_detail_loss_prefers_the_source_with_structure_at_every_scale():
    a, b, disc = scene()
    # Inside the glare disc (away from its rim) every level's target is B's band; far outside, A's
    # texture (the stronger one at the finest level) is the target there.
    targets = detail_targets(a, b)
    pb = pyramid.laplacian(luma(b), 5)
    rim_free = torch.nn.functional.max_pool2d((~disc).float()[None, None], 15, 1, 7)[0, 0] == 0  # >= 7 px inside
    for level, (t, band_b) in enumerate(zip(targets, pb)):
        s = 2**level
        core = (disc & rim_free)[::s, ::s]
        if core.any():
            torch.testing.assert_close(t[0, 0][core], band_b[0, 0][core])
    # Inside the glare (a crop of the disc's core): B's texture costs nothing, the white blob costs.
    inside = (slice(None), slice(None), slice(32, 64), slice(32, 64))
    ca, cb = a[inside], b[inside]
    assert multiscale_detail_loss(cb, ca, cb) < 1e-6
    assert multiscale_detail_loss(ca, ca, cb) > 0.05


def test_contrast_loss_is_a_hinge_on_local_sd():
    a, b, _ = scene()
    flat = torch.full_like(a, 0.5)
    assert local_contrast_loss(flat, a, b) > 0.05
    stronger = (b - 0.3) * 2 + 0.5  # B's texture at twice the contrast: never penalised for more
    assert local_contrast_loss(stronger, torch.full_like(a, 0.4), b) < 1e-5  # 0 up to the sqrt's epsilon


def test_gradients_reach_the_fused_image_only():
    a, b, _ = scene()
    f = ((a + b) / 2).requires_grad_()
    (clip_aware_pixel_loss(f, a, b) + multiscale_detail_loss(f, a, b) + local_contrast_loss(f, a, b)).backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0


def test_official_recipes_leave_our_terms_out_and_ours_logs_them():
    for weights in (LOSS_WEIGHTS_2024, LOSS_WEIGHTS_2025):
        for phase in (weights.vif, weights.mef, weights.mff, weights.vif_warmup):
            assert phase.clip_pixel == phase.detail == phase.contrast == phase.mefb_ssim == 0.0
    ours = LOSS_WEIGHTS["tcmoa"]
    assert ours.vif.max_pixel == 0.0 and ours.vif.clip_pixel > 0  # max-intensity swapped for its clip-aware form
    a, b, _ = scene()
    prompts = [(torch.full((1, 144, 1), 0.5), torch.full((1, 144, 1), 0.5))]
    terms = task_loss("vif", (a + b) / 2, a, b, prompts, prompts, 0.0, 5, "tcmoa")
    assert {"clip_pixel_loss", "detail_loss", "contrast_loss"} <= set(terms)
    total = 1.0 * terms["max_grad_loss"] + 1.5 * terms["clip_pixel_loss"] + terms["ssim_loss"] + \
        5 * terms["detail_loss"] + 5 * terms["contrast_loss"] + terms["prompt_loss"]
    torch.testing.assert_close(terms["loss"], total)
    assert "detail_loss" not in task_loss("vif", (a + b) / 2, a, b, prompts, prompts, 0.0, 5, "2025")


def exposure_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A textured scene (B, 3, 64, 80) seen bright (clipping) and dark, and the scene itself."""
    g = torch.Generator().manual_seed(5)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing="ij")
    scene_ = (0.5 + 0.3 * torch.sin(xx / 5) * torch.cos(yy / 7) + 0.1 * torch.rand(64, 80, generator=g))
    scene_ = torch.stack([scene_, scene_ * 0.9, scene_ * 0.8])[None]
    return (scene_ * 1.8).clamp(max=1), scene_ * 0.35, scene_


def test_mefb_mef_ssim_matches_the_metric_and_has_gradients():
    # The training form of MEFB's MEF-SSIM must be the metric we are scored with (tcmoa.metrics).
    over, under, scene_ = exposure_pair()
    for fused in (scene_.clamp(0, 1), (over + under) / 2, over):
        ref = mefb_mef_ssim_numpy(luma(fused)[0, 0].double().numpy() * 255,
                                  [luma(x)[0, 0].double().numpy() * 255 for x in (over, under)])
        assert float(differentiable_mefb_mef_ssim(fused, [over, under])) == pytest.approx(ref, abs=1e-6)
    f = ((over + under) / 2).requires_grad_()
    (1 - differentiable_mefb_mef_ssim(f, [over, under])).sum().backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0


def test_our_mef_recipe_scores_structure_with_mefb_mef_ssim():
    # MEFB's form (no luminance term) replaces the official single-scale MEF-SSIM in our recipe.
    ours = LOSS_WEIGHTS["tcmoa"].mef
    assert ours.mefb_ssim > 0 and ours.mef_ssim == 0
    over, under, _ = exposure_pair()
    prompts = [(torch.full((1, 80, 1), 0.5), torch.full((1, 80, 1), 0.5))]
    terms = task_loss("mef", (over + under) / 2, over, under, prompts, prompts, 0.0, 5, "tcmoa")
    torch.testing.assert_close(terms["MEFB_SSIM_loss"],
                               1 - differentiable_mefb_mef_ssim((over + under) / 2, [over, under]).float().mean())


def _rgb_batch(path) -> torch.Tensor:
    """An 8-bit RGB file as a (1, 3, H, W) float64 batch in [0, 1]."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float64) / 255).permute(2, 0, 1)[None]


@pytest.mark.parametrize("case", MEF_SSIM_CASES[:2] + MEF_SSIM_CASES[-1:], ids=lambda c: c["name"])
def test_the_training_mef_ssim_is_the_metric_on_bundled_stacks(case):
    # The loss and the metric share their constants (tcmoa.metrics.vifb.MEF_SSIM_*) and must compute the
    # same number. On the same luma: equal within 1e-12 (observed <= 1e-15, the filters' summation order).
    fused, sources = _rgb_batch(REPO / case["fused"]), [_rgb_batch(REPO / s) for s in case["sources"]]
    grey = lambda x: luma(x)[0, 0].double().numpy() * 255  # noqa: E731
    metric = mefb_mef_ssim_numpy(grey(fused), [grey(s) for s in sources])
    assert float(differentiable_mefb_mef_ssim(fused, sources)) == pytest.approx(metric, abs=1e-12)
    # On grey images it is the authors' code's number (Octave fixture) within 1e-8: the loss's float32
    # luma of R = G = B is the grey level to ~1e-7 relative (observed <= 3.1e-9 on the fixture's cases).
    as_grey = [torch.from_numpy(mf.rgb2gray(x[0].permute(1, 2, 0).numpy() * 255) / 255).expand(1, 3, -1, -1)
               for x in (fused, *sources)]
    assert float(differentiable_mefb_mef_ssim(as_grey[0], as_grey[1:])) == pytest.approx(case["mef_ssim"], abs=1e-8)
