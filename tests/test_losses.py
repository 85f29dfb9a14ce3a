"""Tests of tcmoa.train.losses: official-fixture conformance (VIF, MEF) and unit tests (MFF, MIR, weightings)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import torch

from tcmoa.train import losses as L
from tcmoa.model.network import denormalize

from .conftest import official_cases

CASE_PARAMS = [pytest.param(p, id=p.stem) for p in official_cases()]

RTOL = 1e-4


pytestmark = pytest.mark.usefixtures("single_thread")


def num(t: torch.Tensor) -> float:
    """Python float of a 0-d tensor, detached (no autograd warning)."""
    return float(t.detach())


@functools.lru_cache(maxsize=None)
def load_case(path: Path) -> dict[str, np.ndarray]:
    """Arrays of one case (loaded once per session; model internals are not needed here)."""
    skip = ("pred", "encoder_out", "router_logits", "gates")
    with np.load(path) as d:
        return {k: d[k] for k in d.files if not any(part in k for part in skip)}


class LossInputs(TypedDict):
    """task_loss's keyword arguments, from one official fixture case."""

    task: int
    fused: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    encoder_prompts: list[tuple[torch.Tensor, torch.Tensor]]
    decoder_prompts: list[tuple[torch.Tensor, torch.Tensor]]
    aux_loss: torch.Tensor


def loss_inputs(d: dict[str, np.ndarray]) -> LossInputs:
    """Build the loss inputs exactly as the official forward_loss_task* does."""
    t = lambda k: torch.from_numpy(d[k])  # noqa: E731
    return LossInputs(
        task=int(d["task_index"]),
        fused=t("fused"),
        a=denormalize(t("input_A")),
        b=denormalize(t("input_B")),
        encoder_prompts=list(zip(t("enc_prompt_A").unbind(0), t("enc_prompt_B").unbind(0))),
        decoder_prompts=list(zip(t("dec_prompt_A").unbind(0), t("dec_prompt_B").unbind(0))),
        aux_loss=t("enc_aux_loss").sum() + t("dec_aux_loss").sum(),
    )


def expected_terms(d: dict[str, np.ndarray], epoch: int) -> dict[str, float]:
    prefix = f"loss_epoch{epoch}__"
    return {k[len(prefix) :]: float(d[k]) for k in d if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# Official fixture conformance
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 2])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_task_loss_matches_official(case: Path, epoch: int) -> None:
    d = load_case(case)
    expected = expected_terms(d, epoch)
    assert expected, f"{case.name} has no loss_epoch{epoch}__* arrays"
    out = L.task_loss(**loss_inputs(d), epoch=epoch, version="2025", warmup_epochs=2)
    # Same logged keys as the official loss dict at this epoch.
    assert set(out) == set(expected)
    for name, ref in expected.items():
        got = num(out[name])
        assert got == pytest.approx(ref, rel=RTOL), f"{case.stem} epoch {epoch} {name}: {got} vs {ref}"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_denormalised_sources_equal_u8(case: Path) -> None:
    # The denormalised float inputs are the 8-bit images up to float32 rounding (<= 6e-8 here);
    # the fixture totals match the denormalised ones bit-for-bit, which is what the tests use.
    d = load_case(case)
    for s in "AB":
        u8 = torch.from_numpy(d[f"input_{s}_u8"]).float() / 255
        diff = (denormalize(torch.from_numpy(d[f"input_{s}"])) - u8).abs().max()
        assert float(diff) <= 1e-6  # (torch.testing.assert_close costs ~1 s of lazy imports)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fixture_gradients_flow(case: Path) -> None:
    d = load_case(case)
    inp = loss_inputs(d)
    fused = inp["fused"].clone().requires_grad_(True)
    enc = [(pa.clone().requires_grad_(True), pb.clone().requires_grad_(True)) for pa, pb in inp["encoder_prompts"]]
    dec = [(pa.clone().requires_grad_(True), pb.clone().requires_grad_(True)) for pa, pb in inp["decoder_prompts"]]
    inp["fused"], inp["encoder_prompts"], inp["decoder_prompts"] = fused, enc, dec
    out = L.task_loss(**inp, epoch=2)
    out["loss"].backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    for p in [t for pair in enc + dec for t in pair]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _rand_images(seed: int, b: int = 2, h: int = 32, w: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(b, 3, h, w, generator=g) for _ in range(3))  # type: ignore[return-value]


