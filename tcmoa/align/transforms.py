"""3×3 transforms between pixel frames: models, resolution changes, checks and words.

Every matrix here maps a source's pixel coordinates (x right, y down, pixel centres at integers, as
OpenCV's warps) to the reference's, in homogeneous form. A model is how many degrees of freedom
a matrix may have: translation (2), similarity (4: shift, rotation, one scale), affine (6),
homography (8).
"""
from __future__ import annotations

import math

import numpy as np

MODELS = ("translation", "similarity", "affine", "homography")
# Bounds of a believable transform between two photos or slices of one scene; outside them an
# estimate is a wrong match, not a camera (a fold, a mirror, a 20× zoom).
MAX_SCALE_RATIO = 8.0  # |scale| between 1/8 and 8 (a thermal frame beside a 12 MP colour frame is ~6×)
MAX_ANISOTROPY = 1.6  # ratio of the linear part's singular values (shear, squash) anywhere on the source
MIN_OVERLAP = 0.15  # share of the reference or the source (the smaller) covered by the other


def corners(h: int, w: int) -> np.ndarray:
    """The four outer corners of an h×w image in pixel-centre coordinates, (4, 2)."""
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], dtype=np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by a 3×3 matrix (N, 2)."""
    p = np.c_[points, np.ones(len(points))] @ np.asarray(matrix, dtype=np.float64).T
    return p[:, :2] / p[:, 2:3]


def resample_matrix(scale_x: float, scale_y: float) -> np.ndarray:
    """Full-resolution coordinates -> those of the image resized by (scale_x, scale_y) (cv2.resize's centres)."""
    return np.array([[scale_x, 0, 0.5 * scale_x - 0.5], [0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]])


def rescale(matrix: np.ndarray, source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A matrix between resized frames brought back to full resolution.

    `source` and `reference` are the resample matrices (full -> resized) of the two frames.
    """
    return np.linalg.inv(reference) @ matrix @ source


def similarity(scale: float, angle_deg: float, tx: float = 0.0, ty: float = 0.0,
               centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Scale and rotate (clockwise on screen for a positive angle, y pointing down) about `centre`, then shift."""
    c, s = scale * math.cos(math.radians(angle_deg)), scale * math.sin(math.radians(angle_deg))
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0, 0, 1]])


def fit(model: str, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares matrix of `model` that maps points src (N, 2) onto dst (N, 2)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    out = np.eye(3)
    if model == "translation":
        out[:2, 2] = (dst - src).mean(0)
    elif model == "similarity":  # x' = a x - b y + tx, y' = b x + a y + ty
        rows = np.zeros((2 * len(src), 4))
        rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
        rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
        a, b, tx, ty = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)[0]
        out[:2] = [[a, -b, tx], [b, a, ty]]
    elif model == "affine":
        out[:2] = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)[0].T
    elif model == "homography":
        eqs: list[list[float]] = []
        for (x, y), (u, v) in zip(src, dst):
            eqs += [[x, y, 1, 0, 0, 0, -u * x, -u * y, -u], [0, 0, 0, x, y, 1, -v * x, -v * y, -v]]
        out = np.linalg.svd(np.asarray(eqs))[2][-1].reshape(3, 3)
        out = out / out[2, 2]
    else:
        raise ValueError(f"unknown transform model {model!r}; choose one of {', '.join(MODELS)}")
    return out


def project(matrix: np.ndarray, model: str, h: int, w: int) -> np.ndarray:
    """The matrix of `model` closest to `matrix` on an h×w source (least squares on a 5×5 grid of points)."""
    g = np.stack(np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5)), -1).reshape(-1, 2)
    return fit(model, g, apply(matrix, g))


def corner_error(estimate: np.ndarray, truth: np.ndarray, h: int, w: int) -> float:
    """Mean distance (reference px) between where two matrices put an h×w source's four corners."""
    c = corners(h, w)
    return float(np.linalg.norm(apply(estimate, c) - apply(truth, c), axis=1).mean())


def decompose(matrix: np.ndarray) -> tuple[float, float, float]:
    """(scale, clockwise angle in degrees, anisotropy) of a matrix's linear part at the origin."""
    a = np.asarray(matrix, np.float64)[:2, :2] / matrix[2, 2]
    u, sv, vt = np.linalg.svd(a)
    rot = u @ vt
    angle = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
    return float(math.sqrt(abs(np.linalg.det(a)))), angle, float(sv[0] / max(sv[1], 1e-12))


