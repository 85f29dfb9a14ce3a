"""Measures of what a person sees go wrong in a fused image: a token grid, lost structure, flat contrast.

These are not fusion-quality metrics from the literature (those are in tcmoa.metrics); they check
specific faults of a patch-based model, on grey float images in [0, 1] (H, W):

* `block_step_ratio`: the mean luma step across the columns and rows at multiples of `cell` px,
  divided by the mean step elsewhere. ~1.0 for natural images; an 8-px token grid shows as > 1.
* `grid_prominence`: the mean step across cell borders over the largest mean step at any other offset
  within the cells; > 1 only when the borders stand out from every other phase, as a token grid does.
* `isolated_blocks`: cells brighter (or darker) than all 8 neighbours by far more than in any
  source (the black 8x8 squares a per-token output can leave).
* `gradient_ratio`: mean Sobel magnitude of one image over another's inside a mask, e.g. how much of
  the infrared's structure survives inside a glare disc of the visible image.
* `local_contrast`: mean local standard deviation (7x7 window).
* `with_glare`: a visible image with a saturated disc pasted where the infrared has most structure,
  the night-glare case `gradient_ratio` then measures.
No torch here.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _steps_by_offset(grey: np.ndarray, cell: int) -> list[np.ndarray]:
    """|step| between neighbours at x and x+1 (columns, then rows), grouped by (x + 1) % cell: group 0 crosses a border."""
    g = np.asarray(grey, np.float64)
    groups: list[list[np.ndarray]] = [[] for _ in range(cell)]
    for steps in (np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0)).T):  # steps[:, x] is between x and x+1
        offset = (np.arange(steps.shape[1]) + 1) % cell
        for k, group in enumerate(groups):
            group.append(steps[:, offset == k].ravel())
    return [np.concatenate(group) for group in groups]


def block_step_ratio(grey: np.ndarray, cell: int = 8) -> float:
    """Mean |step| between pixels on either side of a cell border over the mean |step| elsewhere (rows and columns)."""
    border, *inside = _steps_by_offset(grey, cell)
    return float(border.mean() / max(np.concatenate(inside).mean(), 1e-12))


def grid_prominence(grey: np.ndarray, cell: int = 8) -> float:
    """Mean |step| across cell borders over the largest mean |step| at any other offset inside the cells.

    A token grid makes the border offset stand out from all the others (> 1). `block_step_ratio` also
    rises when a source crowds its steps onto some offsets, the borders among them: the Harvard PET is
    a 2x nearest-neighbour upsampling, with steps at every odd offset and none at the even ones (ratio
    2.3), which does not lift the borders above the other odd offsets (prominence ~1).
    """
    border, *inside = (steps.mean() for steps in _steps_by_offset(grey, cell))
    return float(border / max(max(inside), 1e-12))


def _cell_means(grey: np.ndarray, cell: int) -> np.ndarray:
    h, w = (s // cell * cell for s in grey.shape)
    return np.asarray(grey, np.float64)[:h, :w].reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3))


def _standout(means: np.ndarray) -> np.ndarray:
    """How far each interior cell is brighter than all 8 neighbours, or darker than all of them, (h-2, w-2).

    0 for a cell on an edge or a line (some neighbour is on its side), so only islands count.
    """
    h, w = means.shape
    ring = np.stack([means[1 + dy: h - 1 + dy, 1 + dx: w - 1 + dx]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])  # (8, h-2, w-2)
    centre = means[1:-1, 1:-1]
    return np.maximum(np.maximum((centre - ring).min(0), (ring - centre).min(0)), 0.0)


def isolated_blocks(fused: np.ndarray, sources: Sequence[np.ndarray], cell: int = 8, excess: float = 0.1) -> int:
    """How many cells stand out from their neighbours by `excess` (of the [0, 1] range) more than in every source."""
    if min(fused.shape[:2]) < 3 * cell:
        return 0
    worst_source = np.max([_standout(_cell_means(s, cell)) for s in sources], axis=0)
    return int((_standout(_cell_means(fused, cell)) > worst_source + excess).sum())


def sobel_magnitude(grey: np.ndarray) -> np.ndarray:
    """Per-pixel Sobel gradient magnitude (3x3, mirrored borders)."""
    g = np.asarray(grey, np.float64)
    return np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3))


def gradient_ratio(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean Sobel magnitude of `image` inside `mask` over that of `reference` (1.0: all its structure kept)."""
    return float(sobel_magnitude(image)[mask].mean() / max(sobel_magnitude(reference)[mask].mean(), 1e-12))


def erode(mask: np.ndarray, size: int = 7) -> np.ndarray:
    """Binary erosion by a size x size square: the core of a region, away from its border."""
    return cv2.erode(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def local_contrast(grey: np.ndarray, window: int = 7) -> float:
    """Mean local standard deviation over `window` x `window` boxes."""
    g = np.asarray(grey, np.float64)
    mean = cv2.blur(g, (window, window))
    var = cv2.blur(g * g, (window, window)) - mean * mean
    return float(np.sqrt(np.clip(var, 0, None)).mean())


def with_glare(visible: np.ndarray, infrared_grey: np.ndarray, radius: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(visible with a white disc where the infrared's local structure peaks, the disc's 7x7-eroded core)."""
    energy = cv2.blur(sobel_magnitude(infrared_grey), (41, 41))
    cy, cx = np.unravel_index(int(energy.argmax()), energy.shape)
    yy, xx = np.mgrid[: energy.shape[0], : energy.shape[1]]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    glared = visible.copy()
    glared[disc] = 1.0
    return glared, erode(disc, 7)
