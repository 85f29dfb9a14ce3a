"""The compact model's detail-preserving output (tcmoa/model/fusion_head.py): weights, residual, control."""
from __future__ import annotations

import pytest
import torch

from tcmoa.model.checkpoint import load_backbone, load_model, save_model
from tcmoa.model.config import get_config
from tcmoa.model.fusion_head import PROMPT_GAIN
from tcmoa.model.network import TCMoA, normalize
from tcmoa.model.moa import PromptControl


@pytest.fixture(scope="module")
def compact(single_thread) -> TCMoA:
    torch.manual_seed(0)
    return TCMoA(get_config("compact")).eval()


@pytest.fixture(scope="module")
def sources() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 64, 128, generator=g), torch.rand(2, 3, 64, 128, generator=g)


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
    model = TCMoA(get_config("compact")).eval()
    model.load_state_dict(compact.state_dict())
    with torch.no_grad():
        model.fusion_head.proj.bias.fill_(0.0)
        # Outputs are in unpatchify's (row, col, channel) order; channel 0 is the logit of A.
        model.fusion_head.proj.bias.view(64, 4)[:, 0] = 20.0  # every pixel: take source A
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
    model = TCMoA(get_config("compact"))
    model.freeze_backbone()
    assert all(p.requires_grad for p in model.fusion_head.parameters())
    assert not model.decoder_pred.weight.requires_grad
    with torch.no_grad():
        model.fusion_head.proj.weight.normal_()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    torch.testing.assert_close(loaded.fusion_head.proj.weight, model.fusion_head.proj.weight, rtol=0, atol=0)
    # A backbone folder loads into a fresh model: the head stays zero (it is not part of the backbone).
    fresh = TCMoA(get_config("compact"))
    load_backbone(fresh, tmp_path / "m")
    assert not fresh.fusion_head.proj.weight.detach().any()
