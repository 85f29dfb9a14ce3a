"""Which source is the reference frame, and a cheap look for misalignment when alignment is off."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..tasks import Preset, get_preset
from .structure import shrink, to_grey

HINT_SIDE = 256  # the phase correlation runs on gradients at most this long
HINT_MIN_SHIFT = 0.025  # of the longest side (6 px at 256): registered pairs stay below it
HINT_MIN_RESPONSE = 0.08  # phase-correlation peak below which the shift is noise


def _preset(task: str | Preset) -> Preset:
    return task if isinstance(task, Preset) else get_preset(task)


def _sharpness(grey: np.ndarray) -> float:
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def default_reference(images: Sequence[np.ndarray], task: str | Preset = "vif") -> int:
    """The source whose frame the output keeps: the visible image (vif) or MRI (medical) = source 0,
    the middle exposure by mean brightness (mef; of two, the one nearer mid-grey), the sharpest focal plane (mff)."""
    preset = _preset(task)
    if preset.key == "mef":
        means = [float(to_grey(shrink(im, HINT_SIDE)[0]).mean()) for im in images]
        order = sorted(range(len(images)), key=lambda i: (means[i], i))
        if len(images) % 2:
            return order[len(images) // 2]
        pair = order[len(images) // 2 - 1: len(images) // 2 + 1]
        return min(pair, key=lambda i: (abs(means[i] - 0.5), i))
    if preset.key == "mff":
        sharp = [_sharpness(to_grey(shrink(im, 512)[0])) for im in images]
        return max(range(len(images)), key=lambda i: (sharp[i], -i))
    return 0


def _gradient(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    g = cv2.resize(to_grey(image), size, interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    log = np.log1p(mag / (float(mag.mean()) + 1e-6))  # strong edges of one modality must not dominate
    return (log - log.mean()).astype(np.float32)  # zero mean: the window then tapers to nothing


def misalignment_hint(images: Sequence[np.ndarray], task: str | Preset = "vif") -> str | None:
    """A line saying the sources look misaligned (for alignment off), or None when they look registered.

    Phase correlation of gradient magnitudes against the default reference, at most HINT_SIDE px:
    cheap, and blind to rotation and zoom beyond a few degrees or percent.
    """
    ref_index = default_reference(images, task)
    ref = images[ref_index]
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{im.shape[1]}×{im.shape[0]}" for im in images)
        return f"the sources differ in size ({listed}); if they come from different cameras, try align=auto"
    h, w = ref.shape[:2]
    f = min(1.0, HINT_SIDE / max(h, w))
    size = (max(8, round(w * f)), max(8, round(h * f)))
    window = cv2.createHanningWindow(size, cv2.CV_32F)
    ref_grad = _gradient(ref, size)
    worst = 0.0
    for i, im in enumerate(images):
        if i == ref_index:
            continue
        (dx, dy), response = cv2.phaseCorrelate(ref_grad, _gradient(im, size), window)
        if response >= HINT_MIN_RESPONSE:
            worst = max(worst, float(np.hypot(dx, dy)) / f)
    if worst < HINT_MIN_SHIFT * max(h, w):
        return None
    return f"the sources look misaligned by about {worst:.0f} px; try align=auto"
