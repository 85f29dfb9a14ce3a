"""Laplacian pyramids in torch: the multi-scale output head and the multi-scale losses share them.

Burt and Adelson's pyramid with the 5-tap binomial kernel (1, 4, 6, 4, 1) / 16 and mirrored borders:
`down` blurs and keeps every second pixel, `up` puts the samples back on the even pixels of the
finer grid and blurs with 4x the kernel. Each band-pass level is `x - up(down(x))`, so `collapse`
rebuilds the input exactly (to float rounding) for any size and any number of levels, whatever the
border handling. Everything is depthwise over channels: (B, C, H, W) in, the same C out.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

KERNEL = (1.0, 4.0, 6.0, 4.0, 1.0)  # the binomial taps; divided by their sum, 16
_KERNEL_1D = np.array(KERNEL, dtype=np.float32) / 16


def _opencv_ok(x: Tensor) -> bool:
    """Whether OpenCV may compute this (no gradient needed, float32 on the CPU, mirrorable borders).

    OpenCV's separable filter and pyrDown read each plane once with SIMD and no strided temporaries:
    about 10x faster than torch on a 12 MP image, equal to the torch path up to float rounding
    (tests/test_fusion_head.py). Training, which needs gradients, takes the torch path.
    """
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    return not needs_grad and x.device.type == "cpu" and x.dtype == torch.float32 and min(x.shape[-2:]) > 2


def _per_plane(x: Tensor, size: Sequence[int], op: Callable[[np.ndarray, np.ndarray], object]) -> Tensor:
    """Apply `op(src_plane, dst_plane)` to every (H, W) plane of x (B, C, H, W) into a new (B, C, *size)."""
    x = x.contiguous()
    out = torch.empty(*x.shape[:-2], *size, dtype=x.dtype)
    for src, dst in zip(x.reshape(-1, *x.shape[-2:]).numpy(), out.view(-1, *size).numpy()):
        op(src, dst)
    return out


def blur(x: Tensor) -> Tensor:
    """Binomial 5x5 blur, (1, 4, 6, 4, 1)^2 / 256, with mirrored borders: (B, C, H, W) -> same shape.

    Without gradients, OpenCV's separable filter (`_opencv_ok`). With them, shifted sums of one padded
    tensor: on a CPU ~5x faster than two depthwise convolutions (which oneDNN runs slowly for 5x1 kernels).
    """
    h, w = x.shape[-2:]
    if _opencv_ok(x):
        return _per_plane(x, (h, w), lambda src, dst: cv2.sepFilter2D(
            src, cv2.CV_32F, _KERNEL_1D, _KERNEL_1D, dst=dst, borderType=cv2.BORDER_REFLECT_101))
    # Mirroring needs 3 px per side; tiny levels (< 3 px) fall back to replicated borders.
    p = F.pad(x, (2, 2, 2, 2), mode="reflect" if min(h, w) > 2 else "replicate")
    v = (p[..., 0:h, :] + p[..., 4:h + 4, :]) + 4 * (p[..., 1:h + 1, :] + p[..., 3:h + 3, :]) + 6 * p[..., 2:h + 2, :]
    return ((v[..., 0:w] + v[..., 4:w + 4]) + 4 * (v[..., 1:w + 1] + v[..., 3:w + 3]) + 6 * v[..., 2:w + 2]) / 256


def down(x: Tensor) -> Tensor:
    """Blur and halve: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)) (OpenCV's pyrDown computes just those)."""
    h, w = x.shape[-2:]
    if _opencv_ok(x):
        size = ((h + 1) // 2, (w + 1) // 2)
        return _per_plane(x, size, lambda src, dst: cv2.pyrDown(src, dst=dst, dstsize=size[::-1]))
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


def level_sizes(size: Sequence[int], count: int) -> list[tuple[int, int]]:
    """The sizes of `count` pyramid levels of an image of `size`, finest first (each half, rounded up)."""
    sizes = [(int(size[0]), int(size[1]))]
    for _ in range(count - 1):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes
