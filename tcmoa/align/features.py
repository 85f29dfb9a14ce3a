"""Feature matching for sources of one modality (exposures, focal planes): SIFT + RANSAC.

Exposure brackets and focal stacks show the same intensities up to a tone curve and blur, so
keypoints match between them once each grey is equalised (its histogram flattened, which undoes
any monotone tone curve). A match of any rotation and zoom becomes one more starting point for the
refinement (tcmoa.align.estimate); it is what finds a frame turned by 90° or 180°.
"""
from __future__ import annotations

import cv2
import numpy as np

from .structure import Level

MIN_INLIERS = 12  # fewer consistent matches than this are chance
MIN_INLIER_SHARE = 0.25  # of the matches that passed the ratio test
RATIO = 0.75  # Lowe's ratio test
MAX_FEATURES = 1500


def equalised(grey: np.ndarray) -> np.ndarray:
    """A grey in [0, 1] as uint8 with its histogram flattened (any monotone tone curve undone)."""
    return cv2.equalizeHist(np.clip(grey * 255 + 0.5, 0, 255).astype(np.uint8))


def feature_seed(reference: Level, source: Level) -> np.ndarray | None:
    """A similarity (source level -> reference level coordinates) from matched keypoints, or None."""
    sift = cv2.SIFT_create(nfeatures=MAX_FEATURES)  # type: ignore[attr-defined]
    kr, dr = sift.detectAndCompute(equalised(reference.grey), None)
    ks, ds = sift.detectAndCompute(equalised(source.grey), None)
    if dr is None or ds is None or len(kr) < MIN_INLIERS or len(ks) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(ds, dr, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = np.array([ks[m.queryIdx].pt for m in good], np.float32)
    dst = np.array([kr[m.trainIdx].pt for m in good], np.float32)
    found, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if found is None or inliers is None:
        return None
    count = int(inliers.sum())
    if count < MIN_INLIERS or count < MIN_INLIER_SHARE * len(good):
        return None
    return np.vstack([found, [0, 0, 1]]).astype(np.float64)
