"""Tile consensus: the share of the image's structured tiles that agree with a placement.

A global score can be won by a few long edges (a horizon, a row of stripes) at a wrong placement.
So the frame is cut into TILES × TILES tiles, and in every tile where both sources have structure
the local correlation of their orientation fields is measured for every small shift (±REACH px of
a level about CONSENSUS_SIDE px long): the tile agrees when its best shift is within one pixel of none and that best
stands out of the tile's plateau. A true placement makes most tiles agree wherever the sources
share anything; a wrong one leaves the tiles pointing every way. The share of agreeing tiles is
the confidence every decision uses (like the inlier share of a feature match). Repeated
structure (two rows of like windows) can still agree at a wrong placement.
"""
from __future__ import annotations

import numpy as np

from .refine import warp_source
from .structure import Level

TILES = 6  # per side
REACH = 2  # px of the level searched around the placement
CONSENSUS_SIDE = 200  # the consensus is counted on the finest level at most this long
MIN_ENERGY = 0.04  # mean squared field length (in [0, 1]) of a tile with structure
MIN_TILES = 3  # fewer structured tiles than this: nothing to count
PROMINENCE = 0.1  # a tile's best correlation must stand this far above its worst: a peak, not a plateau


def consensus(reference: Level, source: Level, matrix: np.ndarray) -> tuple[float, int]:
    """(share of structured tiles whose best local shift is within 1 px of none, how many were structured).

    `matrix` maps source-level to reference-level coordinates.
    """
    h, w = reference.shape
    warped = warp_source(source, matrix, (h, w))
    ref, src, valid = reference.field, warped.field, warped.valid
    th, tw = (h - 2 * REACH) // TILES, (w - 2 * REACH) // TILES
    if th < 4 or tw < 4:
        return 0.0, 0
    y0, x0 = REACH, REACH
    inner = (slice(y0, y0 + th * TILES), slice(x0, x0 + tw * TILES))

    def tile_sums(a: np.ndarray) -> np.ndarray:  # (TILES, TILES) sums over each tile
        return a.reshape(TILES, th, TILES, tw, *a.shape[2:]).sum(axis=(1, 3) + tuple(range(4, a.ndim + 2)))

    r = ref[inner]
    r_energy = tile_sums(r * r)
    best = np.full((TILES, TILES), -np.inf)
    worst = np.full((TILES, TILES), np.inf)
    best_at = np.zeros((TILES, TILES, 2), int)
    for dy in range(-REACH, REACH + 1):
        for dx in range(-REACH, REACH + 1):
            win = (slice(y0 + dy, y0 + dy + th * TILES), slice(x0 + dx, x0 + dx + tw * TILES))
            s, v = src[win] * valid[win][..., None], valid[win]
            corr = tile_sums(r * s) / np.sqrt(np.maximum(r_energy * tile_sums(s * s), 1e-12))
            corr = np.where(tile_sums(v) >= 0.9 * th * tw, corr, -np.inf)
            better = corr > best
            worst = np.minimum(worst, np.where(np.isfinite(corr), corr, np.inf))
            best = np.where(better, corr, best)
            best_at[better] = (dy, dx)
    px = th * tw
    s0 = src[inner] * valid[inner][..., None]
    structured = (r_energy / px >= MIN_ENERGY) & (tile_sums(s0 * s0) / px >= MIN_ENERGY) & np.isfinite(best)
    count = int(structured.sum())
    if count < MIN_TILES:
        return 0.0, count
    prominent = np.where(structured, best - worst, 0.0) >= PROMINENCE
    agree = structured & (np.abs(best_at).max(axis=-1) <= 1) & prominent
    return float(agree.sum()) / count, count
