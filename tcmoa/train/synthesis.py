"""Batched, on-device synthesis of training pairs: multi-exposure (MEF) and multi-focus (MFF).

Every function works on a (B, C, H, W) float batch in [0, 1] on any device, draws all of its
randomness from one `torch.Generator` (per-sample parameters, no Python loop over samples), and
is reproducible for a fixed seed on a fixed device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

def as_generator(generator: torch.Generator | int | None, device: torch.device | str) -> torch.Generator | None:
    """An int seed becomes a fresh generator on `device`; a generator or None passes through."""
    if isinstance(generator, int):
        return torch.Generator(device=device).manual_seed(generator)
    return generator


def rand(g: torch.Generator | None, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """U(0,1) drawn on the generator's own device (so a CPU generator also drives CUDA data), moved to `device`."""
    src = g.device if g is not None else device
    return torch.rand(shape, generator=g, device=src).to(device)


def randn(g: torch.Generator | None, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """N(0,1) drawn on the generator's own device, moved to `device`."""
    src = g.device if g is not None else device
    return torch.randn(shape, generator=g, device=src).to(device)


def uniform(g: torch.Generator | None, n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    """Per-sample U(lo, hi) shaped (n, 1, 1, 1) to broadcast over images."""
    return lo + (hi - lo) * rand(g, (n, 1, 1, 1), device)


# --- multi-exposure --------------------------------------------------------------------------
# Parameter ranges (per sample): display gamma undone 2.0-2.4; exposure factors 2^-U(ev) (under)
# and 2^+U(ev) (over), ev = (1, 3) stops; camera response = gamma 1/U(1.8, 2.6), followed with
# probability 0.5 by an S-curve y^c / (y^c + (1-y)^c), c ~ U(1.2, 2.0); sensor noise in linear
# units: shot-noise variance k*x with k ~ logU(1e-4, 2e-3), read-noise std r ~ logU(5e-4, 3e-3);
# the under frame also gets an ISO gain ~ U(1, 4) that amplifies its noise (variance k*g*x + (g*r)^2);
# clipping at 1 (sensor saturation) before the response; outputs quantised to 8 bits.
EXPOSURE_EV = (1.0, 3.0)


def synthesize_exposure_pair(
    img: Tensor, generator: torch.Generator | int | None = None, ev: tuple[float, float] = EXPOSURE_EV
) -> tuple[Tensor, Tensor]:
    """(over, under) exposures of a (B,3,H,W) [0,1] batch of well-exposed images, each (B,3,H,W) in [0,1]."""
    b, dev = img.shape[0], img.device
    g = as_generator(generator, dev)
    u = lambda lo, hi: uniform(g, b, lo, hi, dev)  # noqa: E731
    lin = img.float().clamp(0, 1) ** u(2.0, 2.4)  # back to (roughly) linear radiance
    under_f, over_f = 2.0 ** -u(*ev), 2.0 ** u(*ev)
    k, r = 10.0 ** u(-4.0, math.log10(2e-3)), 10.0 ** u(math.log10(5e-4), math.log10(3e-3))
    iso = u(1.0, 4.0)
    gamma = u(1.8, 2.6)
    contrast = torch.where(rand(g, (b, 1, 1, 1), dev) < 0.5, u(1.2, 2.0), torch.ones_like(gamma))

    def sense(x: Tensor, gain: Tensor) -> Tensor:
        # Shot + read noise; gain > 1 models a higher ISO (fewer photons, amplified noise).
        std = torch.sqrt(k * gain * x.clamp(min=0) + (gain * r) ** 2)
        return (x + std * randn(g, tuple(x.shape), dev)).clamp(0, 1)

    def response(x: Tensor) -> Tensor:
        y = x ** (1.0 / gamma)
        yc = y**contrast
        y = yc / (yc + (1 - y) ** contrast)  # contrast 1 leaves y unchanged
        return torch.round(y * 255) / 255

    over = response(sense(lin * over_f, torch.ones_like(iso)))
    under = response(sense(lin * under_f, iso))
    return over, under


# --- multi-focus -----------------------------------------------------------------------------
FOCUS_SIGMA = (1.0, 4.0)


def gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian blur of (B,C,H,W) with a per-sample sigma (B,), as one grouped conv per axis."""
    b, c, h, w = x.shape
    rad = max(1, min(math.ceil(3 * max_sigma), h - 1, w - 1))  # static radius: no device sync
    t = torch.arange(-rad, rad + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.to(x.dtype)[:, None] ** 2))  # (B, 2r+1)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1): one filter per channel
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def random_blob_mask(
    b: int, h: int, w: int, generator: torch.Generator | int | None, device: torch.device,
    coverage: tuple[float, float] = (0.3, 0.7),
) -> Tensor:
    """Smooth random (B,1,H,W) masks in [0,1]: blobby regions with soft edges covering ~U(coverage) of the image."""
    g = as_generator(generator, device)
    # Two octaves of a coarse Gaussian field, bicubically upsampled: one to three blobs of random shape.
    f = F.interpolate(randn(g, (b, 1, 3, 3), device), size=(h, w), mode="bicubic", align_corners=False)
    f2 = F.interpolate(randn(g, (b, 1, 6, 6), device), size=(h, w), mode="bicubic", align_corners=False)
    f = f + uniform(g, b, 0.0, 0.7, device) * f2
    f = (f - f.mean((2, 3), keepdim=True)) / (f.std((2, 3), keepdim=True) + 1e-6)
    cov = uniform(g, b, *coverage, device)
    thr = math.sqrt(2) * torch.erfinv(1 - 2 * cov)  # Gaussian quantile: ~cov of the field lies above it
    soft = uniform(g, b, 0.05, 0.2, device)  # edge width ~ soft / |grad f|: a few pixels
    return torch.sigmoid((f - thr) / soft)


def synthesize_focus_pair(
    img: Tensor, generator: torch.Generator | int | None = None, sigma: tuple[float, float] = FOCUS_SIGMA
) -> tuple[Tensor, Tensor, Tensor]:
    """(far, near, mask) from an all-in-focus (B,C,H,W) batch: near is sharp where mask=1, far sharp where mask=0."""
    b, c, h, w = img.shape
    dev = img.device
    g = as_generator(generator, dev)
    img = img.float()
    mask = random_blob_mask(b, h, w, g, dev)  # (B,1,H,W)
    # Independent defocus for the two frames: one blur of the 2B stack.
    sig = sigma[0] + (sigma[1] - sigma[0]) * rand(g, (2 * b,), dev)
    blur = gaussian_blur(torch.cat([img, img]), sig, sigma[1])
    near = mask * img + (1 - mask) * blur[:b]
    far = mask * blur[b:] + (1 - mask) * img
    return far, near, mask
