"""misalignment_hint: a cheap look, for alignment off, at whether the sources are registered.

The global search and its coarse refinement only (tcmoa.align.estimate.coarse_estimate, on a level
of about 96×72 px): the sources look misaligned when the best placement there moves the corners by
at least HINT_MIN_SHIFT of the size and raises the edge agreement by at least the policy's share
(HINT_MIN_GAIN; more for MRI + PET/SPECT, whose estimates wander). Chosen on training pairs
(benchmarks/registration_calibrate.py): pairs as given 0-6 % flagged, medium warps 88-100 %.
A phase correlation of gradients was tried first: blind to rotation and zoom, it flagged 15-30 %
of the medium warps.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tasks import Preset, get_preset
from .estimate import coarse_estimate
from .reference import default_reference
from .register import MIN_SIDE, POLICIES
from .structure import Pyramid, is_flat
from .transforms import apply, corners

HINT_MIN_SHIFT = 0.025  # mean corner motion, of the longest side
HINT_MIN_GAIN = 0.4  # relative rise of the edge agreement (0.7 where the policy is not automatic)


def misalignment_hint(images: Sequence[np.ndarray], task: str | Preset = "vif") -> str | None:
    """A line saying the sources look misaligned and by about how much, or None when they look registered."""
    preset = task if isinstance(task, Preset) else get_preset(task)
    if len({im.shape[:2] for im in images}) > 1:
        listed = ", ".join(f"{im.shape[1]}×{im.shape[0]}" for im in images)
        return f"the sources differ in size ({listed}); if they come from different cameras, try align=auto"
    ref_index = default_reference(images, preset)
    ref = images[ref_index]
    h, w = ref.shape[:2]
    if min(h, w) < MIN_SIDE or is_flat(ref):
        return None
    policy = POLICIES.get(preset.key, POLICIES["vif"])
    need = HINT_MIN_GAIN if policy.automatic else 0.7
    ref_pyr, worst = Pyramid.of(ref), 0.0
    for i, im in enumerate(images):
        if i == ref_index or is_flat(im):
            continue
        matrix, score, start = coarse_estimate(ref_pyr, Pyramid.of(im))
        moved = float(np.linalg.norm(apply(matrix, corners(h, w)) - corners(h, w), axis=1).mean())
        if moved >= HINT_MIN_SHIFT * max(h, w) and score >= (1 + need) * max(start, 1e-3):
            worst = max(worst, moved)
    if worst == 0.0:
        return None
    return f"the sources look misaligned by about {worst:.0f} px; try align=auto"
