"""The compact models' detail-preserving outputs (tcmoa/model/fusion_head.py): per-band weights (the
shipped "pyramid" head) and per-pixel weights + residual ("source_weights", still loadable)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tcmoa.model import pyramid
from tcmoa.model.checkpoint import load_backbone, load_model, save_model
from tcmoa.model.config import get_config
from tcmoa.model.fusion_head import PROMPT_GAIN, PyramidHead, SourceWeightHead
from tcmoa.model.moa import PromptControl
from tcmoa.model.network import TCMoA, normalize

SOURCE_WEIGHTS = dataclasses.replace(get_config("compact"), fusion_output="source_weights")


@pytest.fixture(scope="module")
def compact(single_thread) -> TCMoA:
    torch.manual_seed(0)
    return TCMoA(SOURCE_WEIGHTS).eval()


@pytest.fixture(scope="module")
def pyr(single_thread) -> TCMoA:
    torch.manual_seed(0)
    return TCMoA(get_config("compact")).eval()


@pytest.fixture(scope="module")
def sources() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 64, 128, generator=g), torch.rand(2, 3, 64, 128, generator=g)


def source_head(model: TCMoA) -> SourceWeightHead:
    """The model's per-pixel weight head (a "source_weights" model)."""
    head = model.fusion_head
    assert isinstance(head, SourceWeightHead), type(head)
    return head


def margin_of(out) -> torch.Tensor:
    return torch.stack([t.prompt_a - t.prompt_b for t in out.traces]).mean(0)


def test_fused_is_a_per_pixel_blend_of_the_sources_plus_residual(compact, sources):
    a, b = sources
    with torch.no_grad():
        out = compact(normalize(a), normalize(b), "vif")
    w = out.source_weight
    assert w.shape == (2, 1, 64, 128) and 0 < float(w.min()) and float(w.max()) < 1
    # Zero-initialised head: no residual, and the weight comes from the prompts alone.
    blend = w * normalize(a) + (1 - w) * normalize(b)
    torch.testing.assert_close(out.pred, blend, atol=1e-5, rtol=0)
    margin = margin_of(out)  # (B, N, 1) on an 8x16 token grid
    token_w = torch.sigmoid(PROMPT_GAIN * margin).reshape(2, 8, 16)
    # At a token's centre (between 4 pixel centres) bilinear upsampling of the margin is exact
    # up to the neighbouring tokens: compare the token means instead.
    pooled = torch.nn.functional.avg_pool2d(w, 8)[:, 0]
    assert float((pooled - token_w).abs().mean()) < 0.05


def test_a_trained_residual_and_logit_change_the_output(compact, sources):
    a, b = sources
    model = TCMoA(SOURCE_WEIGHTS).eval()
    model.load_state_dict(compact.state_dict())
    with torch.no_grad():
        source_head(model).proj.bias.fill_(0.0)
        # Outputs are in unpatchify's (row, col, channel) order; channel 0 is the logit of A.
        source_head(model).proj.bias.view(64, 4)[:, 0] = 20.0  # every pixel: take source A
        out = model(normalize(a), normalize(b), "vif")
    assert float(out.source_weight.min()) > 0.999
    torch.testing.assert_close(out.fused, a, atol=2e-3, rtol=0)


def test_beta_moves_the_weight_towards_source_a(compact, sources):
    a, b = sources
    means = []
    with torch.no_grad():
        for beta in (-0.3, -0.1, 0.0, 0.1, 0.3):
            out = compact(normalize(a), normalize(b), "mef", PromptControl(1.0, beta))
            means.append(float(out.source_weight.mean()))
    assert all(x < y for x, y in zip(means, means[1:])), means
    assert means[-1] > 0.85 and means[0] < 0.15  # beta 0.3 shifts every logit by 2 * gain * 0.3 = 2.4


def test_alpha_zero_removes_the_prompt_preference(compact, sources):
    a, b = sources
    with torch.no_grad():
        out = compact(normalize(a), normalize(b), "mff", PromptControl(0.0, 0.0))
    torch.testing.assert_close(out.source_weight, torch.full_like(out.source_weight, 0.5))


def test_official_models_keep_the_decoder_output():
    model = TCMoA(get_config("official-tiny")).eval()
    assert model.fusion_head is None
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        out = model(normalize(x), normalize(x.flip(-1)))
    assert out.source_weight is None


