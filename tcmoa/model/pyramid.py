"""Laplacian pyramids in torch: the multi-scale output head and the multi-scale losses share them.

Burt and Adelson's pyramid with the 5-tap binomial kernel (1, 4, 6, 4, 1) / 16 and mirrored borders:
`down` blurs and keeps every second pixel, `up` puts the samples back on the even pixels of the
finer grid and blurs with 4x the kernel. Each band-pass level is `x - up(down(x))`, so `collapse`
rebuilds the input exactly (to float rounding) for any size and any number of levels, whatever the
border handling. Everything is depthwise over channels: (B, C, H, W) in, the same C out.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor


def blur(x: Tensor) -> Tensor:
    """Binomial 5x5 blur, (1, 4, 6, 4, 1)^2 / 256, with mirrored borders: (B, C, H, W) -> same shape.

    Written as shifted sums of one padded tensor: on a CPU this is ~5x faster than two depthwise
    convolutions (which oneDNN runs slowly for 5x1 kernels), equal to them up to float rounding.
    """
    h, w = x.shape[-2:]
    # Mirroring needs 3 px per side; tiny levels (< 3 px) fall back to replicated borders.
    p = F.pad(x, (2, 2, 2, 2), mode="reflect" if min(h, w) > 2 else "replicate")
    v = (p[..., 0:h, :] + p[..., 4:h + 4, :]) + 4 * (p[..., 1:h + 1, :] + p[..., 3:h + 3, :]) + 6 * p[..., 2:h + 2, :]
    return ((v[..., 0:w] + v[..., 4:w + 4]) + 4 * (v[..., 1:w + 1] + v[..., 3:w + 3]) + 6 * v[..., 2:w + 2]) / 256


def down(x: Tensor) -> Tensor:
    """Blur and halve: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    return blur(x)[..., ::2, ::2]


def up(x: Tensor, size: Sequence[int]) -> Tensor:
    """Expand to `size` (at most twice x's): samples on the even pixels, then 4x the blur."""
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, *size)
    z[..., ::2, ::2] = x[..., : (size[0] + 1) // 2, : (size[1] + 1) // 2]
    if min(size) > 2:
        return blur(z) * 4  # mirrored borders: every output pixel sees taps of weight exactly 1/4 of samples
    # 1-2 px levels pad by replication, which repeats the samples: divide by the weight the samples
    # actually got (a constant must expand to the same constant, or its band-pass is not 0).
    mask = x.new_zeros(1, 1, *size)
    mask[..., ::2, ::2] = 1
    return blur(z) / blur(mask)


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
