"""Training losses of TC-MoA, reproducing the official code (YangSun22/TC-MoA) term by term.

Every loss takes images in [0, 1] RGB, (B, 3, H, W): the fused image and the two sources, all
denormalised from ImageNet statistics and clipped, as the official ``recover_Norm(x) / 255`` does.
Source A is visible / over-exposed / far-focus, source B infrared / under-exposed / near-focus.

Term names in the dict returned by :func:`task_loss` are the official logging names
(``loss``, ``aux_loss``, ``pixel_loss``, ``prompt_loss``, ``ssim_loss``, ``max_grad_loss``,
``max_pixel_loss``, ``MEF_SSIM_loss``), and each phase logs exactly the keys the official code logs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .loss_weights import (LOGGED_TERMS, LOSS_WEIGHTS, LOSS_WEIGHTS_2024, LOSS_WEIGHTS_2025, TERM_NAMES, LossWeights,
                           PhaseWeights)
from ..tasks import MEF, MFF, OBJECTIVES, VIF
from .multiscale_losses import clip_aware_pixel_loss, differentiable_mefb_mef_ssim, local_contrast_loss, multiscale_detail_loss

__all__ = [
    "VIF",
    "MEF",
    "MFF",
    "PhaseWeights",
    "LossWeights",
    "LOSS_WEIGHTS_2025",
    "LOSS_WEIGHTS_2024",
    "LOSS_WEIGHTS",
    "official_ssim",
    "official_mef_ssim",
    "signed_gradient",
    "max_gradient_loss",
    "max_pixel_loss",
    "pixel_loss",
    "mff_pseudo_ground_truth",
    "mir_loss",
    "task_loss",
    "LossVersion",
]

# Built-in `loss_weight` of the official loss modules (TC_MoA model __init__:
# MaxGradLoss(3), PixelLoss(3), MaxPixelLoss(1)).
MAX_GRAD_WEIGHT = 3.0
PIXEL_WEIGHT = 3.0
MAX_PIXEL_WEIGHT = 1.0

# The loss recipes `task_loss` knows by name (or pass a LossWeights).
LossVersion = Literal["2024", "2025", "tcmoa"]

# SSIM constants (util/fusion_loss.py): data range 1.
_SSIM_WIN, _SSIM_SIGMA = 11, 1.5
_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2
# MEF-SSIM constants (util/mefssim.py, MEF_MSSSIM(is_lum=True)): sigma = window/6, sigma_g = sigma_l = 0.2.
_MEF_WIN = 11
_MEF_SIGMA = _MEF_WIN / 6.0
_MEF_DENOM = 2 * 0.2**2  # = 0.08, shared by the global (L_G) and local (L_L) luminance weights
_MEF_C1, _MEF_C2 = 0.01**2, 0.03**2

# Signed gradient operator of the official SobelxyRGB (a softened Sobel, cross-correlation as in conv2d).
_KX = ((-0.2, 0.0, 0.2), (-1.0, 0.0, 1.0), (-0.2, 0.0, 0.2))
_KY = ((0.2, 1.0, 0.2), (0.0, 0.0, 0.0), (-0.2, -1.0, -0.2))
# Standard Sobel, used only to pick MFF patches (official Sobelxy).
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
# Luma weights of the official to_gray (torchvision / TF rgb_to_grayscale).
_OFFICIAL_TO_GRAY = (0.2989, 0.587, 0.114)


# --------------------------------------------------------------------------------------------
# Kernel cache: kernels are tiny constants; build each once per (device, dtype, channels).
# --------------------------------------------------------------------------------------------


def _gauss_2d(size: int, sigma: float) -> Tensor:
    # (size, size) float32 Gaussian built exactly as the official `gaussian()` / `create_window()`:
    # samples centred at size//2, normalised to sum 1 *in float32*, outer product in float32.
    # Building it in float64 instead moves SSIM by ~2e-6 relative (the float32 window does not sum to 1).
    samples = [math.exp(-((i - size // 2) ** 2) / float(2 * sigma**2)) for i in range(size)]
    g = torch.tensor(samples, dtype=torch.float32)
    g = (g / g.sum()).unsqueeze(1)
    return g.mm(g.t())


@functools.lru_cache(maxsize=None)
def _ssim_window(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # (channels, 1, 11, 11): one Gaussian per channel for a depthwise (groups=channels) conv.
    # inference_mode(False): a kernel first built under inference_mode must still be usable in autograd.
    with torch.inference_mode(False), torch.no_grad():
        w2 = _gauss_2d(_SSIM_WIN, _SSIM_SIGMA)
        return w2.expand(channels, 1, _SSIM_WIN, _SSIM_WIN).contiguous().to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _mef_window(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # (1, channels, 11, 11) / channels: a single-output conv, i.e. statistics of the channel mean.
    with torch.inference_mode(False), torch.no_grad():
        w2 = _gauss_2d(_MEF_WIN, _MEF_SIGMA)
        w = w2.expand(1, channels, _MEF_WIN, _MEF_WIN).contiguous() / channels
        return w.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _signed_grad_kernel(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # (2, channels, 3, 3): Kx and Ky as two outputs, each summing the RGB channels as the official
    # repeat(1, 3, 1, 1). Kept separate (not one Kx + Ky conv) so that the rounding, and hence the
    # |g(A)| >= |g(B)| choices at near-ties, match the official conv(I, Kx) + conv(I, Ky).
    with torch.inference_mode(False), torch.no_grad():
        k = torch.tensor((_KX, _KY), dtype=torch.float64).unsqueeze(1)
        return k.expand(2, channels, 3, 3).to(device=device, dtype=dtype).contiguous()


@functools.lru_cache(maxsize=None)
def _sobel_kernels(device: torch.device, dtype: torch.dtype) -> Tensor:
    # (2, 1, 3, 3): Sobel x and y as two output channels of one conv over the gray image.
    with torch.inference_mode(False), torch.no_grad():
        k = torch.tensor((_SOBEL_X, _SOBEL_Y), dtype=torch.float64).unsqueeze(1)
        return k.to(device=device, dtype=dtype).contiguous()


# --------------------------------------------------------------------------------------------
# Precision guard: the official code computes every loss in float32 with autocast disabled.
# --------------------------------------------------------------------------------------------

_Fn = TypeVar("_Fn", bound=Callable[..., object])


def _fp32(x: Tensor) -> Tensor:
    # Half precision loses SSIM variances (E[x^2] - E[x]^2 cancels); float64 is kept for grad checks.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _no_autocast(fn: _Fn) -> _Fn:
    # The official loss runs under `torch.cuda.amp.autocast(enabled=False)`; do the same so a caller
    # inside an autocast region does not get its convolutions silently run in float16.
    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        dev = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=dev, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


@_no_autocast
def official_ssim(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of two (B, C, H, W) images in [0, 1]: 11x11 Gaussian (sigma 1.5), depthwise, zero pad 5, mean of map."""
    x, y = _fp32(x), _fp32(y)
    c = x.shape[1]
    w = _ssim_window(c, x.device, x.dtype)
    # All five local moments in one grouped conv: (B, 5C, H, W) -> (B, 5C, H, W).
    stack = torch.cat((x, y, x * x, y * y, x * y), dim=1)
    mom = F.conv2d(stack, w.repeat(5, 1, 1, 1), padding=_SSIM_WIN // 2, groups=5 * c)
    mu_x, mu_y, e_xx, e_yy, e_xy = mom.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    # Biased local (co)variances, exactly E[xy] - E[x]E[y] as the official code (can be slightly < 0).
    s_xx, s_yy, s_xy = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    ssim_map = ((2 * mu_xy + _SSIM_C1) * (2 * s_xy + _SSIM_C2)) / (
        (mu_xx + mu_yy + _SSIM_C1) * (s_xx + s_yy + _SSIM_C2)
    )
    return ssim_map.mean()


def _as_tall(img: Tensor) -> Tensor:
    # (B, C, H, W) -> (C, B*H, W): the official MEF loss stacks the batch vertically into one image,
    # so the 11x11 window crosses image borders and the global luminance L_G is over the whole batch.
    b, c, h, w = img.shape
    return img.permute(1, 0, 2, 3).reshape(c, b * h, w)


@_no_autocast
def official_mef_ssim(fused: Tensor, sources: Sequence[Tensor] | Tensor) -> Tensor:
    """Official single-scale MEF-SSIM (is_lum=True) of fused (B,C,H,W) vs K sources, batch as one tall image."""
    if isinstance(sources, Tensor):
        sources = list(sources.unbind(0))  # (K, B, C, H, W) -> K x (B, C, H, W)
    x = _as_tall(_fp32(fused)).unsqueeze(0)  # (1, C, BH, W)
    ys = torch.stack([_as_tall(_fp32(s)) for s in sources], dim=0)  # (K, C, BH, W)
    k = ys.shape[0]
    w = _mef_window(x.shape[1], x.device, x.dtype)  # (1, C, 11, 11) / C
    pad = _MEF_WIN // 2

    # Source statistics (channel-averaged by the 3->1 window): (K, 1, BH, W).
    mu_y = F.conv2d(ys, w, padding=pad)
    sig_y = F.conv2d(ys * ys, w, padding=pad) - mu_y * mu_y
    # cs is taken from the source with the largest local variance (first one on ties, as torch.max).
    best = sig_y.max(dim=0, keepdim=True).indices  # (1, 1, BH, W)

    # Fused statistics: (1, 1, BH, W).
    mu_x = F.conv2d(x, w, padding=pad)
    sig_x = F.conv2d(x * x, w, padding=pad) - mu_x * mu_x
    sig_xy = F.conv2d(x * ys, w, padding=pad) - mu_x * mu_y  # (K, 1, BH, W)

    cs_seq = (2 * sig_xy + _MEF_C2) / (sig_x + sig_y + _MEF_C2)
    cs_map = cs_seq.gather(0, best)  # (1, 1, BH, W)

    # Luminance: desired mean mu_Y = weighted mean of source means, weights favour well-exposed
    # sources globally (L_G, from the whole-image mean) and locally (L_L).
    l_glob = torch.exp(-((mu_y.reshape(k, -1).mean(dim=1) - 0.5) ** 2) / _MEF_DENOM)  # (K,)
    l_loc = torch.exp(-((mu_y - 0.5) ** 2) / _MEF_DENOM)  # (K, 1, BH, W)
    lk = l_glob.view(k, 1, 1, 1) * l_loc
    mu_des = (lk * mu_y).sum(dim=0, keepdim=True) / lk.sum(dim=0, keepdim=True)  # (1, 1, BH, W)
    l_map = (2 * mu_x * mu_des + _MEF_C1) / (mu_x * mu_x + mu_des * mu_des + _MEF_C1)

    # Scale weights are [1] in the official MEF_MSSSIM, so the value is l^1 * cs^1 of one scale:
    # a product of means, not the mean of the product.
    return l_map.mean() * cs_map.mean()


@_no_autocast
def signed_gradient(img: Tensor) -> Tensor:
    """Official signed gradient conv(I, Kx) + conv(I, Ky), zero pad 1, summed over channels: (B,C,H,W) -> (B,1,H,W)."""
    img = _fp32(img)
    gxy = F.conv2d(img, _signed_grad_kernel(img.shape[1], img.device, img.dtype), padding=1)  # (B, 2, H, W)
    return gxy[:, 0:1] + gxy[:, 1:2]


@_no_autocast
def max_gradient_loss(
    fused: Tensor, a: Tensor, b: Tensor | None = None, *, weight: float = MAX_GRAD_WEIGHT
) -> Tensor:
    """weight * mean|g(F) - T|, T = g(A) where |g(A)| >= |g(B)| else g(B) (g(A) if b is None); default weight 3."""
    with torch.no_grad():
        # The target is a constant of the sources: keep it out of the graph.
        ga = signed_gradient(a)
        if b is None:
            target = ga
        else:
            gb = signed_gradient(b)
            # Sign is kept: pick the signed value with the larger magnitude, A on ties.
            target = torch.where(ga.abs() >= gb.abs(), ga, gb)
    return weight * F.l1_loss(signed_gradient(fused), target)


@_no_autocast
def max_pixel_loss(
    fused: Tensor, a: Tensor, b: Tensor | None = None, *, weight: float = MAX_PIXEL_WEIGHT
) -> Tensor:
    """weight * mean|F - max(A, B)|, the elementwise max detached (mean|F - A| if b is None); default weight 1."""
    fused = _fp32(fused)
    target = _fp32(a) if b is None else torch.maximum(_fp32(a), _fp32(b)).detach()
    return weight * F.l1_loss(fused, target)


@_no_autocast
def pixel_loss(fused: Tensor, a: Tensor, b: Tensor, *, weight: float = PIXEL_WEIGHT) -> Tensor:
    """weight * mean|F - (A + B)/2| (official PixelLoss); default weight 3."""
    return weight * F.l1_loss(_fp32(fused), (_fp32(a) + _fp32(b)) / 2.0)


@_no_autocast
@torch.no_grad()
def mff_pseudo_ground_truth(a: Tensor, b: Tensor, patch: int = 16) -> Tensor:
    """MFF target O (B,3,H,W): each patch block copied whole from the source with the larger max Sobel (A on ties)."""
    a, b = _fp32(a), _fp32(b)
    bsz, c, h, w = a.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    k = _sobel_kernels(a.device, a.dtype)

    def patch_max(img: Tensor) -> Tensor:
        r, g, bl = img.unbind(dim=1)
        # Same expression (and rounding) as the official to_gray, so near-tie choices agree.
        gray = (_OFFICIAL_TO_GRAY[0] * r + _OFFICIAL_TO_GRAY[1] * g + _OFFICIAL_TO_GRAY[2] * bl).unsqueeze(1)  # (B, 1, H, W)
        sob = F.conv2d(gray, k, padding=1)  # (B, 2, H, W): Sobel x, Sobel y
        mag = sob.abs().sum(dim=1)  # (B, H, W): |gx| + |gy|
        return mag.view(bsz, h // patch, patch, w // patch, patch).amax(dim=(2, 4))  # (B, h, w)

    take_a = patch_max(a) >= patch_max(b)  # (B, h, w)
    # Broadcast the per-patch choice over the pixels and channels of each patch.
    mask = take_a[:, None, :, None, :, None]  # (B, 1, h, 1, w, 1)
    shape6 = (bsz, c, h // patch, patch, w // patch, patch)
    out = torch.where(mask, a.view(shape6), b.view(shape6))
    return out.reshape(bsz, c, h, w)


def _mir_part(prompts: Sequence[tuple[Tensor, Tensor]], where: str) -> Tensor:
    if len(prompts) == 0:
        raise ValueError(f"mir_loss needs at least one {where} TC-MoA module's prompts")
    pa = torch.stack([_fp32(p[0]) for p in prompts], dim=0)  # (n_mod, B, N, 1)
    pb = torch.stack([_fp32(p[1]) for p in prompts], dim=0)
    # Squared form (official MSE against ones), not the paper's |pA + pB - 1|.
    return ((pa + pb - 1.0) ** 2).mean()


def mir_loss(
    encoder_prompts: Sequence[tuple[Tensor, Tensor]],
    decoder_prompts: Sequence[tuple[Tensor, Tensor]],
) -> Tensor:
    """MIR = 0.75*mean_enc((pA+pB-1)^2) + 0.25*mean_dec((pA+pB-1)^2); prompts (B, N, 1) per module."""
    return 0.75 * _mir_part(encoder_prompts, "encoder") + 0.25 * _mir_part(decoder_prompts, "decoder")


# --------------------------------------------------------------------------------------------
# Per-task totals
# --------------------------------------------------------------------------------------------


def _task_index(task: int | str) -> int:
    if isinstance(task, str):
        if task.lower() not in OBJECTIVES:
            raise ValueError(f"unknown objective {task!r}; expected one of {OBJECTIVES}")
        return OBJECTIVES.index(task.lower())
    t = int(task)
    if t not in (VIF, MEF, MFF):
        raise ValueError(f"unknown objective index {task!r}; expected 0 (VIF), 1 (MEF) or 2 (MFF)")
    return t


@_no_autocast
def task_loss(task: int | str, fused: Tensor, a: Tensor, b: Tensor, encoder_prompts: Sequence[tuple[Tensor, Tensor]],
              decoder_prompts: Sequence[tuple[Tensor, Tensor]], aux_loss: Tensor | float, epoch: int,
              version: LossVersion | LossWeights = "2025", warmup_epochs: int = 2) -> dict[str, Tensor]:
    """Per-task loss {"loss": total, <term name>: term, ...} (official, or ours: "tcmoa"); fused/sources (B,3,H,W) in [0,1]."""
    t = _task_index(task)
    weights = version if isinstance(version, LossWeights) else LOSS_WEIGHTS[version]
    warmup = epoch < warmup_epochs
    pw = weights.phase(t, warmup)
    fused, a, b = _fp32(fused), _fp32(a), _fp32(b)
    target_o = mff_pseudo_ground_truth(a, b) if t == MFF else None

    # Each term is computed only when it enters the total (the official code also computes a few
    # unused ones, e.g. MFF's max-grad in warm-up; they change nothing).
    def compute(field: str) -> Tensor:
        if field == "pixel":
            return max_pixel_loss(fused, target_o) if target_o is not None else pixel_loss(fused, a, b)
        if field == "max_pixel":
            return max_pixel_loss(fused, a, b)
        if field == "max_grad":
            return max_gradient_loss(fused, target_o) if target_o is not None else max_gradient_loss(fused, a, b)
        if field == "ssim":
            if target_o is not None:
                return 1.0 - official_ssim(fused, target_o)
            return ((1.0 - official_ssim(fused, a)) + (1.0 - official_ssim(fused, b))) / 2.0
        if field == "mef_ssim":
            return 1.0 - official_mef_ssim(fused, (a, b))
        if field == "mir":
            return mir_loss(encoder_prompts, decoder_prompts)
        if field == "clip_pixel":
            return clip_aware_pixel_loss(fused, a, b)
        if field == "detail":
            return multiscale_detail_loss(fused, a, b)
        if field == "contrast":
            return local_contrast_loss(fused, a, b)
        if field == "mefb_ssim":
            return 1.0 - differentiable_mefb_mef_ssim(fused, [a, b]).mean().float()
        raise AssertionError(field)

    aux = torch.as_tensor(aux_loss, device=fused.device, dtype=fused.dtype)
    aux_div = float(epoch + 1) if weights.aux_epoch_decay else 1.0
    return _weighted_total(compute, pw, LOGGED_TERMS[(t, warmup)], aux, aux_div)


def _weighted_total(compute: Callable[[str], Tensor], pw: PhaseWeights, official_logged: tuple[str, ...],
                    aux: Tensor, aux_div: float) -> dict[str, Tensor]:
    """{"loss": scale * sum(w * term) + aux weight * aux / aux_div, and the logged terms}; `compute(field)`: one term."""
    ours = tuple(TERM_NAMES[f] for f in ("clip_pixel", "detail", "contrast", "mefb_ssim") if getattr(pw, f) != 0.0)
    logged = official_logged + ours
    terms: dict[str, Tensor] = {}
    bracket = aux.new_zeros(())
    for field, name in TERM_NAMES.items():
        w = getattr(pw, field)
        if w != 0.0 or name in logged:  # a custom LossWeights may zero a logged term: still log it
            terms[name] = compute(field)
        if w != 0.0:
            bracket = bracket + w * terms[name]
    # The aux loss is logged undivided; v2025 divides it by (epoch + 1) in the total only.
    terms["aux_loss"] = aux
    total = pw.scale * bracket + pw.aux * aux / aux_div
    out: dict[str, Tensor] = {"loss": total}
    for name in logged:
        out[name] = terms[name]
    return out
