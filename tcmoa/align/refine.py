"""Gauss-Newton refinement of a transform on orientation fields, and the score that judges it.

The source's field is warped into the reference frame and the transform updated by the
increment that best explains the difference (forward-compositional Lucas-Kanade, Baker and
Matthews 2004), for any of the four models; OpenCV's ECC has no similarity model, and the fields
have two channels. The increment is parameterised on coordinates centred on the reference and
divided by its half-size, so every parameter has the same scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .structure import FIELD_REACH, Level, orientation_field
from .transforms import MODELS, apply, corners

MIN_VALID = 64  # overlap pixels below which a level has nothing to say
STEP_TOLERANCE = 0.01  # px of corner motion per iteration at which a level has converged
SAMPLE_ABOVE = 40_000  # px: larger levels take their Gauss-Newton step from every other pixel


@dataclass
class Warped:
    """A source field warped into the reference frame, with its overlap mask."""

    field: np.ndarray  # (H, W, 2)
    valid: np.ndarray  # (H, W) float32, 1 inside the warped source (its rim eroded)


def footprint(matrix: np.ndarray, source_shape: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 mask of where a source lands in a `shape` frame, its rim (FIELD_REACH px) left out."""
    h, w = shape
    ones = np.ones(source_shape, np.float32)
    cover = cv2.warpPerspective(ones, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = (cover > 0.999).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * FIELD_REACH + 1, 2 * FIELD_REACH + 1))
    return cv2.erode(inside, kernel, borderType=cv2.BORDER_REPLICATE).astype(np.float32)


