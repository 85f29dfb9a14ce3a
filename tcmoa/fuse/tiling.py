"""Overlapping tiles blended smoothly, so any image size runs within a fixed memory budget."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The default memory budget: tiles of at most 2176² ≈ 4.7 MP (about 1.3 GB of activations for the
# compact model on the CPU). Images up to that size run whole; 8 and 16 MP (4:3 or square) in 2 or
# 4 tiles, within 10% of the untiled cost (benchmarks/speed.py --sweep).
DEFAULT_TILE_SIZE = 2176
# Neighbouring tiles overlap by 128 px, blended by a raised-cosine ramp: a tile's border tokens see no
# context beyond it, and 128 px is 2 of the compact model's 8x8-token attention windows (16 tokens) —
# the ramp gives the border's tokens, which differ most from the whole image's, the least weight.
DEFAULT_TILE_OVERLAP = 128
# Tiles per model call: small tiles share a call (less per-call overhead), never more pixels than one
# full tile (the runner caps a batch by the pixel budget), so a batch never raises the memory peak.
DEFAULT_TILE_BATCH = 4

@dataclass(frozen=True)
class Tile:
    """One tile: its top-left corner and size in pixels."""

    top: int
    left: int
    height: int
    width: int

    def padded_area(self, multiple: int) -> int:
        """The pixels the model computes for this tile: its sides padded to whole `multiple`s."""
        return -(-self.height // multiple) * multiple * (-(-self.width // multiple) * multiple)


def tile_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` px overlapping by >= `overlap`.

    Offsets are multiples of `align` (one token) so every tile's token grid lines up with the
    whole image's; the last tile is anchored to the far edge. Starts are spread evenly and rounded
    up to whole tokens in integer arithmetic, so no step exceeds `tile - overlap` (proof: each
    step is at most ceil(last / (count - 1)) tokens, and count is chosen so that this fits).
    """
    if tile <= 0 or align <= 0 or overlap < 0:
        raise ValueError(f"tile ({tile}) and align ({align}) must be positive and overlap ({overlap}) >= 0")
    if length <= tile:
        return [0]
    stride = (tile - overlap) // align * align  # the longest whole-token step that keeps the overlap
    if stride <= 0:
        raise ValueError(f"a {tile}-px tile cannot overlap its neighbour by {overlap} px and still advance "
                         f"by a whole token ({align} px); use a smaller overlap or a larger tile")
    last = length - tile
    steps = -(-last // stride)  # tiles after the first
    starts = [min(-(-(i * last) // (steps * align)) * align, last) for i in range(steps)] + [last]
    return sorted(set(starts))


def axis_tile(length: int, count: int, overlap: int, multiple: int) -> int:
    """The side of `count` equal tiles covering `length` px with >= `overlap` px between neighbours.

    One tile is the whole length; several are whole `multiple`s (attention windows), so no tile is
    padded inside the image and the rounding becomes extra overlap.
    """
    if count == 1:
        return length
    side = -(-(length + (count - 1) * overlap) // count)
    return -(-side // multiple) * multiple


def plan_tiles(height: int, width: int, max_pixels: int, overlap: int, align: int, multiple: int) -> list[Tile]:
    """Equal tiles of at most `max_pixels` (padded to `multiple`) over a (height, width) image, least total cost.

    The model's cost is linear in the pixels it sees, so the plan minimises the summed padded area of
    its tiles: a 1280x1024 image within the budget is one tile, not two 1024-px tiles (2x the work),
    and larger images get the fewest equal tiles, so overlap adds only a few percent.
    """
    if max_pixels < multiple * multiple:
        raise ValueError(f"a tile budget of {max_pixels} px cannot hold one {multiple}x{multiple} window")
    def pad(side: int) -> int:
        return -(-side // multiple) * multiple

    best: tuple[tuple[int, int], int, int] | None = None  # ((cost, tiles), side_h, side_w)
    for rows in range(1, height // max(align, 1) + 2):
        side_h = axis_tile(height, rows, overlap, multiple)
        if rows > 1 and (side_h >= height or side_h - overlap < align):
            break  # more rows cannot advance, or cannot shrink the tile below the image
        widest = max_pixels // pad(side_h)
        for cols in range(1, width // max(align, 1) + 2):
            side_w = axis_tile(width, cols, overlap, multiple)
            if cols > 1 and (side_w >= width or side_w - overlap < align):
                break
            if pad(side_w) <= widest:
                key = (rows * cols * pad(side_h) * pad(side_w), rows * cols)
                if best is None or key < best[0]:
                    best = (key, side_h, side_w)
                break  # more columns only add cost
    if best is None:
        raise ValueError(f"no plan of tiles of at most {max_pixels} px with {overlap} px overlap covers "
                         f"{width}x{height}; use a larger tile budget or a smaller overlap")
    _, side_h, side_w = best
    return [Tile(t, l, side_h, side_w)
            for t in tile_starts(height, side_h, overlap, align)
            for l in tile_starts(width, side_w, overlap, align)]


def blend_ramp(start: int, size: int, total: int, overlap: int) -> torch.Tensor:
    """1-D weights for a tile: a raised-cosine ramp over `overlap` px on sides that have neighbours.

    Weights are continuous and tile borders (where the model saw the least context) count least,
    so the normalised blend has no seam; edges of the image keep weight 1.
    """
    w = torch.ones(size, dtype=torch.float64)
    ramp = overlap
    if ramp > 0:
        x = (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp
        rise = 0.5 - 0.5 * torch.cos(math.pi * x)  # 0 -> 1, smooth at both ends
        if start > 0:
            w[:ramp] = rise
        if start + size < total:
            w[-ramp:] = torch.minimum(w[-ramp:], rise.flip(0))
    return w.clamp_min(1e-6).float()


class TileBlender:
    """Accumulates weighted tiles of one field (image or map) and returns their blend."""

    def __init__(self, channels: int, height: int, width: int, scale: float, overlap_px: int, device: torch.device):
        self.scale = scale  # field pixels per image pixel (1 for the image, 1/8 for token maps)
        self.h, self.w = math.ceil(height * scale), math.ceil(width * scale)
        self.overlap = max(1, round(overlap_px * scale))
        self.sum = torch.zeros(channels, self.h, self.w, device=device)
        self.weight = torch.zeros(1, self.h, self.w, device=device)

    def add(self, tile: Tile, values: torch.Tensor) -> None:
        """Add a (C, h, w) field computed on `tile` (in that field's resolution)."""
        top, left = round(tile.top * self.scale), round(tile.left * self.scale)
        # A coarse field's last tile may reach one cell past the edge; drop that cell.
        values = values[..., :self.h - top, :self.w - left]
        h, w = values.shape[-2:]
        wy = blend_ramp(top, h, self.h, self.overlap).to(values.device)
        wx = blend_ramp(left, w, self.w, self.overlap).to(values.device)
        weight = wy[:, None] * wx[None, :]
        self.sum[:, top:top + h, left:left + w] += values.float() * weight
        self.weight[:, top:top + h, left:left + w] += weight

    def result(self) -> torch.Tensor:
        """The blended field (C, H, W)."""
        return self.sum / self.weight.clamp_min(1e-12)
