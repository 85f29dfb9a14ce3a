"""What alignment returns: one SourceAlignment per source, and the Alignment of them all."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALIGN_MODES = ("off", "auto", "translation", "similarity", "affine", "homography")
STATUSES = ("reference", "unchanged", "aligned", "failed")


@dataclass(frozen=True)
class SourceAlignment:
    """How one source was put into the reference frame (the reference itself included).

    `matrix` maps this source's pixel coordinates (x right, y down, pixel centres at integers) to
    the reference's. `confidence` is the edge agreement of the two sources where they overlap: the
    normalised correlation of their gradient-orientation fields (tcmoa.align.structure), 0 for
    unrelated images, 1 for identical edges; registered infrared + visible pairs score about
    0.3-0.6, exposures and focal planes 0.3-0.8. For "unchanged" it is measured as given, for
    "aligned" after the warp, for "failed" at the best pose found.
    """

    index: int  # 0-based source index
    status: str  # one of STATUSES: "unchanged" = detected as already aligned
    model: str  # "translation", "similarity", "affine", "homography"; "identity" when not warped
    matrix: np.ndarray  # (3, 3) float64
    confidence: float  # in [0, 1]
    note: str  # in words: what was done, or why the source was left as given and what to try

    def to_json(self) -> dict:
        """Plain JSON types, for the /fuse report."""
        return {"index": self.index, "status": self.status, "model": self.model,
                "matrix": [[round(float(v), 8) for v in row] for row in np.asarray(self.matrix)],
                "confidence": round(float(self.confidence), 4), "note": self.note}


@dataclass
class Alignment:
    """Every source in the reference frame and size, with what was done to each.

    The reference (images[reference]) is the very object given. A source left as given keeps its
    object too when it already has the reference's size (else it is resized, and its note says so).
    coverage[i] is (H, W) float32 in [0, 1], 1 where the warped source has real pixels, or None
    when it covers the whole frame; uncovered pixels hold the reference's content (in the source's
    grey or RGB layout), never black. `crop` is (top, left, height, width) of the largest upright
    rectangle every source covers (None when nothing is uncovered); with crop_to_common the images
    are cut to it and every coverage is None.
    """

    reference: int
    images: list[np.ndarray]
    coverage: list[np.ndarray | None]
    sources: list[SourceAlignment]
    crop: tuple[int, int, int, int] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when any source was warped (or the images cropped)."""
        return any(s.status == "aligned" for s in self.sources)

    def to_json(self) -> dict:
        """Plain JSON types: the reference, every source's record, the crop and the notes."""
        return {"reference": self.reference, "sources": [s.to_json() for s in self.sources],
                "crop": None if self.crop is None else list(self.crop), "notes": list(self.notes)}