def _blur(x: torch.Tensor) -> torch.Tensor:
    # Strong separable box blur (replicate pad): low gradients everywhere.
    k = 7
    xp = torch.nn.functional.pad(x, (k // 2,) * 4, mode="replicate")
    return torch.nn.functional.avg_pool2d(xp, k, stride=1)


def test_ssim_and_mef_ssim_identity() -> None:
    x, y, _ = _rand_images(0)
    assert num(L.official_ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert num(L.official_ssim(x, y)) < 0.5
    # Fused equal to both (identical) sources: l = cs = 1.
    assert num(L.official_mef_ssim(x, (x, x))) == pytest.approx(1.0, abs=1e-5)
    # A stacked (K, B, C, H, W) tensor is accepted as well as a sequence.
    assert num(L.official_mef_ssim(y, torch.stack((x, y)))) == pytest.approx(num(L.official_mef_ssim(y, (x, y))), rel=1e-6)


def test_signed_gradient_and_max_gradient_target() -> None:
    x, a, b = _rand_images(1)
    g = L.signed_gradient(x)
    assert g.shape == (2, 1, 32, 48)
    # Linear ramp along x (width) of slope s: interior response = (0.2 + 1 + 0.2) * 2s per channel.
    ramp = torch.arange(48.0).view(1, 1, 1, 48).expand(1, 3, 32, 48) * 0.01
    assert torch.allclose(L.signed_gradient(ramp)[..., 2:-2, 2:-2], torch.full((1, 1, 28, 44), 3 * 1.4 * 0.02))
    # F = A with B's gradients weaker everywhere -> zero loss; sign is kept (target of -A is -g(A)).
    assert num(L.max_gradient_loss(a, a, a * 0.1)) == pytest.approx(0.0, abs=1e-7)
    assert num(L.max_gradient_loss(-a, -a, a * 0.1)) == pytest.approx(0.0, abs=1e-7)
    assert num(L.max_gradient_loss(x, a)) == pytest.approx(
        3 * float((L.signed_gradient(x) - L.signed_gradient(a)).abs().mean()), rel=1e-6
    )


def test_pixel_losses() -> None:
    f, a, b = _rand_images(2)
    assert num(L.pixel_loss(f, a, b)) == pytest.approx(3 * float((f - (a + b) / 2).abs().mean()), rel=1e-6)
    assert num(L.max_pixel_loss(f, a, b)) == pytest.approx(float((f - torch.maximum(a, b)).abs().mean()), rel=1e-6)
    assert num(L.max_pixel_loss(f, a)) == pytest.approx(float((f - a).abs().mean()), rel=1e-6)
    # The max target is detached: no gradient reaches the sources.
    a.requires_grad_(True)
    f.requires_grad_(True)
    L.max_pixel_loss(f, a, b).backward()
    assert a.grad is None and f.grad is not None


# ---------------------------------------------------------------------------------------------
# MFF pseudo ground truth
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mff_pseudo_ground_truth_picks_sharper_patch(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    # Texture only in the 8x8 centre of every 16x16 patch, zero around it: the blur then stays inside
    # its patch and the zero padding adds no border edges, so "sharper" is unambiguous per patch.
    ii, jj = torch.meshgrid(torch.arange(48), torch.arange(64), indexing="ij")
    centre = ((ii % 16 >= 4) & (ii % 16 < 12) & (jj % 16 >= 4) & (jj % 16 < 12)).view(1, 1, 48, 64)
    sharp = torch.rand(2, 3, 48, 64, generator=g) * centre
    blurred = _blur(sharp)
    # Checkerboard of patches: A is in focus on the "even" patches, B on the others.
    even = (((ii // 16) + (jj // 16)) % 2 == 0).view(1, 1, 48, 64)
    a = torch.where(even, sharp, blurred)
    b = torch.where(even, blurred, sharp)
    out = L.mff_pseudo_ground_truth(a, b, patch=16)
    # Every patch (all three channels) comes whole from the in-focus source.
    assert torch.equal(out, sharp)
    assert not out.requires_grad
    # Patch size is a parameter: with 48x64 / 8 patches the in-focus content still wins everywhere.
    assert torch.equal(L.mff_pseudo_ground_truth(a, b, patch=8), sharp)


def test_mff_pseudo_ground_truth_needs_whole_patches() -> None:
    a, b, _ = _rand_images(3)
    with pytest.raises(ValueError):
        L.mff_pseudo_ground_truth(a[..., :30], b[..., :30])


# ---------------------------------------------------------------------------------------------
# MIR
# ---------------------------------------------------------------------------------------------


def _prompts(seed: int, n_enc: int = 2, n_dec: int = 1, b: int = 2, n: int = 12, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    mk = lambda: torch.rand(b, n, 1, generator=g).requires_grad_(grad)  # noqa: E731
    return [(mk(), mk()) for _ in range(n_enc)], [(mk(), mk()) for _ in range(n_dec)]


def test_mir_zero_when_prompts_sum_to_one() -> None:
    enc, dec = _prompts(4)
    enc = [(pa, 1.0 - pa) for pa, _ in enc]
    dec = [(pa, 1.0 - pa) for pa, _ in dec]
    assert num(L.mir_loss(enc, dec)) == pytest.approx(0.0, abs=1e-12)


def test_mir_weighting() -> None:
    ones = torch.ones(2, 5, 1)
    half = torch.full((2, 5, 1), 0.5)
    # Encoder deviations 1 (pA = pB = 1), decoder 0 -> 0.75; the reverse -> 0.25.
    assert num(L.mir_loss([(ones, ones)] * 2, [(half, half)])) == pytest.approx(0.75)
    assert num(L.mir_loss([(half, half)] * 2, [(ones, ones)])) == pytest.approx(0.25)
    # Mean over modules and tokens: one of two encoder modules off by 1 -> 0.75 * 0.5.
    assert num(L.mir_loss([(ones, ones), (half, half)], [(half, half)])) == pytest.approx(0.375)
    enc, dec = _prompts(5, grad=True)
    L.mir_loss(enc, dec).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for pair in enc + dec for p in pair)


# ---------------------------------------------------------------------------------------------
# task_loss: MFF, weightings, warm-up
# ---------------------------------------------------------------------------------------------


def _mff_inputs(seed: int = 6):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(2, 3, 32, 32, generator=g)
    blurred = _blur(sharp)
    left = (torch.arange(32) < 16).view(1, 1, 1, 32)
    a, b = torch.where(left, sharp, blurred), torch.where(left, blurred, sharp)
    fused = torch.rand(2, 3, 32, 32, generator=g).requires_grad_(True)
    enc, dec = _prompts(seed, n=4, grad=True)
    aux = torch.tensor(0.01, requires_grad=True)
    return fused, a, b, enc, dec, aux


@pytest.mark.parametrize("version", ["2025", "2024"])
@pytest.mark.parametrize("epoch", [0, 2])
def test_mff_total_finite_with_gradients(version: L.LossVersion, epoch: int) -> None:
    fused, a, b, enc, dec, aux = _mff_inputs()
    out = L.task_loss(L.MFF, fused, a, b, enc, dec, aux, epoch, version=version)
    logged = {"loss", "ssim_loss", "pixel_loss", "prompt_loss", "aux_loss"}
    if epoch >= 2:
        logged.add("max_grad_loss")
    assert set(out) == logged
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    out["loss"].backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for pair in enc + dec for p in pair)
    assert aux.grad is not None and aux.grad > 0
    # Terms are the ones against the pseudo ground truth O.
    o = L.mff_pseudo_ground_truth(a, b)
    assert num(out["pixel_loss"]) == pytest.approx(num(L.max_pixel_loss(fused, o)), rel=1e-6)
    assert num(out["ssim_loss"]) == pytest.approx(1 - num(L.official_ssim(fused, o)), rel=1e-6)


def test_mff_weightings_2024_vs_2025() -> None:
    fused, a, b, enc, dec, aux = _mff_inputs()
    for epoch in (2, 5):
        n = L.task_loss("MFF", fused, a, b, enc, dec, aux, epoch, version="2025")
        o = L.task_loss("MFF", fused, a, b, enc, dec, aux, epoch, version="2024")
        # Same terms, different combination.
        assert set(n) == set(o)
        for k in n:
            if k != "loss":
                assert num(n[k]) == pytest.approx(num(o[k]), rel=1e-6)
        g, p, m, s, x = (num(n[k]) for k in ("max_grad_loss", "pixel_loss", "prompt_loss", "ssim_loss", "aux_loss"))
        assert num(n["loss"]) == pytest.approx(20 * (g + p) + m + 3 * s + x / (epoch + 1), rel=1e-6)
        assert num(o["loss"]) == pytest.approx(5 * (g + p) + 20 * m + s + x, rel=1e-6)
        assert num(n["loss"]) != pytest.approx(num(o["loss"]), rel=1e-3)
    # Warm-up: 2025 = L1 + MIR + (1-SSIM) + aux/(e+1); 2024 = L1 + 20 MIR + (1-SSIM) + aux.
    n = L.task_loss(L.MFF, fused, a, b, enc, dec, aux, 1, version="2025")
    o = L.task_loss(L.MFF, fused, a, b, enc, dec, aux, 1, version="2024")
    p, m, s, x = (num(n[k]) for k in ("pixel_loss", "prompt_loss", "ssim_loss", "aux_loss"))
    assert num(n["loss"]) == pytest.approx(p + m + s + x / 2, rel=1e-6)
    assert num(o["loss"]) == pytest.approx(p + 20 * m + s + x, rel=1e-6)


def _vif_mef_inputs(seed: int = 7):
    f, a, b = _rand_images(seed, h=32, w=32)
    enc, dec = _prompts(seed, n=4)
    return f, a, b, enc, dec, torch.tensor(0.02)


def test_vif_mef_weightings_2024_vs_2025() -> None:
    f, a, b, enc, dec, aux = _vif_mef_inputs()
    ssim_ab = ((1 - num(L.official_ssim(f, a))) + (1 - num(L.official_ssim(f, b)))) / 2
    mir = num(L.mir_loss(enc, dec))
    pix = num(L.pixel_loss(f, a, b))
    maxg = num(L.max_gradient_loss(f, a, b))
    maxp = num(L.max_pixel_loss(f, a, b))
    mefs = 1 - num(L.official_mef_ssim(f, (a, b)))
    x = float(aux)
    expected: dict[tuple[int, int, L.LossVersion], float] = {
        # (task, epoch, version): total
        (L.VIF, 1, "2025"): pix + mir + ssim_ab + x / 2,
        (L.VIF, 3, "2025"): 1.5 * maxg + 1.5 * maxp + mir + 2 * ssim_ab + x / 4,
        (L.MEF, 0, "2025"): pix + mir + ssim_ab + x,
        (L.MEF, 3, "2025"): 1.8 * (maxg + mir + 2 * mefs + pix) + x / 4,
        (L.VIF, 1, "2024"): pix + 20 * mir + ssim_ab + x,
        (L.VIF, 3, "2024"): maxg + maxp + 20 * mir + 0.5 * ssim_ab + x,
        (L.MEF, 0, "2024"): pix + 20 * mir + ssim_ab + x,
        (L.MEF, 3, "2024"): 1.2 * (maxg + 20 * mir + mefs + x + pix),
    }
    for (task, epoch, version), total in expected.items():
        out = L.task_loss(task, f, a, b, enc, dec, aux, epoch, version=version)
        assert num(out["loss"]) == pytest.approx(total, rel=1e-5), (task, epoch, version)
        assert num(out["aux_loss"]) == pytest.approx(x)  # logged undivided


def test_warmup_switch_and_custom_weights() -> None:
    f, a, b, enc, dec, aux = _vif_mef_inputs()
    # warmup_epochs moves the switch; epoch 2 is main phase by default, warm-up with warmup_epochs=3.
    assert "max_grad_loss" in L.task_loss(L.VIF, f, a, b, enc, dec, aux, 2)
    assert "max_grad_loss" not in L.task_loss(L.VIF, f, a, b, enc, dec, aux, 2, warmup_epochs=3)
    # A custom LossWeights can be passed as the version; the dataclasses are frozen.
    only_mir = dataclasses.replace(L.LOSS_WEIGHTS_2025, vif=L.PhaseWeights(mir=2.0, aux=0.0))
    out = L.task_loss(L.VIF, f, a, b, enc, dec, aux, 4, version=only_mir)
    assert num(out["loss"]) == pytest.approx(2 * num(L.mir_loss(enc, dec)), rel=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        L.LOSS_WEIGHTS_2025.vif.mir = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        L.task_loss(3, f, a, b, enc, dec, aux, 0)


def test_autocast_and_inference_mode_safe() -> None:
    f, a, b, enc, dec, aux = _vif_mef_inputs(8)
    ref = L.task_loss(L.MEF, f, a, b, enc, dec, aux, 2)
    # Inside a bfloat16 autocast region the loss still runs in float32 (official autocast(enabled=False)).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = L.task_loss(L.MEF, f, a, b, enc, dec, aux, 2)
    assert out["loss"].dtype == torch.float32
    assert num(out["loss"]) == pytest.approx(num(ref["loss"]), rel=1e-6)
    # Kernels first built under inference_mode must remain usable for autograd afterwards.
    for fn in (L._ssim_window, L._mef_window, L._signed_grad_kernel, L._sobel_kernels):
        fn.cache_clear()
    with torch.inference_mode():
        L.task_loss(L.MEF, f, a, b, enc, dec, aux, 2)
        L.task_loss(L.MFF, f, a, b, enc, dec, aux, 2)
    fg = f.clone().requires_grad_(True)
    L.task_loss(L.MEF, fg, a, b, enc, dec, aux, 2)["loss"].backward()
    L.task_loss(L.MFF, fg, a, b, enc, dec, aux, 2)["loss"].backward()
    assert fg.grad is not None and torch.isfinite(fg.grad).all()
    # Cached: the same kernel object is reused across calls.
    assert L._ssim_window(3, f.device, f.dtype) is L._ssim_window(3, f.device, f.dtype)


def test_gradcheck_float64() -> None:
    # Analytic gradients of the differentiable building blocks agree with finite differences.
    g = torch.Generator().manual_seed(9)
    f = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64).requires_grad_(True)
    a = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64)
    b = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.official_ssim(x, a), (f,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: L.official_mef_ssim(x, (a, b)), (f,), fast_mode=True)
    # L1 terms are piecewise linear: check away from kinks by a smooth proxy (signed gradient itself).
    assert torch.autograd.gradcheck(lambda x: L.signed_gradient(x).pow(2).mean(), (f,), fast_mode=True)
