"""Our loss terms (not the official code's): keep detail at every scale, keep contrast, never reward clipping.

The official VIF loss pulls the fused image towards max(A, B) in intensity and towards the larger
gradient. Where a headlight saturates the visible image, max(A, B) is the white blob, so the loss
rewards hiding what the infrared sees there. These terms fix that and look at more than one scale:

* `clip_aware_pixel_loss`: L1 to max(A', B'), where A' is A with its clipped pixels replaced by B's
  (and B' likewise): a clipped source gives way to the other's intensity.
* `multiscale_detail_loss`: L1 between the fused image's Laplacian bands and, per pixel and band, the
  band of the source with the larger local band energy, discounted where it is clipped, at 4 scales.
* `local_contrast_loss`: hinge on the local standard deviation at 4 scales: the fused image should
  have at least the larger of the sources' local SDs (a clipped source's is ~0, so the other's counts).

All take (B, 3, H, W) images in [0, 1] and work on luma (BT.601); the source-derived targets are
constants (no gradient). tcmoa/train/loss_weights.py says which recipe uses them, and how much.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics.vifb import (MEF_SSIM_C, MEF_SSIM_CONTRAST_FLOOR, MEF_SSIM_MAX_EXPONENT, MEF_SSIM_PATCH,
                            MEF_SSIM_SCALE_WEIGHTS, MEF_SSIM_WINDOW)
from ..model import pyramid
from ..model.pyramid_head import band_energy, clipped, luma

DETAIL_LEVELS = 4  # band-pass levels judged: 1, 2, 4 and 8 px structures
CONTRAST_LEVELS = 4  # local SD at windows of ~5, 10, 20 and 40 px


def clip_aware_pixel_loss(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """mean |F - max(A', B')|, A' = A with its clipped pixels taken from B (B' likewise)."""
    with torch.no_grad():
        ca, cb = clipped(luma(a)).clamp(max=1), clipped(luma(b)).clamp(max=1)  # (B, 1, H, W)
        a2 = torch.lerp(a.float(), b.float(), ca)
        b2 = torch.lerp(b.float(), a.float(), cb)
        target = torch.maximum(a2, b2)
    return F.l1_loss(fused.float(), target)


def multiscale_detail_loss(fused: Tensor, a: Tensor, b: Tensor, levels: int = DETAIL_LEVELS) -> Tensor:
    """Sum over band-pass levels of mean |F_l - T_l|, T_l the band of the source with more (unclipped) local energy.

    A source's energy is scaled by the fraction of its unclipped pixels at that level: at coarse
    scales the outline of a glare blob is the strongest "structure", and it must not win.
    """
    pf = pyramid.laplacian(luma(fused), levels + 1)
    targets = detail_targets(a, b, levels)
    return torch.stack([F.l1_loss(f, t) for f, t in zip(pf[:levels], targets)]).sum()


@torch.no_grad()
def detail_targets(a: Tensor, b: Tensor, levels: int = DETAIL_LEVELS) -> list[Tensor]:
    """Per band-pass level (finest first), the luma band of the source with more unclipped energy, (B, 1, h, w)."""
    ya, yb = luma(a), luma(b)
    pa, pb = pyramid.laplacian(ya, levels + 1), pyramid.laplacian(yb, levels + 1)
    # (1 - clipped fraction)^4: a nearly all-clipped region's energy (its rim, seen at coarse levels) is ~0.
    ua = [(1 - c.clamp(max=1)) ** 4 for c in pyramid.gaussian(clipped(ya), levels)]
    ub = [(1 - c.clamp(max=1)) ** 4 for c in pyramid.gaussian(clipped(yb), levels)]
    return [torch.where(band_energy(la) * wa >= band_energy(lb) * wb, la, lb) for la, lb, wa, wb in zip(pa, pb, ua, ub)]


def local_sd(x: Tensor) -> Tensor:
    """Local standard deviation under the 5x5 binomial window, (B, 1, h, w)."""
    mean = pyramid.blur(x)
    return (pyramid.blur(x * x) - mean * mean).clamp(min=0).add(1e-6).sqrt()


def local_contrast_loss(fused: Tensor, a: Tensor, b: Tensor, levels: int = CONTRAST_LEVELS) -> Tensor:
    """Sum over scales of mean relu(max(SD_A, SD_B) - SD_F): contrast may grow, never fall below the sources'."""
    gf = pyramid.gaussian(luma(fused), levels)
    with torch.no_grad():
        ga, gb = pyramid.gaussian(luma(a), levels), pyramid.gaussian(luma(b), levels)
        targets = [torch.maximum(local_sd(x), local_sd(y)) for x, y in zip(ga, gb)]
    return torch.stack([F.relu(t - local_sd(f)).mean() for f, t in zip(gf, targets)]).sum()


