"""Classical fusion baselines (Average, Laplacian pyramid, Mertens) over N >= 2 sources.

They follow the method definitions of the published peer table (docs/BENCHMARKS.md reproduces its
rows), so their scores are comparable with it:

* **average**: pixel mean; all-colour inputs are averaged in RGB.
* **laplacian**: 5-level Laplacian pyramid (4 band-pass levels + Gaussian residual) built with
  cv2.pyrDown/pyrUp on float32; each band-pass level keeps the coefficient with the largest
  absolute value over the sources, the residual is averaged. Grey by design: colour inputs go
  through Y + IFCNN chroma weighting.
* **mertens**: cv2.createMergeMertens, weights (contrast, saturation, exposure) = (1, 1, 1) for
  VIF / medical / MEF and (1, 0, 0) for MFF. Grey / Y planes are passed as single-channel uint8,
  all-colour inputs as native 3-channel BGR uint8; the output is clipped to [0, 1].

Colour handling for every method is ``tcmoa.colour.fuse_with_colour_rule``. Inputs are float
[0, 1] arrays (uint8/uint16 are accepted too), all the same height and width; the result is a
float32 image in [0, 1], grey (H, W) or RGB (H, W, 3).
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from ..colour import ColourMode, fuse_with_colour_rule
from ..imaging import to_uint8
from ..tasks import ROUTER_NAMES

__all__ = [
    "BASELINES",
    "average_fusion",
    "laplacian_pyramid_fusion",
    "mertens_fusion",
    "mertens_weights",
    "run_baseline",
]

# --------------------------------------------------------------------------------------------
# Average
# --------------------------------------------------------------------------------------------


def _mean(imgs: list[np.ndarray]) -> np.ndarray:
    """Pixel mean of equally shaped arrays, accumulated without stacking all sources at once."""
    acc = np.zeros_like(imgs[0], dtype=np.float32)
    for im in imgs:
        acc += im
    return acc / np.float32(len(imgs))


def average_fusion(sources: Sequence[np.ndarray], *, colour_mode: ColourMode = "auto") -> np.ndarray:
    """Pixel mean of the sources (in RGB when all are colour, else via the colour rule)."""
    return fuse_with_colour_rule(sources, _mean, fuse_rgb=_mean, colour_mode=colour_mode)


# --------------------------------------------------------------------------------------------
# Laplacian pyramid
# --------------------------------------------------------------------------------------------


def _max_levels(h: int, w: int) -> int:
    """Most pyramid levels that still halve the smaller side (a 1-px image has 1 level)."""
    return 1 + int(math.floor(math.log2(max(1, min(h, w)))))


def _laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """levels - 1 band-pass images (finest first) followed by the Gaussian residual."""
    pyr: list[np.ndarray] = []
    cur = img
    for _ in range(levels - 1):
        down = cv2.pyrDown(cur)
        up = cv2.pyrUp(down, dstsize=(cur.shape[1], cur.shape[0]))
        pyr.append(cur - up)
        cur = down
    pyr.append(cur)
    return pyr


def _lp_fuse_grey(imgs: list[np.ndarray], levels: int) -> np.ndarray:
    """Max-abs selection on band-pass levels, mean of residuals, then collapse the pyramid."""
    h, w = imgs[0].shape
    levels = min(levels, _max_levels(h, w))
    pyrs = [_laplacian_pyramid(np.ascontiguousarray(im, dtype=np.float32), levels) for im in imgs]
    fused: list[np.ndarray] = []
    for lvl in range(levels - 1):
        best = pyrs[0][lvl].copy()
        best_abs = np.abs(best)
        # Strict '>' keeps the earliest source on ties, like argmax.
        for pyr in pyrs[1:]:
            coef = pyr[lvl]
            mag = np.abs(coef)
            np.copyto(best, coef, where=mag > best_abs)
            np.maximum(best_abs, mag, out=best_abs)
        fused.append(best)
    out = _mean([pyr[-1] for pyr in pyrs])
    for band in reversed(fused):
        out = cv2.pyrUp(out, dstsize=(band.shape[1], band.shape[0])) + band
    return np.clip(out, 0.0, 1.0)


def laplacian_pyramid_fusion(
    sources: Sequence[np.ndarray], levels: int = 5, *, colour_mode: ColourMode = "auto"
) -> np.ndarray:
    """Laplacian-pyramid fusion (max-abs detail, mean base) of Y; colour via the colour rule."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return fuse_with_colour_rule(sources, lambda ys: _lp_fuse_grey(ys, levels), colour_mode=colour_mode)