def warp_source(source: Level, matrix: np.ndarray, shape: tuple[int, int]) -> Warped:
    """A source level's grey warped (source -> reference) into a `shape` frame, and its field computed there.

    The field is computed after the warp, not warped itself: a zoomed-in field would be smoother
    than the reference's and correlate better for that alone.
    """
    h, w = shape
    grey = cv2.warpPerspective(source.grey, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    zoom2 = abs(float(np.linalg.det(matrix[:2, :2]))) / float(matrix[2, 2]) ** 2  # gradients shrink by the zoom
    return Warped(orientation_field(grey, source.eps2 / max(zoom2, 1e-6)), footprint(matrix, source.shape, shape))


def score(reference: np.ndarray, warped: Warped) -> tuple[float, int]:
    """(normalised correlation of two fields over their overlap, the overlap's pixel count)."""
    v = warped.valid
    n = int(v.sum())
    if n < MIN_VALID:
        return 0.0, n
    r = reference * v[..., None]
    num = float((r * warped.field).sum())
    den = float(np.sqrt((r * r).sum() * (warped.field * warped.field * v[..., None]).sum()))
    return (num / den if den > 1e-12 else 0.0), n


def _basis(model: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel displacement (px) per parameter of the increment, (P, H, W) for x and for y."""
    h, w = shape
    half = max(h, w) / 2
    cx, cy = (w - 1) / 2, (h - 1) / 2
    u = ((np.arange(w, dtype=np.float32) - cx) / half)[None, :].repeat(h, 0)
    v = ((np.arange(h, dtype=np.float32) - cy) / half)[:, None].repeat(w, 1)
    one, zero = np.ones_like(u), np.zeros_like(u)
    if model == "translation":
        bx, by = [one, zero], [zero, one]
    elif model == "similarity":  # (a, b, tx, ty): [[a, -b], [b, a]] u + t
        bx, by = [u, -v, one, zero], [v, u, zero, one]
    elif model == "affine":
        bx, by = [u, v, one, zero, zero, zero], [zero, zero, zero, u, v, one]
    else:  # homography, linearised at the identity
        bx = [u, v, one, zero, zero, zero, -u * u, -u * v]
        by = [zero, zero, zero, u, v, one, -u * v, -v * v]
    return np.stack(bx) * half, np.stack(by) * half


def parameter_count(model: str) -> int:
    """Degrees of freedom of a model."""
    return {"translation": 2, "similarity": 4, "affine": 6, "homography": 8}[model]


def _increment(model: str, p: np.ndarray) -> np.ndarray:
    """The increment's matrix in normalised coordinates from its parameters."""
    e = np.eye(3)
    if model == "translation":
        e[:2, 2] += p
    elif model == "similarity":
        e[:2, :] += [[p[0], -p[1], p[2]], [p[1], p[0], p[3]]]
    elif model == "affine":
        e[:2, :] += p.reshape(2, 3)
    else:
        e[:2, :] += p[:6].reshape(2, 3)
        e[2, :2] = p[6:]
    return e


def _normaliser(shape: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates -> coordinates centred on the image and divided by half its longest side."""
    h, w = shape
    half = max(h, w) / 2
    return np.array([[1 / half, 0, -(w - 1) / 2 / half], [0, 1 / half, -(h - 1) / 2 / half], [0, 0, 1]])


def increment_matrix(model: str, p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An increment's matrix in the pixel coordinates of an image of `shape`."""
    norm = _normaliser(shape)
    return np.linalg.inv(norm) @ _increment(model, p) @ norm


def _step(reference: np.ndarray, warped: Warped, bx: np.ndarray, by: np.ndarray) -> np.ndarray | None:
    """The Gauss-Newton step of the parameters that raises the normalised correlation, or None."""
    f, wgt = warped.field, warped.valid
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    if wgt.size > SAMPLE_ABOVE:  # every other row and column: a quarter of the work, the same optimum
        f, wgt, gx, gy, reference = f[::2, ::2], wgt[::2, ::2], gx[::2, ::2], gy[::2, ::2], reference[::2, ::2]
        bx, by = bx[:, ::2, ::2], by[:, ::2, ::2]
    # The normalised correlation's gradient: the residual against the source scaled by its best
    # gain rho (ECC's photometric normalisation). A gain of 1 (plain squared differences) would push
    # the source's unmatched structure out of the overlap; the plain correlation would zoom in.
    rho = max(float((reference * f * wgt[..., None]).sum() / max((f * f * wgt[..., None]).sum(), 1e-12)), 0.05)
    resid = ((reference - rho * f) * wgt[..., None]).reshape(-1)
    n_par = len(bx)
    sd = (gx[None] * bx[..., None] + gy[None] * by[..., None]).reshape(n_par, -1)  # (P, H*W*2)
    sdw = sd * np.repeat(wgt.reshape(-1), 2)[None]
    hess = sdw @ sd.T
    try:
        return np.linalg.solve(hess + 1e-6 * np.trace(hess) / n_par * np.eye(n_par), sdw @ resid) / rho
    except np.linalg.LinAlgError:
        return None


def refine(reference: np.ndarray, source: Level, matrix: np.ndarray, model: str,
           iterations: int) -> tuple[np.ndarray, float]:
    """Refine `matrix` (source level -> coordinates of the reference field) under `model`; (matrix, score).

    Each step is backtracked (full, half, quarter) until the score does not fall; none -> converged.
    """
    if model not in MODELS:
        raise ValueError(f"unknown transform model {model!r}; choose one of {', '.join(MODELS)}")
    shape = reference.shape[:2]
    bx, by = _basis(model, shape)
    box = corners(*shape)
    m = np.asarray(matrix, np.float64)
    warped = warp_source(source, m, shape)
    best = score(reference, warped)[0]
    for _ in range(iterations):
        if warped.valid.sum() < MIN_VALID or (p := _step(reference, warped, bx, by)) is None:
            break
        for t in (1.0, 0.5, 0.25):
            inc = increment_matrix(model, t * p, shape)
            trial = np.linalg.inv(inc) @ m
            trial_warped = warp_source(source, trial / trial[2, 2], shape)
            trial_score = score(reference, trial_warped)[0]
            if trial_score >= best - 1e-6:
                break
        else:
            break
        m, warped, best = trial / trial[2, 2], trial_warped, trial_score
        if np.abs(apply(inc, box) - box).max() < STEP_TOLERANCE:
            break
    return m, best
