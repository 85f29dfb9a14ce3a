"""The compact models' detail-preserving outputs (tcmoa/model/fusion_head.py): per-band weights (the
shipped "pyramid" head) and per-pixel weights + residual ("source_weights", still loadable)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tcmoa.model import pyramid
from tcmoa.model.checkpoint import load_backbone, load_model, save_model
from tcmoa.model.config import get_config
from tcmoa.model.fusion_head import PROMPT_GAIN, PromptMargin, SourceWeightHead, pad_to
from tcmoa.model.pyramid import level_sizes
from tcmoa.model.pyramid_head import BETA_GAIN, PyramidHead
from tcmoa.model.strips import plan_strips
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
    blend = w * a + (1 - w) * b
    torch.testing.assert_close(out.fused, blend.clamp(0, 1), atol=1e-5, rtol=0)
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


# --- the formula, term by term (each test fails when its term is changed) ---------------------------
def level_logits(head: PyramidHead, margin: PromptMargin, clip_a: float = 0.0) -> list[torch.Tensor]:
    """The logit of A's weight at every band (learned levels, then the base's own ones) for two fixed random
    sources whose clip maps are replaced: B unclipped, A at the constant `clip_a`."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(1, 3, 64, 96, generator=g) * 0.8 + 0.1, torch.rand(1, 3, 64, 96, generator=g) * 0.8 + 0.1
    tokens = torch.randn(1, 8 * 12, head.token_logits.in_features, generator=g)
    gains = head.gains(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # vif: the base's clip gain and the coarse levels on
    levels, deep = head.levels, head.coarse_levels
    sizes = level_sizes((64, 96), levels + deep)
    sizes = sizes[:levels] + sizes[levels - 1:]  # the base's own pyramid starts at the base's size
    maps = head.token_maps(tokens, (8, 12), margin, gains)
    pyr_a, pyr_b = pyramid.laplacian(a, levels), pyramid.laplacian(b, levels)
    bands = list(zip(pyr_a, pyr_b)) + list(zip(pyramid.laplacian(pyr_a[-1], deep + 1), pyramid.laplacian(pyr_b[-1], deep + 1)))
    out = []
    with torch.no_grad():
        for lvl, (band_a, band_b) in enumerate(bands):
            ones = torch.ones_like(band_a[:, :1])
            low_pass = lvl in (levels - 1, levels + deep)
            w = head.level_weight(lvl, maps.term(lvl, sizes[lvl]), band_a, band_b,
                                  clip_a * ones, 0 * ones, gains, low_pass)
            out.append(torch.logit(w.double()))
    return out


def test_beta_moves_every_band_towards_a_by_the_formula(pyr):
    # Eq. 8: beta adds 2 beta to every p_A' - p_B'; the head takes that shift out of the per-region
    # term and gives it BETA_GAIN at every band: each band's logit moves by exactly BETA_GAIN * 2 beta.
    head = pyr.fusion_head
    assert isinstance(head, PyramidHead)
    regional = 0.2 * torch.randn(1, 1, 8, 12, generator=torch.Generator().manual_seed(6))
    at_zero = level_logits(head, PromptMargin(regional, 0.0))
    for beta in (0.25, -0.1):
        moved = level_logits(head, PromptMargin(regional + 2 * beta, beta))
        assert len(moved) == head.levels + head.coarse_levels + 1  # the base's own pyramid has a base too
        for lvl, (z0, z1) in enumerate(zip(at_zero, moved)):
            torch.testing.assert_close(z1 - z0, torch.full_like(z0, BETA_GAIN * 2 * beta), atol=2e-3, rtol=0,
                                       msg=f"level {lvl}, beta {beta}")


def test_a_clipped_source_gives_way_by_its_clip_gain(pyr):
    # clip_gain * (C_B - C_A): A fully clipped lowers every learned level's logit of A by that level's clip
    # gain (4 at initialisation for vif, the base included).
    head = pyr.fusion_head
    assert isinstance(head, PyramidHead)
    margin = PromptMargin(torch.zeros(1, 1, 8, 12), 0.0)
    plain, clipped_a = level_logits(head, margin, clip_a=0.0), level_logits(head, margin, clip_a=1.0)
    gains = head.clip_gain[0].detach().double()
    assert gains.min() > 0
    for lvl in range(head.levels):
        torch.testing.assert_close(clipped_a[lvl] - plain[lvl], torch.full_like(plain[lvl], -float(gains[lvl])),
                                   atol=2e-3, rtol=0, msg=f"level {lvl}")


@pytest.mark.parametrize("channels, size, span", [(3, (150, 97), (192, 128)), (1, (301, 64), (320, 64))])
def test_strips_give_the_whole_image_formula(pyr, monkeypatch, channels, size, span):
    # Large images are computed strip by strip (tcmoa/model/pyramid_head.py); the strips' halos must make
    # every row equal to the whole image's computation, whatever the strip height.
    head = pyr.fusion_head
    assert isinstance(head, PyramidHead)
    g = torch.Generator().manual_seed(9)
    a, b = torch.rand(1, channels, *size, generator=g), torch.rand(1, channels, *size, generator=g)
    a[..., 40:70, 10:50] = 1.0  # a clipped patch, so the clip terms take part
    grid = (span[0] // 8, span[1] // 8)
    tokens = torch.randn(1, grid[0] * grid[1], head.token_logits.in_features, generator=g)
    margin = PromptMargin(0.3 * torch.randn(1, 1, *grid, generator=g), 0.1)
    route = torch.tensor([0.5, 0.5, 0.0, 0.0])
    with torch.no_grad():
        whole, whole_w = head(tokens, grid, a, b, margin, route, span)
        monkeypatch.setattr(head, "strip_pixels", 16 * span[1])  # strips of 16 rows, halos of 32
        assert len(plan_strips(span[0], span[1], pixels=head.strip_pixels)) > 4
        strips, strips_w = head(tokens, grid, a, b, margin, route, span)
    assert whole.shape == (1, channels, *size)
    torch.testing.assert_close(strips, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(strips_w, whole_w, atol=1e-6, rtol=0)


def test_the_span_is_the_padded_image(pyr):
    # Giving the head the unpadded sources and the span equals padding them first (as tcmoa.fuse pads).
    head = pyr.fusion_head
    assert isinstance(head, PyramidHead)
    g = torch.Generator().manual_seed(10)
    a, b = torch.rand(1, 3, 70, 90, generator=g), torch.rand(1, 3, 70, 90, generator=g)
    tokens = torch.randn(1, 10 * 12, head.token_logits.in_features, generator=g)
    margin, route = PromptMargin(torch.zeros(1, 1, 10, 12), 0.0), torch.tensor([1.0, 0.0, 0.0, 0.0])
    with torch.no_grad():
        spanned, _ = head(tokens, (10, 12), a, b, margin, route, (80, 96))
        padded, _ = head(tokens, (10, 12), pad_to(a, 10, 6), pad_to(b, 10, 6), margin, route)
    assert spanned.shape == (1, 3, 70, 90)
    torch.testing.assert_close(spanned, padded[..., :70, :90], atol=1e-6, rtol=0)


def test_an_untrusted_region_takes_the_other_sources_detail(pyr):
    # trust 0 (outside a warped source, or moving content) makes the bands give way. Inside the untrusted
    # half, B is A with 1.5x its contrast: its detail would win on energy; given way, the detail is A's.
    # (The pipeline also fills such regions from the reference, which settles the coarsest bands.)
    g = torch.Generator().manual_seed(11)
    a = 0.3 + 0.4 * torch.rand(1, 3, 128, 192, generator=g)
    b = torch.rand(1, 3, 128, 192, generator=g)
    b[..., :96] = (1.5 * a[..., :96] - 0.25).clamp(0, 1)
    trust_b = torch.ones(1, 1, 128, 192)
    trust_b[..., :96] = 0.0
    with torch.no_grad():
        plain = pyr(normalize(a), normalize(b), "vif").fused
        trusted = pyr(normalize(a), normalize(b), "vif", trust=(torch.ones_like(trust_b), torch.ones_like(trust_b))).fused
        given_way = pyr(normalize(a), normalize(b), "vif", trust=(None, trust_b)).fused
    torch.testing.assert_close(trusted, plain, atol=1e-5, rtol=0)
    inside = (..., slice(16, 112), slice(8, 56))  # 40 px from the region's edge

    def detail(x: torch.Tensor) -> float:
        return float(pyramid.laplacian(x, 2)[0][inside].abs().mean())

    assert detail(plain) / detail(a) > 1.3  # B's stronger detail wins on energy
    assert 0.9 < detail(given_way) / detail(a) < 1.1  # given way: A's detail
