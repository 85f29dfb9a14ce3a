"""Before fusion: every source into one frame (tcmoa.align), moving content out of exposure stacks.

`prepare_sources` turns the sources as read into what the model fuses, and says what it did:

1. **Alignment** (`align` other than "off"): every source warped into the reference's frame and size,
   or left exactly as given when it is already registered (or cannot be aligned reliably, with a note).
   Where a warped source has no pixels of its own, its trust is 0: the fusion takes the reference
   there (the head gives way band by band; the pixels already hold the reference's content).
   With "off", sources of different sizes are an error (or resized, resize="first"), and a cheap look
   at whether registered-looking sources are in fact misaligned adds a note saying by about how much.
2. **De-ghosting** (exposure stacks, `deghost`): pixels where an exposure disagrees with the reference
   beyond what exposure explains (something moved) are replaced by the reference's content mapped to
   that exposure, and their trust falls to 0 too, so the fusion keeps the reference's view of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..align import Alignment, align_sources, deghost, default_reference, misalignment_hint, motion_masks
from ..tasks import Preset

MOVING_NOTE_SHARE = 0.001  # a motion mask covering less of the image than this is not worth a note


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
                    crop: bool = False, deghost_motion: bool = True) -> Prepared:
    """Align (or check) the sources, then de-ghost an exposure stack; see the module docstring."""
    if align == "off":
        hint = misalignment_hint(images, preset)
        prepared = Prepared(list(images), [None] * len(images),
                            notes=[f"alignment off, but {hint}"] if hint is not None else [])
        ref = reference if reference is not None else default_reference(images, preset)
    else:
        alignment = align_sources(images, align, reference, preset, crop_to_common=crop)
        prepared = Prepared(list(alignment.images), list(alignment.coverage), alignment, notes=list(alignment.notes))
        ref = alignment.reference
    if deghost_motion and preset.key == "mef" and len(prepared.images) >= 2:
        _remove_motion(prepared, ref)
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
