"""The synthetic-warp protocol of benchmarks/registration.py: the warps, the baselines and the overlays.

A warp moves one source of a registered pair by a known random transform about the image centre
(the protocol of the registration-and-fusion papers); the rim it uncovers is black, as there.

| strength | shift (of the size) | rotation | zoom | perspective |
|---|---|---|---|---|
| small | ≤ 2 % | ±1° | 1 | none |
| medium | ≤ 5 % | ±5° | 0.9-1.1 | none |
| large | ≤ 10 % | ±10° | 0.8-1.25 | corners moved up to ~5 % |
| resolution | the source shrunk to 1/3, a 70-85 % window of it kept (a thermal camera beside a colour one) |
| narrow | a 40-60 % window of the source (each side) shrunk 2-3× (a narrow thermal camera beside a wide colour one) |

The baselines work on raw intensities, on copies at most BASELINE_SIDE px long: OpenCV's ECC
(affine; homography for large warps) from the frame fit, and SIFT + RANSAC (a homography).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tcmoa.align.estimate import frame_fit
from tcmoa.align.structure import shrink, to_grey
from tcmoa.align.transforms import resample_matrix, rescale, similarity

STRENGTHS = ("small", "medium", "large", "resolution", "narrow")
OTHER_CAMERA = ("resolution", "narrow")  # a source of another size: infrared + visible only
BASELINE_SIDE = 512


@dataclass(frozen=True)
class Warp:
    """A warped source and the transform that maps it back onto the reference (the truth)."""

    image: np.ndarray
    truth: np.ndarray  # 3×3: warped-source pixels -> reference pixels


def random_warp(image: np.ndarray, strength: str, rng: np.random.Generator) -> Warp:
    """`image` moved by a random transform of the given strength (table above)."""
    h, w = image.shape[:2]
    if strength == "resolution":
        return _thermal_view(image, rng)
    if strength == "narrow":
        return _narrow_view(image, rng)
    shift, angle, zoom, persp = {"small": (0.02, 1, (1, 1), 0), "medium": (0.05, 5, (0.9, 1.1), 0),
                                 "large": (0.10, 10, (0.8, 1.25), 0.05)}[strength]
    scale = math.exp(rng.uniform(math.log(zoom[0]), math.log(zoom[1])))
    centre = ((w - 1) / 2, (h - 1) / 2)
    m = similarity(scale, rng.uniform(-angle, angle), rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h,
                   centre=centre)
    if persp:  # w' = 1 + g·(x - cx) + k·(y - cy): corners scaled by up to 1 ± persp
        g, k = rng.uniform(-persp, persp) / (w / 2), rng.uniform(-persp, persp) / (h / 2)
        tilt = np.array([[1, 0, 0], [0, 1, 0], [g, k, 1 - g * centre[0] - k * centre[1]]])
        m = tilt @ m
    m = m / m[2, 2]
    out = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    return Warp(np.clip(out, 0, 1).astype(np.float32), np.linalg.inv(m))


def _thermal_view(image: np.ndarray, rng: np.random.Generator) -> Warp:
    h, w = image.shape[:2]
    size = (max(8, round(w / 3)), max(8, round(h / 3)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    keep = rng.uniform(0.70, 0.85)
    cw, ch = round(size[0] * keep), round(size[1] * keep)
    x0, y0 = int(rng.integers(0, size[0] - cw + 1)), int(rng.integers(0, size[1] - ch + 1))
    crop = np.ascontiguousarray(small[y0:y0 + ch, x0:x0 + cw])
    to_small = resample_matrix(size[0] / w, size[1] / h)  # full -> small coordinates
    offset = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])  # crop -> small
    return Warp(crop, np.linalg.inv(to_small) @ offset)


def _narrow_view(image: np.ndarray, rng: np.random.Generator) -> Warp:
    h, w = image.shape[:2]
    share, zoom = rng.uniform(0.4, 0.6), rng.uniform(2.0, 3.0)
    ch, cw = int(h * share), int(w * share)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    size = (max(8, round(cw / zoom)), max(8, round(ch / zoom)))
    small = cv2.resize(np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), size, interpolation=cv2.INTER_AREA)
    offset = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])  # window -> full
    return Warp(small, offset @ np.linalg.inv(resample_matrix(size[0] / cw, size[1] / ch)))


def _work_greys(reference: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both greys at most BASELINE_SIDE px, and their full -> work matrices."""
    ref, to_ref = shrink(to_grey(reference), BASELINE_SIDE)
    src, to_src = shrink(to_grey(source), BASELINE_SIDE)
    return np.ascontiguousarray(ref), np.ascontiguousarray(src), to_ref, to_src