# MEFB's MEF-SSIM in torch, so that training can follow its gradient: the same computation as the
# metric tcmoa.metrics.vifb.mefb_mef_ssim (numpy), with the metric's constants, in float64 on the
# metric's 0..255 scale so the constants mean what they mean there.
_MEF_EPS = float(torch.finfo(torch.float64).eps)


def _valid_gauss(x: Tensor, g: Tensor) -> Tensor:
    """Separable 'valid' correlation of (B, 1, H, W) with the 1-D window g."""
    return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))


def _mef_ssim_level(seq: list[Tensor], f: Tensor) -> Tensor:
    """One scale: mean local score per image, (B,); seq and f are (B, 1, H, W) float64 on 0..255."""
    n, nn = MEF_SSIM_PATCH, float(MEF_SSIM_PATCH * MEF_SSIM_PATCH)
    box = lambda x: F.avg_pool2d(x, n, stride=1) * nn  # noqa: E731  (sum over every 11x11 window)
    k_n = len(seq)
    with torch.no_grad():  # the desired structure depends on the sources only
        s1 = [box(x) for x in seq]
        mu = [s / nn for s in s1]
        pairs = [(k, m) for k in range(k_n) for m in range(k, k_n)]
        cov = {(k, m): box(seq[k] * seq[m]) - s1[k] * s1[m] / nn for k, m in pairs}
        norms = [cov[(k, k)].clamp(min=0).sqrt() for k in range(k_n)]
        ed = [v + MEF_SSIM_CONTRAST_FLOOR for v in norms]
        ysq = torch.stack([cov[(k, m)] * (1.0 if k == m else 2.0) for k, m in pairs]).sum(0)
        r = ((ysq.clamp(min=0).sqrt() + _MEF_EPS) / (sum(norms) + _MEF_EPS)).clamp(_MEF_EPS, 1 - _MEF_EPS)
        p = torch.tan(torch.pi / 2 * r).clamp(max=MEF_SSIM_MAX_EXPONENT)
        wts = [(e / n) ** p + _MEF_EPS for e in ed]
        coef = [w / sum(wts) / e for w, e in zip(wts, ed)]
        rnorm = torch.stack([coef[k] * coef[m] * c * (1.0 if k == m else 2.0)
                             for (k, m), c in cov.items()]).sum(0).clamp(min=0).sqrt()
        peak = torch.stack(ed).amax(0)  # the desired contrast: the largest source's
        scale = torch.where(rnorm > 0, peak / torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm)), torch.ones_like(rnorm))
        g = torch.from_numpy(MEF_SSIM_WINDOW).to(f.device)
        gx = [_valid_gauss(x, g) for x in seq]
        mu1 = scale * sum(c * (gk - m) for c, gk, m in zip(coef, gx, mu))
        er2 = sum(coef[k] * coef[m] * (_valid_gauss(seq[k] * seq[m], g) - mu[m] * gx[k] - mu[k] * gx[m] + mu[k] * mu[m])
                  * (1.0 if k == m else 2.0) for k, m in pairs)
        sig1 = scale * scale * er2 - mu1 * mu1
    gf = _valid_gauss(f, g)
    sig2 = _valid_gauss(f * f, g) - gf * gf
    erf = scale * sum(c * (_valid_gauss(x * f, g) - m * gf) for c, x, m in zip(coef, seq, mu))
    sig12 = erf - mu1 * gf
    return ((2 * sig12 + MEF_SSIM_C) / (sig1 + sig2 + MEF_SSIM_C)).mean(dim=(1, 2, 3))


def _half_downsample(x: Tensor) -> Tensor:
    """2x2 mean with symmetric padding at the far edges, every 2nd pixel (MATLAB's anchor)."""
    return F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)[..., ::2, ::2]


def differentiable_mefb_mef_ssim(fused: Tensor, sources: list[Tensor]) -> Tensor:
    """MEFB's 3-scale MEF-SSIM of fused vs sources, (B, 3, H, W) in [0, 1] -> (B,), differentiable in fused.

    The training form of the metric tcmoa.metrics.vifb.mefb_mef_ssim, on BT.601 luma where the metric
    takes MATLAB's rounded rgb2gray; a score is floored at 1e-6 per scale so its logarithm stays finite.
    """
    f = luma(fused).double() * 255
    seq = [luma(s).double() * 255 for s in sources]
    score = torch.ones(f.shape[0], dtype=torch.float64, device=f.device)
    for level, weight in enumerate(MEF_SSIM_SCALE_WEIGHTS):
        if level:
            seq, f = [_half_downsample(x) for x in seq], _half_downsample(f)
        score = score * _mef_ssim_level(seq, f).clamp(min=1e-6) ** weight
    return score


