"""A last sub-pixel polish of a same-modality source's transform: OpenCV's ECC on equalised greys.

The estimate (tcmoa.align.estimate) runs on copies at most 384 px long, so a 1000 px photo keeps
up to a few pixels of its error. Exposures and focal planes show the same intensities up to a
tone curve and blur; once each grey is equalised (its histogram flattened, undoing any monotone
tone curve, as for the feature match) ECC's correlation (Evangelidis and Psarakis 2008) can be
maximised directly, at up to POLISH_SIDE px, from the estimate. The polish is kept only when ECC
converged, raised its correlation, and moved no corner more than MAX_MOVE px of that level: it
can sharpen an estimate, never replace it with another placement. Clipped pixels (black or
white: an exposure's lost shadows or highlights, a warp's empty rim) are left out of the
correlation. The constants were chosen on medium and small warps of the training exposures and
of synthetic focal pairs (train/mef, pretrain/natural), never on the evaluation sets; there it
helped the exposures (0.63 -> 0.55 px) and not the focal pairs (0.156 -> 0.153 px), so only the
exposure preset uses it (tcmoa.align.register.POLICIES).
"""
from __future__ import annotations

import cv2
import numpy as np

from .features import equalised
from .structure import shrink, to_grey
from .transforms import apply, corners, project, rescale

POLISH_SIDE = 1024  # longest side ECC runs on (a 12 MP photo is shrunk 4×)
MAX_MOVE = 2.0  # px of that level: a larger move is another placement, not a polish
CLIPPED = 2 / 255  # a grey this near black or white is clipped: no structure, left out of the correlation
BLUR = 5  # ECC's Gaussian filter size (px): a wider basin, noise out
ITERATIONS, EPSILON = 50, 1e-5
MIN_PIXELS = 1000  # unclipped pixels below which there is nothing to polish on
MOTIONS = {"translation": cv2.MOTION_TRANSLATION, "similarity": cv2.MOTION_AFFINE,
           "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}  # ECC has no similarity: projected


def _grey(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The equalised grey (float32 in [0, 1]) at most POLISH_SIDE px long, its mask of unclipped pixels
    (uint8: 1 where the grey is neither black nor white, so carries structure), and the full -> that matrix."""
    small, to_small = shrink(np.asarray(image, np.float32), POLISH_SIDE)
    grey = to_grey(small)
    unclipped = ((grey > CLIPPED) & (grey < 1 - CLIPPED)).astype(np.uint8)
    mask = np.asarray(cv2.erode(unclipped, np.ones((2 * BLUR + 1, 2 * BLUR + 1), np.uint8)), np.uint8)
    return equalised(grey).astype(np.float32) / 255, mask, to_small


def _correlation(ref: tuple[np.ndarray, np.ndarray], src: tuple[np.ndarray, np.ndarray], warp: np.ndarray) -> float:
    """ECC's correlation of the source grey sampled by `warp` (reference -> source level) over both masks."""
    h, w = ref[0].shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    sampled = cv2.warpPerspective(src[0], warp, (w, h), flags=flags)
    inside = cv2.warpPerspective(src[1], warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) & ref[1]
    if int(inside.sum()) < MIN_PIXELS:
        return -1.0
    return float(cv2.computeECC(ref[0], sampled, inside))


def polish(reference: np.ndarray, source: np.ndarray, matrix: np.ndarray, model: str) -> np.ndarray:
    """`matrix` (source -> reference pixels, full resolution) polished by ECC under `model`, or as given."""
    ref, ref_mask, to_ref = _grey(reference)
    src, src_mask, to_src = _grey(source)
    if min(int(ref_mask.sum()), int(src_mask.sum())) < MIN_PIXELS:
        return matrix
    level = rescale(matrix, np.linalg.inv(to_src), np.linalg.inv(to_ref))  # source level -> reference level
    start = np.linalg.inv(level)  # ECC's warp maps the template (reference) into the input (source)
    start = start / start[2, 2]
    motion = MOTIONS[model]
    warp = (start if motion == cv2.MOTION_HOMOGRAPHY else start[:2]).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, ITERATIONS, EPSILON)
    try:
        _, warp = cv2.findTransformECCWithMask(ref, src, ref_mask, src_mask, warp, motion, criteria, BLUR)
    except cv2.error:  # did not converge, or the images hold too little to correlate
        return matrix
    found = np.vstack([warp, [0, 0, 1]]) if warp.shape[0] == 2 else warp
    polished = np.linalg.inv(found.astype(np.float64))
    if model == "similarity":
        polished = project(polished, "similarity", *src.shape)
    box = corners(*src.shape)
    moved = float(np.linalg.norm(apply(polished, box) - apply(level, box), axis=1).max())
    if not np.all(np.isfinite(polished)) or moved > MAX_MOVE:
        return matrix
    pair = (ref, ref_mask), (src, src_mask)
    if _correlation(*pair, np.linalg.inv(polished)) <= _correlation(*pair, start):
        return matrix
    return rescale(polished, to_src, to_ref)
