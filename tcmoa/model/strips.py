"""Strips of rows: how the pyramid head computes its finest levels on a large image piece by piece.

A strip computes rows [top, bottom) and keeps [core_top, core_bottom); the rest is a halo wider than
the finest levels' reach, so a strip's core equals the whole image's computation exactly
(tests/test_fusion_head.py). Every boundary sits on the grid of level FINE_LEVELS, so a strip's coarser
samples are the whole image's. `span_rows` reads a strip of a source as if it were padded to the span
the token grid covers.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Strips: the finest FINE_LEVELS levels are computed per strip of at most STRIP_PIXELS (plus halo).
# Their reach is between 8 and 16 rows (tests/test_fusion_head.py: a halo of 8 changes rows, 16 does
# not); HALO doubles that and is a whole number of quarter-resolution rows, so strips share the grid.
FINE_LEVELS = 2
STRIP_PIXELS = 1 << 20
HALO = 32


def span_rows(x: Tensor, top: int, bottom: int, span: Sequence[int]) -> Tensor:
    """Rows [top, bottom) of x (B, C, H, W) extended to `span` (H', W') as runner.pad_to pads it.

    Mirrored beyond the bottom and right edges (replicated where the image is too small to mirror).
    """
    h, w = x.shape[-2:]
    mirror = span[0] - h < h and span[1] - w < w
    rows = torch.arange(top, bottom)
    if bottom > h:  # rows past the edge: mirrored (2(h-1) - r) or the last row repeated
        rows = torch.where(rows < h, rows, 2 * (h - 1) - rows if mirror else torch.full_like(rows, h - 1))
        part = x.index_select(-2, rows)
    else:
        part = x[..., top:bottom, :]
    if span[1] > w:
        part = F.pad(part, (0, span[1] - w, 0, 0), mode="reflect" if mirror else "replicate")
    return part


@dataclass(frozen=True)
class Strip:
    """Rows [top, bottom) are computed; rows [core_top, core_bottom) are kept (the rest is halo)."""

    top: int
    bottom: int
    core_top: int
    core_bottom: int


def plan_strips(height: int, width: int, fine: int = FINE_LEVELS, pixels: int = STRIP_PIXELS,
                halo: int = HALO) -> list[Strip]:
    """Strips of at most `pixels` core pixels over `height` rows, every boundary on the level-`fine` grid."""
    align = 1 << fine
    rows = max(align, pixels // max(width, 1) // align * align)
    if rows >= height:
        return [Strip(0, height, 0, height)]
    cores = list(range(0, height, rows))
    return [Strip(max(0, c - halo), min(height, c + rows + halo), c, min(height, c + rows)) for c in cores]