def local_jacobians(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 2×2 Jacobian of the mapping at each point (N, 2, 2); a homography's varies across the image."""
    m = np.asarray(matrix, np.float64)
    x, y = points[:, 0], points[:, 1]
    den = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    u = (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / den
    v = (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / den
    jac = np.empty((len(points), 2, 2))
    jac[:, 0, 0] = (m[0, 0] - u * m[2, 0]) / den
    jac[:, 0, 1] = (m[0, 1] - u * m[2, 1]) / den
    jac[:, 1, 0] = (m[1, 0] - v * m[2, 0]) / den
    jac[:, 1, 1] = (m[1, 1] - v * m[2, 1]) / den
    return jac


def implausibility(matrix: np.ndarray, source_shape: tuple[int, int], reference_shape: tuple[int, int],
                   base_scale: float = 1.0) -> str | None:
    """Why a matrix cannot be a real alignment of the source onto the reference, or None when it can.

    Checked on a grid over the source: the horizon of a homography outside it (no fold), the
    orientation kept (no mirror), the scale within MAX_SCALE_RATIO of `base_scale` (the size
    ratio of the frames), bounded shear, and enough overlap.
    """
    h, w = source_shape
    grid = np.stack(np.meshgrid(np.linspace(-0.5, w - 0.5, 9), np.linspace(-0.5, h - 0.5, 9)), -1).reshape(-1, 2)
    m = np.asarray(matrix, np.float64)
    if not np.all(np.isfinite(m)):
        return "the estimate is not a finite transform"
    den = grid @ m[2, :2] + m[2, 2]
    if np.any(den <= 1e-6 * abs(m[2, 2])) or np.sign(den.min()) != np.sign(den.max()):
        return "the transform would fold the image (its horizon crosses the image)"
    jac = local_jacobians(m / m[2, 2], grid)
    det = np.linalg.det(jac)
    if np.any(det <= 0):
        return "the transform would mirror or fold the image"
    scale = np.sqrt(det) / base_scale
    if scale.min() < 1 / MAX_SCALE_RATIO or scale.max() > MAX_SCALE_RATIO:
        return f"the transform would scale the source {scale.mean() * base_scale:.2f}×, beyond a plausible camera"
    sv = np.linalg.svd(jac, compute_uv=False)
    if np.max(sv[:, 0] / sv[:, 1]) > MAX_ANISOTROPY:
        return "the transform would shear or squash the image beyond a plausible camera"
    if overlap_share(m, source_shape, reference_shape) < MIN_OVERLAP:
        return "the source would barely overlap the reference"
    return None


def overlap_share(matrix: np.ndarray, source_shape: tuple[int, int], reference_shape: tuple[int, int]) -> float:
    """Area of the warped source inside the reference over the smaller of the two areas (polygon clip)."""
    quad = apply(matrix, corners(*source_shape))
    hr, wr = reference_shape
    box = corners(hr, wr)
    inside = _clip_polygon(quad, box)
    area_in = _area(inside) if len(inside) >= 3 else 0.0
    return float(area_in / max(min(_area(quad), hr * wr), 1e-9))


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _clip_polygon(poly: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon by an axis-aligned box given by its corners."""
    (x0, y0), (x1, y1) = box.min(0), box.max(0)
    out = [tuple(p) for p in poly]
    for axis, bound, keep_less in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        pts, out = out, []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = (cur[axis] <= bound) if keep_less else (cur[axis] >= bound)
            prev_in = (prev[axis] <= bound) if keep_less else (prev[axis] >= bound)
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in range(2)))
            if cur_in:
                out.append(cur)
        if not out:
            return np.zeros((0, 2))
    return np.asarray(out)


def describe(matrix: np.ndarray, source_shape: tuple[int, int], reference_shape: tuple[int, int]) -> str:
    """What a transform does to the source, in words: its move, turn and zoom (and shear or perspective)."""
    h, w = source_shape
    centre = np.array([[(w - 1) / 2, (h - 1) / 2]])
    scale, angle, aniso = decompose(matrix)
    parts = []
    if source_shape == reference_shape:
        dx, dy = (apply(matrix, centre) - centre)[0]
        moves = [f"{abs(dx):.1f} px {'right' if dx >= 0 else 'left'}" if abs(dx) >= 0.05 else "",
                 f"{abs(dy):.1f} px {'down' if dy >= 0 else 'up'}" if abs(dy) >= 0.05 else ""]
        moves = [m for m in moves if m]
        parts.append("moved " + " and ".join(moves) if moves else "not moved")
    else:
        cx, cy = apply(matrix, centre)[0]
        parts.append(f"placed with its centre at ({cx:.0f}, {cy:.0f}) of the reference")
    if abs(angle) >= 0.05:
        parts.append(f"rotated {abs(angle):.1f}° {'clockwise' if angle > 0 else 'anticlockwise'}")
    if abs(scale - 1) >= 0.005:
        parts.append(f"scaled {scale:.2f}×")
    if aniso > 1.01:  # more than the rounding of two frames' pixel grids
        parts.append("sheared")
    if abs(matrix[2, 0]) + abs(matrix[2, 1]) > 1e-9 and _perspective_effect(matrix, h, w) >= 0.5:
        parts.append("with perspective")
    return ", ".join(parts)


def _perspective_effect(matrix: np.ndarray, h: int, w: int) -> float:
    """How far (px) the corners land from where the matrix's best affine puts them."""
    c = corners(h, w)
    return float(np.linalg.norm(apply(project(matrix, "affine", h, w), c) - apply(matrix, c), axis=1).max())
