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

from ..model import pyramid
from ..model.fusion_head import band_energy, clipped, luma

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