# --------------------------------------------------------------------------------------------
# Mertens exposure fusion
# --------------------------------------------------------------------------------------------


def mertens_weights(task: str) -> tuple[float, float, float]:
    """(contrast, saturation, exposure) weights per task: MFF uses contrast only."""
    _check_task(task)
    # Focus stacks differ only in sharpness; saturation/exposure terms would pull in blur.
    # Otherwise OpenCV's own defaults (1, 1, 0): the peer table says (1, 1, 1), but its Mertens
    # rows (tno25, harvard_ct/pet, msrs20, mefb100) are reproduced to 3 digits only by (1, 1, 0).
    return (1.0, 0.0, 0.0) if task == "mff" else (1.0, 1.0, 0.0)


def _mertens(imgs: list[np.ndarray], weights: tuple[float, float, float]) -> np.ndarray:
    """cv2 Mertens on uint8 inputs (it assumes 8-bit scaling internally); grey or RGB."""
    merge = cv2.createMergeMertens(*weights)
    if imgs[0].ndim == 2:
        out = merge.process([to_uint8(im) for im in imgs])
    else:
        out = merge.process([to_uint8(im)[..., ::-1].copy() for im in imgs])  # RGB -> BGR
        out = out[..., ::-1]
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def mertens_fusion(
    sources: Sequence[np.ndarray],
    contrast: float = 1.0,
    saturation: float = 1.0,
    exposure: float = 1.0,
    *,
    colour_mode: ColourMode = "auto",
) -> np.ndarray:
    """Mertens exposure fusion via cv2.createMergeMertens; native RGB when all sources are colour."""
    weights = (float(contrast), float(saturation), float(exposure))

    def fuse(imgs: list[np.ndarray]) -> np.ndarray:
        return _mertens(imgs, weights)

    return fuse_with_colour_rule(sources, fuse, fuse_rgb=fuse, colour_mode=colour_mode)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


class BaselineFn(Protocol):
    """Signature shared by the registry entries."""

    def __call__(
        self, sources: Sequence[np.ndarray], task: str, *, colour_mode: ColourMode = "auto"
    ) -> np.ndarray: ...


def _check_task(task: str) -> None:
    """Reject a task that is not a router's kind of fusion, listing the valid ones."""
    if task not in ROUTER_NAMES:
        raise ValueError(f"unknown router {task!r}; expected one of {ROUTER_NAMES}")


def _average(
    sources: Sequence[np.ndarray], task: str, *, colour_mode: ColourMode = "auto"
) -> np.ndarray:
    """Registry entry: average_fusion (task only validated)."""
    _check_task(task)
    return average_fusion(sources, colour_mode=colour_mode)


def _laplacian(
    sources: Sequence[np.ndarray], task: str, *, colour_mode: ColourMode = "auto"
) -> np.ndarray:
    """Registry entry: laplacian_pyramid_fusion with 5 levels."""
    _check_task(task)
    return laplacian_pyramid_fusion(sources, colour_mode=colour_mode)


def _mertens_task(
    sources: Sequence[np.ndarray], task: str, *, colour_mode: ColourMode = "auto"
) -> np.ndarray:
    """Registry entry: mertens_fusion with the task's weights."""
    return mertens_fusion(sources, *mertens_weights(task), colour_mode=colour_mode)


BASELINES: dict[str, BaselineFn] = {
    "average": _average,
    "laplacian": _laplacian,
    "mertens": _mertens_task,
}


def run_baseline(
    name: str, sources: Sequence[np.ndarray], task: str, *, colour_mode: ColourMode = "auto"
) -> np.ndarray:
    """Run the named baseline ("average", "laplacian", "mertens") for a task."""
    fn: Callable[..., np.ndarray] | None = BASELINES.get(name)
    if fn is None:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return fn(sources, task, colour_mode=colour_mode)
