"""Modality-independent structure: each source as a pyramid of normalised gradient orientation fields.

Intensities do not correspond between infrared and visible light, or MRI and PET (one's bright
is the other's dark, or nothing at all), but where both show an edge it runs the same way. So
every image becomes a field of its gradients' orientations (the normalised gradient field of
Haber and Modersitzki, 2006), written with doubled angles,

    D = (gx² − gy², 2·gx·gy) / (gx² + gy² + ε²),

which is the same for an edge whatever its polarity (dark-to-bright or bright-to-dark), near zero
where the image is flat or only noisy (ε: the image's median gradient), and has length ≤ 1. The
fields of two registered sources correlate; their normalised correlation over the overlap is the
score every estimate here is judged by. Fields are built coarse to fine on a pyramid of the
source's grey, itself at most WORK_SIDE px: estimation never touches full-resolution pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..ycbcr import BT601_WEIGHTS
from .transforms import resample_matrix

WORK_SIDE = 384  # longest side estimated on: a 12 MP photo is shrunk 10× first
COARSEST_SIDE = 32  # the pyramid stops above this (a field of fewer pixels carries no layout)
GRADIENT_BLUR = 0.8  # σ (px of a level) before the gradient: JPEG noise and aliasing out
FIELD_SMOOTH = 1.0  # σ of the field itself: widens the basin the refinement converges from
EPS_QUANTILE = 0.5  # gradients below this quantile of the image's count for little
EPS_FLOOR = 2 / 255  # ... and below this slope (per px), whatever the quantile: a black background's noise
FIELD_REACH = 3  # px a field's value reaches from its pixel (gradient blur and field smoothing)


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 BT.601 luma of a grey or RGB float image."""
    if image.ndim == 2:
        return np.asarray(image, np.float32)
    return np.asarray(image[..., :3], np.float32) @ np.asarray(BT601_WEIGHTS, np.float32)


def shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image at most `side` px long (area averaging) and the matrix full -> shrunk coordinates."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image, np.eye(3)
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), resample_matrix(size[0] / w, size[1] / h)


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = cv2.GaussianBlur(grey, (0, 0), GRADIENT_BLUR)
    return cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=0.125), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)


def edge_floor(grey: np.ndarray) -> float:
    """ε² of an image: its median squared gradient, at least EPS_FLOOR² (flat or only noisy counts for little)."""
    gx, gy = _gradients(grey)
    return max(float(np.quantile(gx * gx + gy * gy, EPS_QUANTILE)), EPS_FLOOR ** 2)


def orientation_field(grey: np.ndarray, eps2: float | None = None) -> np.ndarray:
    """(H, W, 2) float32 doubled-angle normalised gradient field of a grey image (see the module docstring).

    `eps2` defaults to the image's own edge_floor; a warped copy passes its original's, rescaled.
    """
    gx, gy = _gradients(grey)
    m2 = gx * gx + gy * gy
    eps2 = max(float(np.quantile(m2, EPS_QUANTILE)), EPS_FLOOR ** 2) if eps2 is None else eps2
    d = np.stack([gx * gx - gy * gy, 2 * gx * gy], axis=-1) / (m2 + eps2)[..., None]
    return np.asarray(cv2.GaussianBlur(d, (0, 0), FIELD_SMOOTH), np.float32)


def is_flat(image: np.ndarray) -> bool:
    """True when an image (grey or RGB) holds no structure to align by: blank, constant or nearly so."""
    grey = to_grey(shrink(np.asarray(image, np.float32), WORK_SIDE)[0])
    low, high = np.percentile(grey, (0.5, 99.5))
    return float(high - low) < 2 / 255


@dataclass
class Level:
    """One pyramid level: its grey, orientation field, and the matrix full-resolution -> level coordinates."""

    grey: np.ndarray
    to_level: np.ndarray
    _field: np.ndarray | None = field(default=None, repr=False)
    _eps2: float | None = field(default=None, repr=False)

    @property
    def eps2(self) -> float:
        """The level's edge_floor, computed on first use."""
        if self._eps2 is None:
            self._eps2 = edge_floor(self.grey)
        return self._eps2

    @property
    def field(self) -> np.ndarray:
        """The orientation field, computed on first use."""
        if self._field is None:
            self._field = orientation_field(self.grey, self.eps2)
        return self._field

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the level."""
        return self.grey.shape[0], self.grey.shape[1]


@dataclass
class Pyramid:
    """A source's levels, finest (at most WORK_SIDE px) first, and its full-resolution (h, w)."""

    levels: list[Level]
    full_shape: tuple[int, int]

    @classmethod
    def of(cls, image: np.ndarray, work_side: int = WORK_SIDE) -> Pyramid:
        """Shrink first (colour planes averaged before the luma: 3× less to convert), then halve."""
        small, to_work = shrink(np.asarray(image, np.float32), work_side)
        grey = to_grey(small)
        levels = [Level(grey, to_work)]
        while max(levels[-1].shape) // 2 >= COARSEST_SIDE:
            h, w = levels[-1].shape
            size = (max(1, w // 2), max(1, h // 2))
            half = cv2.resize(levels[-1].grey, size, interpolation=cv2.INTER_AREA)
            levels.append(Level(half, resample_matrix(size[0] / w, size[1] / h) @ levels[-1].to_level))
        return cls(levels, (image.shape[0], image.shape[1]))

    def level_near(self, side: float) -> int:
        """Index of the level whose longest side is nearest `side` (in log terms)."""
        return int(np.argmin([abs(np.log(max(lv.shape) / side)) for lv in self.levels]))
