"""Before fusion: every source into one frame (tcmoa.align), moving content out of exposure stacks.

`prepare_sources` turns the sources as read into what the model fuses, and says what it did:

1. **Alignment** (`align` other than "off"): every source warped into the reference's frame and size,
   or left exactly as given when it is already registered (or cannot be aligned reliably, with a note).
   Where a warped source has no pixels of its own, its trust is 0: the fusion takes the reference
   there (the head gives way band by band; the pixels already hold the reference's content).
   With "off" nothing is done and nothing is spent: sources of different sizes are an error (or
   resized, resize="first"); `check` (the app and the command line ask for it) adds a cheap look at
   whether the sources seem misaligned, and a note saying by about how much.
2. **De-ghosting**, after alignment (exposure stacks, `deghost`): pixels where an exposure disagrees with
   the reference beyond what exposure explains (something moved) are replaced by the reference's
   content mapped to that exposure, and their trust falls to 0 too, so the fusion keeps the
   reference's view of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from ..align import Alignment, align_sources, deghost, misalignment_hint, motion_masks
from ..imaging import bt601_luma
from ..tasks import Preset

MOVING_NOTE_SHARE = 0.001  # a motion mask covering less of the image than this is not worth a note
# Inside a warped source's coverage its trust rises from 0 at the edge over this share of the image's
# diagonal, so the fusion passes from the reference alone to both without a step at the frame's edge.
FEATHER = 0.02


def faded_in(image: np.ndarray, reference: np.ndarray, trust: np.ndarray) -> np.ndarray:
    """A warped source faded into the reference's content as its trust falls to 0 at the frame's edge, so the
    source holds no step there for the fusion's bands to pick up."""
    filler = reference if image.ndim == reference.ndim else (
        bt601_luma(reference) if image.ndim == 2 else np.repeat(reference[..., None], 3, axis=-1))
    t = trust if image.ndim == 2 else trust[..., None]
    return (image * t + filler * (1 - t)).astype(np.float32)


def feathered(coverage: np.ndarray) -> np.ndarray:
    """A coverage map (H, W) turned into trust: 0 outside, rising smoothly to 1 within FEATHER of its edge."""
    inside = (coverage >= 0.5).astype(np.uint8)
    if inside.all():
        return coverage
    width = max(1.0, FEATHER * float(np.hypot(*coverage.shape)))
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    ramp = np.clip(distance / width, 0.0, 1.0)
    return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)  # smoothstep: no kink where it reaches 1


@dataclass
class Prepared:
    """The sources as the model fuses them, the trust of each, and what was decided on the way."""

    images: list[np.ndarray]  # every source in the reference's frame and size
    trust: list[np.ndarray | None]  # per source (H, W) float32 in [0, 1], None = trusted everywhere
    alignment: Alignment | None = None  # None with align="off"
    motion: list[np.ndarray] | None = None  # per source (H, W) moving-content masks (exposure stacks)
    notes: list[str] = field(default_factory=list)
    key: tuple = ()  # the settings it was prepared for (tcmoa.fuse.pipeline.preparation_key)


def prepare_sources(images: Sequence[np.ndarray], preset: Preset, align: str = "off", reference: int | None = None,
                    crop: bool = False, deghost_motion: bool = True, check: bool = False) -> Prepared:
    """Align the sources and de-ghost an exposure stack, or (align "off") check them when asked; see the
    module docstring."""
    if align == "off":
        hint = misalignment_hint(images, preset) if check else None
        return Prepared(list(images), [None] * len(images), notes=[f"alignment off, but {hint}"] if hint else [])
    alignment = align_sources(images, align, reference, preset, crop_to_common=crop)
    trust = [None if c is None else feathered(c) for c in alignment.coverage]
    reference_image = alignment.images[alignment.reference]
    aligned = [im if t is None else faded_in(im, reference_image, t) for im, t in zip(alignment.images, trust)]
    prepared = Prepared(aligned, trust, alignment, notes=list(alignment.notes))
    if deghost_motion and preset.key == "mef" and len(prepared.images) >= 2:
        _remove_motion(prepared, alignment.reference)
    return prepared


def _remove_motion(prepared: Prepared, reference: int) -> None:
    """Find moving content against the reference; fill it from the reference, distrust it."""
    masks = motion_masks(prepared.images, reference, prepared.trust)
    prepared.motion = masks
    if not any(float(m.max()) > 0 for m in masks):
        return
    prepared.images = deghost(prepared.images, reference, masks)
    for i, mask in enumerate(masks):
        share = float(mask.mean())
        if share <= 0:
            continue
        kept, covered = 1.0 - mask, prepared.trust[i]
        prepared.trust[i] = kept if covered is None else np.minimum(covered, kept)
        if share >= MOVING_NOTE_SHARE:
            prepared.notes.append(f"source {i + 1}: moving content ({100 * share:.1f}% of the image) taken from "
                                  f"source {reference + 1}, the reference exposure")