def ecc_baseline(reference: np.ndarray, source: np.ndarray, homography: bool) -> np.ndarray:
    """OpenCV ECC on raw intensities from the frame fit; the frame fit when it does not converge."""
    ref, src, to_ref, to_src = _work_greys(reference, source)
    start = rescale(frame_fit(source.shape[:2], reference.shape[:2]), np.linalg.inv(to_src), np.linalg.inv(to_ref))
    warp = np.linalg.inv(start).astype(np.float32)  # ECC maps template (reference) -> input (source)
    motion = cv2.MOTION_HOMOGRAPHY if homography else cv2.MOTION_AFFINE
    if not homography:
        warp = warp[:2]
    try:
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-5)
        _, warp = cv2.findTransformECC(ref, src, warp, motion, criteria, None, 5)  # type: ignore[call-overload]
    except cv2.error:
        return frame_fit(source.shape[:2], reference.shape[:2])
    full = np.vstack([warp, [0, 0, 1]]) if warp.shape[0] == 2 else warp
    return rescale(np.linalg.inv(full.astype(np.float64)), to_src, to_ref)


def sift_baseline(reference: np.ndarray, source: np.ndarray) -> np.ndarray:
    """SIFT + ratio test + RANSAC homography on raw intensities; the frame fit when too few matches."""
    ref, src, to_ref, to_src = _work_greys(reference, source)
    sift = cv2.SIFT_create()  # type: ignore[attr-defined]
    u8 = [np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8) for g in (ref, src)]
    (kr, dr), (ks, ds) = (sift.detectAndCompute(g, None) for g in u8)
    fallback = frame_fit(source.shape[:2], reference.shape[:2])
    if dr is None or ds is None or len(kr) < 4 or len(ks) < 4:
        return fallback
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(ds, dr, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < 4:
        return fallback
    a = np.array([ks[m.queryIdx].pt for m in good], np.float32)
    b = np.array([kr[m.trainIdx].pt for m in good], np.float32)
    found, _ = cv2.findHomography(a, b, cv2.RANSAC, 3.0)
    return fallback if found is None else rescale(found, to_src, to_ref)


def _norm8(grey: np.ndarray) -> np.ndarray:
    return cv2.createCLAHE(3.0, (8, 8)).apply(np.clip(grey * 255 + 0.5, 0, 255).astype(np.uint8))


def edge_overlay(reference: np.ndarray, source: np.ndarray) -> np.ndarray:
    """RGB uint8: the reference dimmed, its edges green, the source's magenta (white where they meet)."""
    edges = [cv2.Canny(cv2.GaussianBlur(_norm8(to_grey(x)), (0, 0), 1.5), 40, 100) for x in (reference, source)]
    base = _norm8(to_grey(reference)) // 3
    return np.dstack([np.maximum(base, edges[1]), np.maximum(base, edges[0]), np.maximum(base, edges[1])])


def checkerboard(reference: np.ndarray, source: np.ndarray, tiles: int = 8) -> np.ndarray:
    """RGB uint8: tiles alternating between the two (each contrast-equalised), for a look at the seams."""
    h, w = reference.shape[:2]
    side = max(8, max(h, w) // tiles)
    yy, xx = np.mgrid[:h, :w]
    pick = ((yy // side + xx // side) % 2) == 0
    a, b = _norm8(to_grey(reference)), _norm8(to_grey(source))
    return np.repeat(np.where(pick, a, b)[..., None], 3, axis=-1)
