"""Putting a source into the reference frame at full resolution, and the area every source covers.

The warp is bicubic from edge-replicated borders (no black pulled in at the rim), clipped to
[0, 1]. Reference pixels the source does not reach are marked in a coverage mask and filled with
the reference's own content in the source's layout (grey or RGB), so a fusion there sees the
reference twice and keeps it: no black wedge, no smeared edge.
"""
from __future__ import annotations

import cv2
import numpy as np

from .structure import to_grey

FULL = 0.999  # coverage at or above this counts as covered
CROP_SIDE = 256  # the common area is found on a mask at most this long


def _in_layout(reference: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The reference in the channel layout of `like`: its luma for a grey source, replicated for RGB."""
    if like.ndim == 2:
        return to_grey(reference)
    return reference if reference.ndim == 3 else np.repeat(reference[..., None], 3, axis=-1)


def warp_into(source: np.ndarray, matrix: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The source warped into the reference frame, and its coverage (None when it covers everything)."""
    h, w = reference.shape[:2]
    out = cv2.warpPerspective(source, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    np.clip(out, 0.0, 1.0, out=out)
    ones = np.ones(source.shape[:2], np.float32)
    cover = cv2.warpPerspective(ones, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if float(cover.min()) >= FULL:
        return out, None
    filler = _in_layout(reference, out)
    c = cover if out.ndim == 2 else cover[..., None]
    out = (out * c + filler * (1 - c)).astype(np.float32)
    return out, cover.astype(np.float32)


def common_area(coverage: list[np.ndarray | None], shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the largest upright rectangle every source covers; None if all cover all."""
    masks = [c for c in coverage if c is not None]
    if not masks:
        return None
    h, w = shape
    f = min(1.0, CROP_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    inside = np.ones(size[::-1], bool)
    for c in masks:  # a small pixel counts only when all of it is covered (its float32 mean 1 but for rounding)
        inside &= cv2.resize((c >= FULL).astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 1.0 - 1e-5
    box = _largest_rectangle(inside)
    if box is None:
        return None
    top, left, bh, bw = box
    sy, sx = h / size[1], w / size[0]
    t, lft = int(np.ceil(top * sy)), int(np.ceil(left * sx))
    return t, lft, int((top + bh) * sy) - t, int((left + bw) * sx) - lft


def _largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the largest all-True rectangle of a boolean mask (histogram method)."""
    heights = np.zeros(mask.shape[1] + 1, int)  # the last column stays 0: it empties the stack
    best, found = 0, None
    for row in range(mask.shape[0]):
        heights[:-1] = np.where(mask[row], heights[:-1] + 1, 0)
        stack: list[int] = []
        for col, hgt in enumerate(heights.tolist()):
            while stack and heights[stack[-1]] >= hgt:
                tall = int(heights[stack.pop()])
                left = stack[-1] + 1 if stack else 0
                if tall * (col - left) > best:
                    best, found = tall * (col - left), (row - tall + 1, left, tall, col - left)
            stack.append(col)
    return found
