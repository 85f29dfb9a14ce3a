"""The model's structure and behaviour: presets, routing, alpha/beta control, training mode."""
from __future__ import annotations

import re

import pytest
import torch

from tcmoa.model.checkpoint import official_to_tcmoa
from tcmoa.model.backbone import relative_position_index
from tcmoa.model.config import CONFIGS, ModelConfig, get_config
from tcmoa.model.network import TCMoA
from tcmoa.model.moa import PromptControl

from .conftest import FIXTURES, fixture_file

LISTING = fixture_file(FIXTURES, "official_state_dict_keys.txt")


def count(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def source_embed_count(model):
    return sum(m.source_embed.numel() for m in [*model.encoder_moa, *model.decoder_moa])


@pytest.mark.parametrize("name, total, trainable", [
    ("official-large", 340_886_920, 11_345_544),  # the official listing's counts
    ("official-base", 115_772_525, 3_865_197),
])
def test_official_parameter_counts(name, total, trainable):
    with torch.device("meta"):
        model = TCMoA(get_config(name))
    model.freeze_backbone()
    extra = source_embed_count(model)  # the official code forgot to register these
    assert count(model) - extra == total
    assert count(model, trainable_only=True) - extra == trainable


def _listing(section: str) -> dict[str, tuple[int, ...]]:
    text = LISTING.read_text().split("########## Section 2")[0 if section == "LARGE" else 1]
    shapes = {}
    for line in text.splitlines():
        m = re.match(r"^\[[FTB]\] (\S+)\t\(([\d, ]*)\)", line)
        if m:
            shapes[m[1]] = tuple(int(x) for x in m[2].replace(" ", "").split(",") if x)
    return shapes


@pytest.mark.parametrize("name, section", [("official-large", "LARGE"), ("official-base", "BASE")])
def test_official_presets_have_the_official_shapes(name, section):
    listing = _listing(section)
    with torch.device("meta"):
        model = TCMoA(get_config(name))
    fake = {k: (relative_position_index(14) if k.endswith("relative_position_index")
                else torch.empty(shape, device="meta")) for k, shape in listing.items()}
    ours = official_to_tcmoa(fake, model)
    own = model.state_dict()
    assert sorted(set(own) - set(ours)) == sorted(k for k in own if k.endswith("source_embed"))
    for key, value in ours.items():
        assert own[key].shape == value.shape, key


def test_compact_is_resolution_agnostic():
    model = TCMoA(get_config("compact")).eval()
    assert not hasattr(model, "pos_embed"), "compact must not carry an absolute position table"
    with torch.no_grad():
        for h, w in [(64, 64), (128, 320), (192, 64)]:
            out = model(torch.randn(1, 3, h, w), torch.randn(1, 3, h, w), "vif")
            assert out.fused.shape == (1, 3, h, w)
            assert out.token_grid == (h // 8, w // 8)


def test_input_size_must_tile_into_windows():
    model = TCMoA(get_config("official-tiny"))
    with pytest.raises(ValueError, match="multiple of 112"):
        model(torch.zeros(1, 3, 100, 112), torch.zeros(1, 3, 100, 112))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.zeros(1, 3, 112, 112), torch.zeros(1, 3, 224, 112))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = TCMoA(get_config("official-tiny")).eval()
    with torch.no_grad():  # random routers, so routing is not trivial
        for m in [*model.encoder_moa, *model.decoder_moa]:
            m.router_bank.gate.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(1)
    return torch.randn(1, 3, 112, 112), torch.randn(1, 3, 112, 112)


def test_alpha_beta_follow_equation_8(tiny, pair):
    with torch.no_grad():
        plain = tiny(*pair, 0)
        assert torch.equal(plain.fused, tiny(*pair, 0, PromptControl(1.0, 0.0)).fused)
        steered = tiny(*pair, 0, PromptControl(alpha=2.0, beta=0.1))
    p0, s0 = plain.encoder_traces[0], steered.encoder_traces[0]  # the first module sees the same input
    torch.testing.assert_close(s0.prompt_a, 0.5 + 2.0 * (p0.prompt_a - 0.5) + 0.1)
    torch.testing.assert_close(s0.prompt_b, 0.5 + 2.0 * (p0.prompt_b - 0.5) - 0.1)
    assert (steered.fused - plain.fused).abs().max() > 1e-3


def test_route_blends_router_logits(tiny, pair):
    with torch.no_grad():
        by_index = tiny(*pair, 1)
        by_name = tiny(*pair, "mef")
        by_weights = tiny(*pair, [0.0, 1.0, 0.0])
        vif, mef = tiny(*pair, 0), by_index
        blend = tiny(*pair, [1.0, 3.0, 0.0])
    assert torch.equal(by_index.fused, by_name.fused) and torch.equal(by_index.fused, by_weights.fused)
    first = lambda out: out.encoder_traces[0].router_logits  # noqa: E731
    torch.testing.assert_close(first(blend), 0.25 * first(vif) + 0.75 * first(mef))
    assert not torch.equal(vif.fused, mef.fused)


@pytest.mark.parametrize("route, message", [
    ("pansharpening", "unknown router"), (7, "out of range"), ([1.0, -1.0, 0.0], "non-negative"),
    ([1.0, 1.0], "needs 3"), ([0.0, 0.0, 0.0], "positive sum"), ([float("nan"), 1, 1], "finite"),
])
def test_bad_routes_are_named(tiny, pair, route, message):
    with pytest.raises(ValueError, match=message):
        tiny(*pair, route)


def test_training_mode_adds_router_noise_and_trains_only_tcmoa(tiny, pair):
    tiny.train()
    tiny.freeze_backbone()
    try:
        torch.manual_seed(0)
        out1 = tiny(*pair, 0)
        torch.manual_seed(1)
        out2 = tiny(*pair, 0)
        assert not torch.equal(out1.encoder_traces[0].gates, out2.encoder_traces[0].gates)
        loss = out1.fused.mean() + out1.aux_loss
        loss.backward()
        moa = tiny.encoder_moa[0]
        assert moa.router_bank.gate.grad is not None and moa.router_bank.gate.grad.abs().sum() > 0
        assert moa.router_bank.noise.grad is not None  # the load estimate is differentiable
        assert moa.adapter_bank[0].fc1.weight.grad is not None
        assert tiny.blocks[0].attn.qkv.weight.grad is None
    finally:
        tiny.eval()
        tiny.zero_grad(set_to_none=True)


def test_decoder_restandardisation_is_a_switch(pair):
    torch.manual_seed(0)
    v2025 = TCMoA(get_config("official-tiny")).eval()
    v2024 = TCMoA(ModelConfig(**{**get_config("official-tiny").__dict__, "decoder_restandardize": False})).eval()
    v2024.load_state_dict(v2025.state_dict())
    with torch.no_grad():
        assert not torch.allclose(v2025(*pair).pred, v2024(*pair).pred)


def test_config_json_round_trip():
    for config in CONFIGS.values():
        assert ModelConfig.from_dict(__import__("json").loads(config.to_json())) == config
    with pytest.raises(ValueError, match="unknown model config fields: bogus"):
        ModelConfig.from_dict({"bogus": 1})
