"""Laplacian pyramids in torch: the multi-scale output head and the multi-scale losses share them.

Burt and Adelson's pyramid with the 5-tap binomial kernel (1, 4, 6, 4, 1) / 16 and mirrored borders:
`down` blurs and keeps every second pixel, `up` puts the samples back on the even pixels of the
finer grid and blurs with 4x the kernel. Each band-pass level is `x - up(down(x))`, so `collapse`
rebuilds the input exactly (to float rounding) for any size and any number of levels, whatever the
border handling. Everything is depthwise over channels: (B, C, H, W) in, the same C out.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)


@functools.lru_cache(maxsize=None)
def _kernel(channels: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    # (C, 1, 5, 1) and (C, 1, 1, 5): the separable binomial kernel for a depthwise conv.
    with torch.inference_mode(False), torch.no_grad():
        k = torch.tensor(_TAPS, dtype=torch.float64)
        k = (k / k.sum()).to(device=device, dtype=dtype)
        return (k.view(1, 1, 5, 1).expand(channels, 1, 5, 1).contiguous(),
                k.view(1, 1, 1, 5).expand(channels, 1, 1, 5).contiguous())


def blur(x: Tensor) -> Tensor:
    """Binomial 5x5 blur with mirrored borders, (B, C, H, W) -> same shape."""
    c = x.shape[1]
    kv, kh = _kernel(c, x.device, x.dtype)
    # Mirroring needs 3 px per side; tiny levels (< 3 px) fall back to replicated borders.
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode=mode), kv, groups=c)
    return F.conv2d(F.pad(x, (2, 2, 0, 0), mode=mode), kh, groups=c)


def down(x: Tensor) -> Tensor:
    """Blur and halve: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    return blur(x)[..., ::2, ::2]


def up(x: Tensor, size: Sequence[int]) -> Tensor:
    """Expand to `size` (at most twice x's): samples on the even pixels, then 4x the blur."""
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, *size)
    z[..., ::2, ::2] = x[..., : (size[0] + 1) // 2, : (size[1] + 1) // 2]
    return blur(z) * 4


def laplacian(x: Tensor, levels: int) -> list[Tensor]:
    """`levels - 1` band-pass images (finest first), then the low-pass base: `levels` tensors."""
    bands = []
    for _ in range(levels - 1):
        low = down(x)
        bands.append(x - up(low, x.shape[-2:]))
        x = low
    return bands + [x]


def gaussian(x: Tensor, levels: int) -> list[Tensor]:
    """x and its `levels - 1` successive `down`s: the level sizes `laplacian` uses."""
    out = [x]
    for _ in range(levels - 1):
        out.append(down(out[-1]))
    return out


def collapse(pyramid: list[Tensor]) -> Tensor:
    """Inverse of `laplacian`: expand the base and add the bands back, coarsest first."""
    x = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        x = band + up(x, band.shape[-2:])
    return x
