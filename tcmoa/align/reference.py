"""Which source is the reference frame: the one whose frame and size the output keeps."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tasks import Preset, get_preset
from .structure import shrink, to_grey

SMALL_SIDE = 256  # brightness and sharpness are compared on copies at most this long


def _preset(task: str | Preset) -> Preset:
    return task if isinstance(task, Preset) else get_preset(task)


def _sharpness(grey: np.ndarray) -> float:
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def default_reference(images: Sequence[np.ndarray], task: str | Preset = "vif") -> int:
    """The source whose frame the output keeps: the visible image (vif) or MRI (medical) = source 0,
    the middle exposure by mean brightness (mef; of two, the one nearer mid-grey), the sharpest focal plane (mff)."""
    preset = _preset(task)
    if preset.key == "mef":
        means = [float(to_grey(shrink(im, SMALL_SIDE)[0]).mean()) for im in images]
        order = sorted(range(len(images)), key=lambda i: (means[i], i))
        if len(images) % 2:
            return order[len(images) // 2]
        pair = order[len(images) // 2 - 1: len(images) // 2 + 1]
        return min(pair, key=lambda i: (abs(means[i] - 0.5), i))
    if preset.key == "mff":
        sharp = [_sharpness(to_grey(shrink(im, 2 * SMALL_SIDE)[0])) for im in images]
        return max(range(len(images)), key=lambda i: (sharp[i], -i))
    return 0