def test_head_trains_with_tcmoa_and_is_saved_beside_it(compact, tmp_path):
    model = TCMoA(SOURCE_WEIGHTS)
    model.freeze_backbone()
    assert all(p.requires_grad for p in source_head(model).parameters())
    assert not model.decoder_pred.weight.requires_grad
    with torch.no_grad():
        source_head(model).proj.weight.normal_()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    torch.testing.assert_close(source_head(loaded).proj.weight, source_head(model).proj.weight, rtol=0, atol=0)
    # A backbone folder loads into a fresh model: the head stays zero (it is not part of the backbone).
    fresh = TCMoA(SOURCE_WEIGHTS)
    load_backbone(fresh, tmp_path / "m")
    assert not source_head(fresh).proj.weight.detach().any()


# --- the pyramid head (the shipped compact model) -------------------------------------------------
@pytest.mark.parametrize("levels", [1, 3, 5, 7])
def test_pyramid_collapses_back_exactly_at_any_size(levels):
    x = torch.rand(2, 3, 45, 70, dtype=torch.float64)
    torch.testing.assert_close(pyramid.collapse(pyramid.laplacian(x, levels)), x, rtol=0, atol=1e-12)


def test_pyramid_levels_halve_and_the_base_is_a_blur():
    bands = pyramid.laplacian(torch.rand(1, 1, 64, 96), 5)
    assert [tuple(b.shape[-2:]) for b in bands] == [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6)]
    flat = pyramid.laplacian(torch.full((1, 1, 32, 32), 0.3), 3)
    assert all(float(b.abs().max()) < 1e-6 for b in flat[:-1]) and torch.allclose(flat[-1], torch.tensor(0.3))


@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 2), (2, 5), (3, 4), (9, 6)])
def test_tiny_levels_expand_a_constant_to_itself(size):
    # Levels of 1-2 px pad by replication: `up` must still give back a constant (it once gave 4x it,
    # so every band of a flat image was -3x its value and small images fused with wild offsets).
    bands = pyramid.laplacian(torch.full((1, 1, *size), 0.7), 4)
    assert all(float(b.abs().max()) < 1e-6 for b in bands[:-1])
    torch.testing.assert_close(pyramid.up(torch.full((1, 1, 1, 1), 0.7), size), torch.full((1, 1, *size), 0.7))


def test_compact_ships_the_pyramid_head(pyr):
    assert get_config("compact").fusion_output == "pyramid"
    assert type(pyr.fusion_head).__name__ == "PyramidHead"
    assert pyr.fusion_head.clip_gain.shape == (4, 5)  # per router (vif, mef, mff, medical) and level


def forced(model: TCMoA, logit: float) -> TCMoA:
    """A copy whose token logits push every band to one source (+: A, -: B)."""
    m = TCMoA(model.config).eval()
    m.load_state_dict(model.state_dict())
    assert isinstance(m.fusion_head, PyramidHead)
    with torch.no_grad():
        m.fusion_head.token_logits.bias.fill_(logit)
    return m


def test_pyramid_weights_of_one_and_zero_give_back_each_source(pyr, sources):
    a, b = sources
    with torch.no_grad():
        take_a = forced(pyr, 60.0)(normalize(a), normalize(b), "vif")
        take_b = forced(pyr, -60.0)(normalize(a), normalize(b), "vif")
    torch.testing.assert_close(take_a.fused, a, atol=2e-3, rtol=0)
    torch.testing.assert_close(take_b.fused, b, atol=2e-3, rtol=0)


def test_pyramid_takes_the_other_source_inside_glare(pyr):
    # A: white glare disc over a smooth background; B: fine stripes everywhere. Inside the disc the
    # result must keep B's stripes (band energy and the clip term both say so), with no grid.
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    disc = ((yy - 64) ** 2 + (xx - 64) ** 2 <= 30**2).float()
    a = (0.4 + 0.6 * disc + 0.02 * torch.rand(128, 128, generator=g)).clamp(max=1).expand(1, 3, 128, 128)
    b = (0.3 + 0.2 * torch.sin(xx * 1.3)).expand(1, 3, 128, 128)
    with torch.no_grad():
        out = pyr(normalize(a), normalize(b), "vif")
    core = disc.bool()
    core[:, :] &= ((yy - 64) ** 2 + (xx - 64) ** 2 <= 22**2)
    dx = lambda x: (x[0, 0, :, 1:] - x[0, 0, :, :-1]).abs()[core[:, 1:]].mean()  # noqa: E731
    assert float(dx(out.fused) / dx(b)) > 0.8
    assert float(out.fused[0, 0][core].mean()) < 0.95  # not left at the clipped white


