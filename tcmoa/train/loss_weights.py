"""The official per-task loss weightings (2024 camera-ready and 2025 code), as data.

Each task has a warm-up and a main phase; tcmoa.train.losses.task_loss applies them (checked
against the official loss terms: tests/test_losses.py, tests/test_official_fixture.py) and logs
the terms LOGGED_TERMS names, under the official names TERM_NAMES gives the weights' fields.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..tasks import MEF, MFF, OBJECTIVES, VIF


@dataclass(frozen=True)
class PhaseWeights:
    """Weights of one task in one phase: total = scale * sum(w_i * term_i) + aux * aux_loss / divisor."""

    pixel: float = 0.0  # pixel_loss: PixelLoss vs (A+B)/2 (VIF, MEF); L1(F, O) for MFF
    max_pixel: float = 0.0  # max_pixel_loss: MaxPixelLoss vs max(A, B)
    max_grad: float = 0.0  # max_grad_loss: MaxGradLoss (already x3 inside)
    ssim: float = 0.0  # ssim_loss: ((1-SSIM(F,A)) + (1-SSIM(F,B)))/2, or 1-SSIM(F,O) for MFF
    mef_ssim: float = 0.0  # MEF_SSIM_loss: 1 - MEF-SSIM
    mir: float = 0.0  # prompt_loss: MIR
    # Ours (tcmoa/train/multiscale_losses.py); 0 in both official versions.
    clip_pixel: float = 0.0  # clip_pixel_loss: L1 to max(A', B'), clipped pixels replaced by the other source's
    detail: float = 0.0  # detail_loss: Laplacian bands vs the more energetic source's, 4 scales
    contrast: float = 0.0  # contrast_loss: hinge on local SD below the sources' larger one, 4 scales
    mefb_ssim: float = 0.0  # MEFB_SSIM_loss: 1 - MEFB's 3-scale MEF-SSIM (structure only, no luminance term)
    scale: float = 1.0  # outer factor of the official bracket, e.g. 1.8*(...) for MEF v2025
    aux: float = 1.0  # weight of the MoE balance loss, applied outside `scale`


@dataclass(frozen=True)
class LossWeights:
    """Per-task warm-up / main-phase weights of one official code version."""

    vif_warmup: PhaseWeights
    vif: PhaseWeights
    mef_warmup: PhaseWeights
    mef: PhaseWeights
    mff_warmup: PhaseWeights
    mff: PhaseWeights
    aux_epoch_decay: bool  # v2025 divides the aux loss by (epoch + 1); v2024 does not

    def phase(self, task: int, warmup: bool) -> PhaseWeights:
        """Weights of `task` (0 VIF, 1 MEF, 2 MFF) in the warm-up or the main phase."""
        name = OBJECTIVES[task] + ("_warmup" if warmup else "")
        return getattr(self, name)


# v2025 (the official code at 48e4a54, engine_train.py): checked against the fixture totals (tests/fixtures/official_tiny).
LOSS_WEIGHTS_2025 = LossWeights(
    vif_warmup=PhaseWeights(pixel=1.0, mir=1.0, ssim=1.0),
    vif=PhaseWeights(max_grad=1.5, max_pixel=1.5, mir=1.0, ssim=2.0),
    mef_warmup=PhaseWeights(pixel=1.0, mir=1.0, ssim=1.0),
    # 1.8*(MaxG + MIR + 2*(1-MEFS) + Pix) + aux/(e+1)
    mef=PhaseWeights(max_grad=1.0, mir=1.0, mef_ssim=2.0, pixel=1.0, scale=1.8),
    mff_warmup=PhaseWeights(pixel=1.0, mir=1.0, ssim=1.0),
    # 20*(3*L1(g(F), g(O)) + L1(F, O)) + MIR + 3*(1-SSIM(F, O)) + aux/(e+1)
    mff=PhaseWeights(max_grad=20.0, pixel=20.0, mir=1.0, ssim=3.0),
    aux_epoch_decay=True,
)

# v2024 (camera-ready 269469a, model/TC_MoA forward_loss_task*): MIR x20, aux undivided.
LOSS_WEIGHTS_2024 = LossWeights(
    vif_warmup=PhaseWeights(pixel=1.0, mir=20.0, ssim=1.0),
    vif=PhaseWeights(max_grad=1.0, max_pixel=1.0, mir=20.0, ssim=0.5),
    mef_warmup=PhaseWeights(pixel=1.0, mir=20.0, ssim=1.0),
    # 1.2*(MaxG + 20*MIR + (1-MEFS) + aux + Pix): aux sits inside the bracket, hence aux=1.2.
    mef=PhaseWeights(max_grad=1.0, mir=20.0, mef_ssim=1.0, pixel=1.0, scale=1.2, aux=1.2),
    mff_warmup=PhaseWeights(pixel=1.0, mir=20.0, ssim=1.0),
    mff=PhaseWeights(max_grad=5.0, pixel=5.0, mir=20.0, ssim=1.0),
    aux_epoch_decay=False,
)

# Ours ("tcmoa", the shipped pyramid model): the 2025 terms that do not reward clipping, plus the
# multi-scale terms. VIF (and medical, which trains with it) swaps max-intensity for its clip-aware
# form; MEF adds detail and contrast to MEF-SSIM and quarters the pull to the average (its large-scale
# tone was flat: SD below Mertens'), and its MEF-SSIM is MEFB's 3-scale, structure-only form: the
# official single-scale one has a luminance term that pulls towards the sources' weighted mean tone
# and scored the coarse-level head (which keeps large-scale contrast) worse although MEFB's MEF-SSIM
# and SD rose on the same training frames (docs/TRAINING.md); MFF keeps the official pseudo-ground-
# truth loss, which already beat every classical method. No warm-up form: this recipe fine-tunes a trained model. At the start
# (192-px training crops, pyramid head at its initialisation) each new VIF term is ~15% of the VIF
# total; MEF's contrast term ~30% of MEF's.
_VIF_OURS = PhaseWeights(max_grad=1.0, clip_pixel=1.5, ssim=1.0, detail=5.0, contrast=5.0, mir=1.0)
_MEF_OURS = PhaseWeights(max_grad=1.0, mefb_ssim=2.0, pixel=0.25, detail=5.0, contrast=10.0, mir=1.0, scale=1.8)
LOSS_WEIGHTS_OURS = LossWeights(
    vif_warmup=_VIF_OURS, vif=_VIF_OURS, mef_warmup=_MEF_OURS, mef=_MEF_OURS,
    mff_warmup=LOSS_WEIGHTS_2025.mff, mff=LOSS_WEIGHTS_2025.mff,
    aux_epoch_decay=True,
)

LOSS_WEIGHTS: Mapping[str, LossWeights] = {"2025": LOSS_WEIGHTS_2025, "2024": LOSS_WEIGHTS_2024,
                                           "tcmoa": LOSS_WEIGHTS_OURS}

# Keys the official code puts in its loss dict (and logs), per (task, warm-up). Identical in both
# versions. Note VIF warm-up uses ssim_loss in the total but does not log it.
LOGGED_TERMS: Mapping[tuple[int, bool], tuple[str, ...]] = {
    (VIF, True): ("aux_loss", "pixel_loss", "prompt_loss"),
    (VIF, False): ("aux_loss", "ssim_loss", "max_grad_loss", "max_pixel_loss", "prompt_loss"),
    (MEF, True): ("ssim_loss", "pixel_loss", "prompt_loss", "aux_loss"),
    (MEF, False): ("pixel_loss", "MEF_SSIM_loss", "max_grad_loss", "prompt_loss", "aux_loss"),
    (MFF, True): ("ssim_loss", "pixel_loss", "prompt_loss", "aux_loss"),
    (MFF, False): ("ssim_loss", "max_grad_loss", "aux_loss", "pixel_loss", "prompt_loss"),
}

# PhaseWeights field -> official term name.
TERM_NAMES: Mapping[str, str] = {
    "pixel": "pixel_loss",
    "max_pixel": "max_pixel_loss",
    "max_grad": "max_grad_loss",
    "ssim": "ssim_loss",
    "mef_ssim": "MEF_SSIM_loss",
    "mir": "prompt_loss",
    # Ours (not in the official versions, so never in LOGGED_TERMS): logged whenever weighted.
    "clip_pixel": "clip_pixel_loss",
    "detail": "detail_loss",
    "contrast": "contrast_loss",
    "mefb_ssim": "MEFB_SSIM_loss",
}
