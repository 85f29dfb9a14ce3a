"""Device-resident image banks: variable-size uint8 images back to back, cropped in batches by one gather.

A bank holds a group's images as (P, 4|8) uint8 rows on the training device (pairs: A RGB then B RGB,
grey replicated, padded to 8 bytes), so one gather crops both sources of a pair at the same place.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .synthesis import as_generator, rand


class ImageBank:
    """Variable-size uint8 images on one device, stored back to back as (P, 4|8) rows for batched gathers."""

    antialias = True  # default of sample(); False is ~4x cheaper (CPU smoke runs), aliasing downscaled crops

    def __init__(self, pixels: Tensor, sizes: Tensor, name: str = "", info: dict | None = None,
                 channels: int | None = None):
        self.channels = channels or pixels.shape[1]  # 3 for single images, 6 for pairs
        width = 4 if self.channels <= 4 else 8
        if pixels.shape[1] != width:  # zero-pad each pixel to 4/8 bytes: one int32/int64 word per gather
            pixels = torch.cat([pixels, pixels.new_zeros(pixels.shape[0], width - pixels.shape[1])], 1)
        self.pixels = pixels.contiguous()  # (P, 4|8) uint8: image i is rows offsets[i] .. +h*w, row-major
        self._words = self.pixels.view(torch.int32 if width == 4 else torch.int64).view(-1)  # (P,)
        self.sizes = sizes.to(pixels.device, torch.int64)  # (N, 2) (h, w)
        hw = self.sizes.prod(1)
        self.offsets = torch.cumsum(hw, 0) - hw  # (N,)
        self.name, self.info = name, info or {}
        s = sizes.cpu().long()  # host copies of the bounds: no device sync per batch
        self.max_h, self.max_w, self.max_area = int(s[:, 0].max()), int(s[:, 1].max()), int(s.prod(1).max())

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], device: str | torch.device = "cpu",
                    name: str = "") -> ImageBank:
        """A bank from (h, w, C) uint8 arrays (all with the same C)."""
        rows = [np.asarray(a, np.uint8).reshape(-1, a.shape[2]) for a in images]
        sizes = torch.tensor([a.shape[:2] for a in images], dtype=torch.int64)
        return cls(torch.from_numpy(np.concatenate(rows)).to(device), sizes, name)

    def __len__(self) -> int:
        return self.sizes.shape[0]

    @property
    def device(self) -> torch.device:
        """The device holding the pixels."""
        return self.pixels.device

    def image(self, i: int) -> Tensor:
        """Image i as (C, h, w) uint8."""
        h, w = self.sizes[i].tolist()
        o = int(self.offsets[i])
        return self.pixels[o: o + h * w, : self.channels].reshape(h, w, -1).permute(2, 0, 1)

    def sample(
        self, batch: int, size: int, scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = True,
        generator: torch.Generator | int | None = None, antialias: bool | None = None, index: Tensor | None = None,
        zoom: tuple[float, float] | None = None,
    ) -> Tensor:
        """Random resized crops of random images (or `index`), (B, C, size, size) float in [0, 1].

        `scale`: crop area / image area (RandomResizedCrop). `zoom` replaces it: crop side / `size` in
        image pixels (capped by the image), so crops show scenes at about the scale they are fused at.
        """
        dev = self.device
        g = as_generator(generator, dev)
        if index is None:
            index = (rand(g, (batch,), dev) * len(self)).long().clamp_(max=len(self) - 1)
        idx = index.to(dev)
        h, w = self.sizes[idx, 0], self.sizes[idx, 1]  # (B,)
        area = (h * w).float()[:, None]  # zoom -> per-image area fractions (B, 1)
        box_scale = scale if zoom is None else tuple(((size * z) ** 2 / area).clamp(max=1.0) for z in zoom)
        x0, y0, cw, ch = _crop_boxes(h.float(), w.float(), box_scale, ratio, g)
        # Supersample k× and box-filter down: antialiasing for downscaled crops, bounded statically.
        widest = max(ratio[1], 1 / ratio[0])
        longest = (size * zoom[1] * math.sqrt(widest) if zoom is not None
                   else min(max(self.max_h, self.max_w), math.sqrt(scale[1] * self.max_area * widest)))
        aa = self.antialias if antialias is None else antialias
        k = max(1, min(4, math.ceil(longest / size - 0.05))) if aa else 1
        n = size * k
        t = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) / n  # (n,) cell centres in [0, 1]
        xs = x0[:, None] + t * cw[:, None] - 0.5  # (B, n) source pixel coordinates (pixel centres at .0)
        ys = y0[:, None] + t * ch[:, None] - 0.5
        if hflip:
            flip = rand(g, (batch, 1), dev) < 0.5
            xs = torch.where(flip, xs.flip(1), xs)  # mirrored sampling grid = flipped crop, all channels
        out = self._bilinear(idx, h, w, ys, xs)  # (B, C, n, n) in [0, 255]
        if k > 1:
            out = F.avg_pool2d(out, k)
        return out.div_(255)

    def _bilinear(self, idx: Tensor, h: Tensor, w: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
        """Bilinear samples (B, C, ny, nx) of images idx at ys (B, ny) × xs (B, nx), edges clamped."""
        b, ny, nx, c = idx.shape[0], ys.shape[1], xs.shape[1], self.channels

        def axis(v: Tensor, n: Tensor):
            f = v.floor()
            i0 = f.long().clamp(min=0)
            top = (n - 1)[:, None]
            return torch.minimum(i0, top), torch.minimum((f.long() + 1).clamp(min=0), top), v - f

        y0, y1, fy = axis(ys, h)
        x0, x1, fx = axis(xs, w)
        base, wb = self.offsets[idx][:, None, None], w[:, None, None]

        def gather(yi: Tensor, xi: Tensor) -> Tensor:
            rows = (base + yi[:, :, None] * wb + xi[:, None, :]).reshape(-1)
            words = self._words.index_select(0, rows)  # one word = one pixel, all channels
            return words.view(torch.uint8).view(b, ny, nx, -1)[..., :c].float()

        fx, fy = fx[:, None, :, None], fy[:, :, None, None]
        top = torch.lerp(gather(y0, x0), gather(y0, x1), fx)
        bot = torch.lerp(gather(y1, x0), gather(y1, x1), fx)
        return torch.lerp(top, bot, fy).permute(0, 3, 1, 2)


def _crop_boxes(h: Tensor, w: Tensor, scale: tuple, ratio: tuple[float, float],
                g: torch.Generator | None, tries: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RandomResizedCrop boxes (x0, y0, cw, ch), each (B,), for images h × w (B,); scale bounds: floats or (B, 1)."""
    b, dev = h.shape[0], h.device
    area = (h * w)[:, None]
    target = area * (scale[0] + (scale[1] - scale[0]) * rand(g, (b, tries), dev))
    lr = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lr[0] + (lr[1] - lr[0]) * rand(g, (b, tries), dev))
    cw, ch = torch.sqrt(target * aspect), torch.sqrt(target / aspect)  # (B, tries)
    ok = (cw <= w[:, None]) & (ch <= h[:, None])
    first = ok.int().argmax(1, keepdim=True)  # first valid try, like torchvision's loop
    cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]
    # Fallback (no valid try): the whole image, cut to the nearest allowed aspect ratio.
    fw = torch.minimum(w, h * ratio[1])
    fh = torch.minimum(h, w / ratio[0])
    found = ok.any(1)
    cw, ch = torch.where(found, cw, fw), torch.where(found, ch, fh)
    pos = rand(g, (b, 2), dev)
    return pos[:, 0] * (w - cw), pos[:, 1] * (h - ch), cw, ch