def test_pyramid_beta_leans_every_band_towards_a(pyr, sources):
    a, b = sources
    means, dist_a = [], []
    with torch.no_grad():
        for beta in (-0.3, -0.1, 0.0, 0.1, 0.3):
            out = pyr(normalize(a), normalize(b), "mef", PromptControl(1.0, beta))
            means.append(float(out.source_weight.mean()))
            dist_a.append(float((out.fused - a).abs().mean()))
    assert all(x < y for x, y in zip(means, means[1:])), means
    assert all(x > y for x, y in zip(dist_a, dist_a[1:])), dist_a


def test_pyramid_alpha_zero_leaves_a_classical_fusion(pyr, sources):
    # No prompt preference and zero token logits: the base of two unclipped sources is their average.
    a, b = sources
    with torch.no_grad():
        out = pyr(normalize(a * 0.5 + 0.25), normalize(b * 0.5 + 0.25), "mef", PromptControl(0.0, 0.0))
    torch.testing.assert_close(out.source_weight, torch.full_like(out.source_weight, 0.5), atol=1e-4, rtol=0)


def test_an_old_source_weights_model_still_loads(compact, tmp_path):
    save_model(compact, tmp_path / "old")
    loaded = load_model(tmp_path / "old")
    assert loaded.config.fusion_output == "source_weights" and type(loaded.fusion_head).__name__ == "SourceWeightHead"


# --- the base's coarse levels ------------------------------------------------------------------
def without_coarse_levels(model: TCMoA) -> TCMoA:
    """The same weights in a head that blends the base as one band (pyramid_coarse_levels=0)."""
    m = TCMoA(dataclasses.replace(model.config, pyramid_coarse_levels=0)).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fusion_head.coarse_")}
    m.load_state_dict(state)
    return m


def test_a_model_without_coarse_levels_has_no_coarse_weights():
    head = TCMoA(dataclasses.replace(get_config("compact"), pyramid_coarse_levels=0)).fusion_head
    assert isinstance(head, PyramidHead), type(head)
    assert head.coarse_gain is None and head.coarse_mix is None  # so a checkpoint saved without them loads as saved
    assert get_config("compact").pyramid_coarse_levels == 5


def test_coarse_mix_zero_is_the_single_base_blend(pyr, sources):
    # Medical and MFF start with the coarse levels off: exactly the output of the single base blend.
    a, b = sources
    assert pyr.fusion_head.coarse_mix.tolist() == [1.0, 1.0, 0.0, 0.0]
    with torch.no_grad():
        for task in ("medical", "mff", "vif", "mef"):
            out = pyr(normalize(a), normalize(b), task).fused
            ref = without_coarse_levels(pyr)(normalize(a), normalize(b), task).fused
            assert torch.equal(out, ref) == (task in ("medical", "mff"))


def test_coarse_levels_keep_the_large_scale_contrast(pyr):
    # A: a slow left-to-right ramp (contrast only at scales above 1/16); B: flat grey. One blend of
    # the base halves the ramp; the coarse levels take it from A, whose large-scale energy is larger.
    xx = torch.linspace(0.2, 0.8, 256).expand(1, 3, 128, 256)
    a, b = xx.contiguous(), torch.full((1, 3, 128, 256), 0.5)
    with torch.no_grad():
        deep = pyr(normalize(a), normalize(b), "mef", PromptControl(0.0, 0.0)).fused
        single = without_coarse_levels(pyr)(normalize(a), normalize(b), "mef", PromptControl(0.0, 0.0)).fused
    ramp = lambda x: float(x[0, 0, :, -32:].mean() - x[0, 0, :, :32].mean())  # noqa: E731
    assert ramp(single) == pytest.approx(ramp(a) / 2, rel=0.05)
    assert ramp(deep) > 0.8 * ramp(a)


def test_coarse_levels_defer_to_the_base_weight_where_a_source_is_clipped(pyr):
    # A is blown out (white) on its left half, B a dark ramp there: the white region's rim is A's largest
    # coarse "structure", but it must not win; inside, the base weight (here 0.5) decides.
    xx = torch.linspace(0.1, 0.4, 256).expand(1, 3, 128, 256)
    a = torch.where(torch.arange(256) < 128, torch.tensor(1.0), torch.tensor(0.5)).expand(1, 3, 128, 256)
    b = xx.contiguous()
    with torch.no_grad():
        deep = pyr(normalize(a.contiguous()), normalize(b), "mef", PromptControl(0.0, 0.0)).fused
        single = without_coarse_levels(pyr)(normalize(a.contiguous()), normalize(b), "mef", PromptControl(0.0, 0.0)).fused
    inside = (slice(None), slice(16, 64))  # well inside the clipped half
    assert float((deep[0, 0][inside] - single[0, 0][inside]).abs().mean()) < 0.03
