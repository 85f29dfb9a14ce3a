"""Moving content in exposure stacks: where a source disagrees with the reference beyond what exposure explains.

API (images float32 in [0, 1], (H, W) or (H, W, 3), already aligned and of one size):

* ``exposure_map(source, reference, valid=None)``: the reference as it would look at the source's
  exposure, clipping included: a monotone per-channel mapping fitted on the pixels where ``valid``.
* ``motion_masks(images, reference, coverage=None)``: per image a float32 (H, W) mask in [0, 1], 1 where
  the image shows moving content (it disagrees with the reference beyond exposure), soft-edged; the
  reference's own mask is all zeros. ``coverage`` (per image, optional) marks the pixels a warped image
  covers; uncovered pixels carry no evidence and get 0 (the alignment's own mask handles them).
* ``deghost(images, reference, masks)``: each image with its moving pixels replaced by the exposure-mapped
  reference, blended by the mask; the reference, and every image whose mask is all zeros, come back as given.

Method:

1. **Exposure relation.** Per channel, the joint histogram of (reference, source) levels gives, at each
   of 256 reference levels r, the distribution of the source's values there. Its median, made
   non-decreasing by weighted isotonic regression (pool adjacent violators), is the mapping m(r); its
   interquartile range / 1.349 is a spread s(r) that holds noise, JPEG, texture and the mapping's own
   error at that level. Median and quartiles ignore moving content while it covers less than a quarter of
   the pixels at a level. Where the source is blown out, m is 1: clipping is reproduced.
2. **Evidence.** On a copy of at most ``work_pixels`` pixels (area-averaged, which also averages out
   noise), each source pixel must lie in the band m(r) +- (gain * s(r) + floor), widened to the band's
   extremes over a (2 ``window`` + 1)^2 neighbourhood so that a residual misalignment of ``window`` px
   (at that scale) is no evidence. A clipped reference carries no evidence on one side: at a blown level
   (>= ``CLIP``) it says only "at least as bright as the brightest unclipped level" (or as the source's 2%
   quantile where the reference is blown, if lower: local tone curves), so the band has no upper end; at a
   crushed level (<= ``CRUSH``) no lower end. A clipped source needs no rule: a blown source pixel can only
   leave the band upwards, which is real evidence (its true value is higher still). The test runs both ways
   round (the source predicted from the reference and the reference from the source: each is informative
   where its predictor is well exposed); the evidence is the larger distance outside the band, over channels.
3. **Mask.** Hysteresis: pixels over ``high`` (opened by 3 x 3, so lone pixels and one-pixel edges seed
   nothing) seed the connected regions over ``low``; regions under ``min_area`` of the image are dropped,
   closed (radius ``close``) and each replaced by its convex hull where that at most doubles
   it (a moving object is found in pieces where it resembles what it covers). Where the reference is crushed (every channel <=
   ``dark``) or blown it holds no evidence either way: a region grows into such pixels by up to ``reach``
   px, neither stopping at them nor flagging them on its own. Then the mask is dilated by ``grow`` px and
   blurred (Gaussian, sigma ``feather`` px) so that it has soft edges, and resized bilinearly to the
   images' size. Lengths are px of a working copy of ``work_pixels``; a smaller image's scale them down.

Thresholds tuned on train/mef (FusionDN) and synthetic brackets only; benchmarks/deghosting.py measures them on MEFB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..imaging import from_array
from ..ycbcr import bt601_luma

__all__ = ["MotionConfig", "deghost", "exposure_map", "motion_masks"]

LEVELS = 256  # reference levels of the joint histogram (8-bit steps)
TARGET_LEVELS = 256  # source levels (quantiles are interpolated within them)
CLIP = 250 / 255  # a reference level at or above this is blown out: only a lower bound on the scene
CRUSH = 5 / 255  # at or below this, crushed: only an upper bound
_FIT_PIXELS = 1_000_000  # exposure_map fits on at most this many pixels (a regular subsample)
_MIN_COUNT = 8  # a level seen fewer times takes its spread from its neighbours
_LUT_LEVELS = 4096  # tables are evaluated at this many levels, interpolated: area-averaged pixels lie between 8-bit steps
_OPEN = 4.0  # a band end beyond [0, 1]: no bound (finite, so tables interpolate without NaN)
_TAIL = 0.02  # where the reference clips, the source's 2% / 98% quantile there bounds it
_HULL_GROWTH = 2.0  # a region is replaced by its convex hull only if that at most doubles it
_POOL = 2  # the spread at a reference level pools the levels this close


@dataclass(frozen=True)
class MotionConfig:
    """Thresholds of motion_masks (intensities on [0, 1]; lengths in px of the working copy)."""

    work_pixels: int = 150_000  # masks are computed on a copy at most this large, then upsampled
    gain: float = 2.0  # band half-width in robust spreads of the exposure relation
    floor: float = 0.015  # plus this: noise and quantisation the spread does not see
    window: int = 1  # residual misalignment tolerated
    low: float = 0.02  # hysteresis: region threshold on the distance outside the band
    high: float = 0.06  # and seed threshold
    min_area: float = 0.0005  # smallest moving region kept, as a share of the image
    close: int = 8  # closing radius joining the pieces of one object
    dark: float = 0.03  # a reference pixel with every channel at or below this holds no evidence
    reach: int = 16  # how far a region grows into pixels without evidence
    grow: int = 10  # dilation of the mask (shadows, blur at the object's edge)
    feather: float = 5.0  # Gaussian sigma of the soft edge


def _checked_stack(images: Sequence[np.ndarray], reference: int) -> list[np.ndarray]:
    """float32 [0, 1] images of one size, at least two, with a valid reference index (ValueError otherwise)."""
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
        raise ValueError("images must be a list of images (an exposure stack)")
    if len(images) < 2:
        raise ValueError(f"moving content needs at least 2 images (a reference and a source), got {len(images)}")
    if not isinstance(reference, (int, np.integer)) or not 0 <= reference < len(images):
        raise ValueError(f"reference must be an image index in 0..{len(images) - 1}, got {reference!r}")
    imgs = [from_array(im, collapse_grey=False, label=f"image {i}") for i, im in enumerate(images)]
    h, w = imgs[reference].shape[:2]
    for i, im in enumerate(imgs):
        if im.shape[:2] != (h, w):
            raise ValueError(f"image {i} is {im.shape[1]}x{im.shape[0]} but the reference is {w}x{h} "
                             "(width x height): align the images to the reference's frame first")
    return imgs


def _checked_masks(masks: Sequence[np.ndarray | None] | None, n: int, shape: tuple, what: str) -> list[np.ndarray | None]:
    """Per-image (H, W) float32 masks in [0, 1] (None stays None); ValueError naming the bad one."""
    if masks is None:
        return [None] * n
    if len(masks) != n:
        raise ValueError(f"{what}: got {len(masks)} for {n} images; give one per image (None for none)")
    out: list[np.ndarray | None] = []
    for i, m in enumerate(masks):
        if m is None:
            out.append(None)
            continue
        a = np.asarray(m, dtype=np.float32)
        if a.shape != shape:
            raise ValueError(f"{what} {i} is shaped {a.shape}, expected {shape} (the images' height and width)")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError(f"{what} {i} must hold finite values in [0, 1]")
        out.append(a)
    return out


def _paired_channels(source: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) views of source and reference with matching channels: a colour reference of a grey source is its luma."""
    src = source if source.ndim == 3 else source[..., None]
    if reference.ndim == 3 and source.ndim == 2:
        ref = bt601_luma(reference)[..., None]
    elif reference.ndim == 2:
        ref = np.broadcast_to(reference[..., None], src.shape)
    else:
        ref = reference
    return src, ref


def _levels(x: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """The nearest of `levels` evenly spaced levels on [0, 1] (x lies in [0, 1]), as indices."""
    return (x * np.float32(levels - 1) + np.float32(0.5)).astype(np.intp)


def _row_quantiles(joint: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Per row of a (R, S) level histogram, the qs-quantiles of the column value on [0, 1], interpolated in their bin."""
    cdf = np.cumsum(joint, axis=1)
    rows = np.arange(joint.shape[0])
    out = []
    for q in qs:
        target = q * cdf[:, -1]
        idx = np.minimum((cdf < target[:, None]).sum(axis=1), joint.shape[1] - 1)
        before = np.where(idx > 0, cdf[rows, idx - 1], 0.0)
        count = joint[rows, idx]
        frac = np.divide(target - before, count, out=np.full_like(target, 0.5), where=count > 0)
        out.append(np.clip((idx - 0.5 + frac) / (joint.shape[1] - 1), 0.0, 1.0))
    return out


def _isotonic(y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest to y in weighted least squares (pool adjacent violators)."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, w in zip(y.tolist(), (weight + 1e-9).tolist()):
        means.append(value)
        weights.append(w)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m, w2, n = means.pop(), weights.pop(), sizes.pop()
            total = weights[-1] + w2
            means[-1] = (means[-1] * weights[-1] + m * w2) / total
            weights[-1], sizes[-1] = total, sizes[-1] + n
    return np.repeat(np.asarray(means, dtype=np.float64), sizes)


def _fill_sparse(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Values at levels seen fewer than _MIN_COUNT times, interpolated from the levels around them."""
    seen = count >= _MIN_COUNT
    if not seen.any():
        return np.full_like(values, float(np.median(values)))
    x = np.arange(values.size)
    return np.interp(x, x[seen], values[seen])


@dataclass(frozen=True)
class _Relation:
    """How a source's levels follow a reference's, per channel (module docstring, step 1)."""

    mapping: np.ndarray  # (C, LEVELS) median source value at each reference level, non-decreasing
    spread: np.ndarray  # (C, LEVELS) robust spread around it
    blown_floor: np.ndarray  # (C,) a low quantile of the source where the reference is blown (NaN: none is)
    crushed_ceiling: np.ndarray  # (C,) a high quantile of the source where the reference is crushed


def _fit_relation(src: np.ndarray, ref: np.ndarray, valid: np.ndarray | None) -> _Relation:
    """The relation of (H, W, C) src to ref, from their joint level histogram over the valid pixels."""
    channels = src.shape[2]
    mapping, spread = np.empty((channels, LEVELS)), np.empty((channels, LEVELS))
    tails = np.full((2, channels), np.nan)
    blown, crushed = np.linspace(0.0, 1.0, LEVELS) >= CLIP, np.linspace(0.0, 1.0, LEVELS) <= CRUSH
    for c in range(channels):
        r, s = _levels(ref[..., c]), _levels(src[..., c], TARGET_LEVELS)
        if valid is not None:
            r, s = r[valid], s[valid]
        joint = np.bincount((r * TARGET_LEVELS + s).ravel(), minlength=LEVELS * TARGET_LEVELS)
        joint = joint.reshape(LEVELS, TARGET_LEVELS).astype(np.float32)  # counts stay exact below 2^24
        count = joint.sum(axis=1)
        (median,) = _row_quantiles(joint, (0.5,))
        mapping[c] = _isotonic(_fill_sparse(median, count), count)
        # Quartiles need more samples than a median: the spread pools the levels within _POOL.
        running = np.cumsum(np.pad(joint, ((_POOL + 1, _POOL), (0, 0))), axis=0)
        pooled = running[2 * _POOL + 1 :] - running[: -2 * _POOL - 1]
        low, high = _row_quantiles(pooled, (0.25, 0.75))
        spread[c] = _fill_sparse((high - low) / 1.349, pooled.sum(axis=1))
        for k, (rows, q) in enumerate(((blown, _TAIL), (crushed, 1 - _TAIL))):
            if count[rows].sum() >= _MIN_COUNT:
                tails[k, c] = _row_quantiles(joint[rows].sum(axis=0, keepdims=True), (q,))[0][0]
    return _Relation(mapping, spread, tails[0], tails[1])


def _fit_mapping(src: np.ndarray, ref: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The (C, LEVELS) mapping of (H, W, C) ref into src, fitted on a regular subsample of at most _FIT_PIXELS."""
    step = max(1, int(np.ceil(np.sqrt(src.shape[0] * src.shape[1] / _FIT_PIXELS))))
    sub_valid = None if valid is None else valid[::step, ::step]
    if sub_valid is not None and sub_valid.mean() < 0.01:  # (nearly) everything moved: the whole image it is
        sub_valid = None
    return _fit_relation(src[::step, ::step], ref[::step, ::step], sub_valid).mapping


def exposure_map(source: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The reference as it would look at the source's exposure: a monotone per-channel map, clipping included."""
    src, ref = (from_array(x, collapse_grey=False, label=name) for x, name in ((source, "source"), (reference, "reference")))
    if src.shape[:2] != ref.shape[:2]:
        raise ValueError(f"source is {src.shape[1]}x{src.shape[0]} but reference is {ref.shape[1]}x{ref.shape[0]} "
                         "(width x height): align them first")
    (mask,) = _checked_masks(None if valid is None else [valid], 1, src.shape[:2], "valid")
    src3, ref3 = _paired_channels(src, ref)
    mapping = _fit_mapping(src3, ref3, None if mask is None else mask > 0.5)
    return _apply(mapping, ref3).reshape(src.shape)


def _fine(table: np.ndarray) -> np.ndarray:
    """A table at the LEVELS levels, linearly interpolated to _LUT_LEVELS levels (float32)."""
    return np.interp(np.linspace(0.0, 1.0, _LUT_LEVELS), np.linspace(0.0, 1.0, LEVELS), table).astype(np.float32)


def _apply(table: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per channel c, table[c] (at the LEVELS levels) at ref's values, interpolated: (H, W, C) float32."""
    out = np.empty(ref.shape, np.float32)
    for c in range(ref.shape[2]):
        out[..., c] = _fine(table[c])[_levels(ref[..., c], _LUT_LEVELS)]
    return out


def _band(relation: _Relation, config: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of the expected source value per reference level, open where the reference clips."""
    half = config.gain * relation.spread + config.floor
    lower, upper = relation.mapping - half, relation.mapping + half
    levels = np.linspace(0.0, 1.0, LEVELS)
    blown, crushed = levels >= CLIP, levels <= CRUSH
    top, bottom = int(np.argmax(blown)) - 1, int(np.argmin(crushed))
    # A blown level bounds the source below by the brightest unclipped level's band, or by what the source
    # shows where the reference is blown, whichever is lower (local tone curves make the first too tight).
    lower[:, blown] = np.fmin(lower[:, top], relation.blown_floor)[:, None]
    upper[:, blown] = _OPEN
    upper[:, crushed] = np.fmax(upper[:, bottom], relation.crushed_ceiling)[:, None]
    lower[:, crushed] = -_OPEN
    return lower, upper


def _outside_band(src: np.ndarray, ref: np.ndarray, valid: np.ndarray, config: MotionConfig) -> np.ndarray:
    """Distance of each source pixel outside the band its reference level predicts, the largest over channels."""
    lower, upper = _band(_fit_relation(src, ref, valid), config)
    kernel = np.ones((2 * config.window + 1,) * 2, np.uint8)
    excess = np.zeros(src.shape[:2], np.float32)
    for c in range(src.shape[2]):
        idx = _levels(ref[..., c], _LUT_LEVELS)
        lo, hi = cv2.erode(_fine(lower[c])[idx], kernel), cv2.dilate(_fine(upper[c])[idx], kernel)
        s = src[..., c]
        excess = np.maximum(excess, np.maximum(lo - s, s - hi))
    return excess


def _evidence(src: np.ndarray, ref: np.ndarray, valid: np.ndarray, config: MotionConfig) -> np.ndarray:
    """Disagreement of source and reference beyond exposure, both ways round: (h, w) float32, 0 where not valid."""
    excess = np.maximum(_outside_band(src, ref, valid, config), _outside_band(ref, src, valid, config))
    excess[~valid] = 0.0
    return excess


def _disc(radius: int) -> np.ndarray:
    """A disc-shaped structuring element of the given radius."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _hulls(mask: np.ndarray) -> np.ndarray:
    """Each connected region of a uint8 mask filled, and replaced by its convex hull where that is compact.

    A hull at most _HULL_GROWTH times the region's area completes an object found in pieces; a thin,
    bent region (a line along two borders) keeps its own shape, or its hull would cover half the image.
    """
    out = np.zeros_like(mask)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        hull = cv2.convexHull(contour)
        if cv2.contourArea(hull) <= _HULL_GROWTH * max(cv2.contourArea(contour), 1.0):
            cv2.fillConvexPoly(out, hull, 1)
        else:
            cv2.drawContours(out, [contour], 0, 1, thickness=-1)
    return out


def _hysteresis(excess: np.ndarray, config: MotionConfig) -> np.ndarray:
    """uint8 regions over `low` holding a seed over `high` (opened 3 x 3) and at least `min_area` of the image."""
    seeds = cv2.morphologyEx((excess > config.high).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats((excess > config.low).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[seeds > 0])] = True
    keep &= stats[:, cv2.CC_STAT_AREA] >= config.min_area * excess.size
    keep[0] = False
    return keep[labels].astype(np.uint8)


def _clean(excess: np.ndarray, unknown: np.ndarray, config: MotionConfig) -> np.ndarray:
    """The soft (h, w) mask from the evidence (module docstring, step 3)."""
    mask = _hysteresis(excess, config)
    if not mask.any():
        return np.zeros(excess.shape, np.float32)
    scale = min(1.0, float(np.sqrt(excess.size / config.work_pixels)))
    close, reach, grow = (round(n * scale) for n in (config.close, config.reach, config.grow))
    if close > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disc(close))
    mask = _hulls(mask)  # which fills holes too
    allowed = (unknown | (mask > 0)).astype(np.uint8)
    for _ in range(reach):  # a geodesic dilation: only through pixels without evidence
        mask = np.minimum(cv2.dilate(mask, np.ones((3, 3), np.uint8)), allowed)
    if grow > 0:
        mask = cv2.dilate(mask, _disc(grow))
    soft = mask.astype(np.float32)
    return cv2.GaussianBlur(soft, (0, 0), config.feather * scale) if config.feather > 0 else soft


def _working_copy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image area-averaged to (h, w), with a channel axis."""
    h, w = size
    out = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out if out.ndim == 3 else out[..., None]


def _working_size(h: int, w: int, pixels: int) -> tuple[int, int]:
    """(h, w) scaled down to at most `pixels` pixels (never up)."""
    scale = min(1.0, float(np.sqrt(pixels / (h * w))))
    return max(1, round(h * scale)), max(1, round(w * scale))


def motion_masks(images: Sequence[np.ndarray], reference: int, coverage: Sequence[np.ndarray | None] | None = None,
                 config: MotionConfig = MotionConfig()) -> list[np.ndarray]:
    """Per image a float32 (H, W) mask in [0, 1] of moving content against images[reference] (module docstring)."""
    imgs = _checked_stack(images, reference)
    h, w = imgs[reference].shape[:2]
    covers = _checked_masks(coverage, len(imgs), (h, w), "coverage")
    size = _working_size(h, w, config.work_pixels)
    masks = []
    for i, img in enumerate(imgs):
        if i == reference:
            masks.append(np.zeros((h, w), np.float32))
            continue
        src, ref = (_working_copy(np.ascontiguousarray(x), size) for x in _paired_channels(img, imgs[reference]))
        pair = [c for c in (covers[i], covers[reference]) if c is not None]
        cover = np.minimum.reduce(pair) if pair else None
        # Any uncovered pixel in a working pixel's area leaves it without evidence.
        valid = np.ones(size, bool) if cover is None else _working_copy(cover, size)[..., 0] > 0.999
        unknown = (np.max(ref, axis=2) <= config.dark) | (np.min(ref, axis=2) >= CLIP)
        soft = _clean(_evidence(src, ref, valid, config), unknown, config)
        full = np.asarray(soft if soft.shape == (h, w) else cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR))
        if cover is not None:
            full *= cover > 0.5
        masks.append(np.clip(full, 0.0, 1.0, out=full))
    return masks


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The smallest rows x columns slice holding every nonzero pixel of a mask that has one."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def deghost(images: Sequence[np.ndarray], reference: int, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images with moving pixels replaced by the exposure-mapped reference, blended by the masks."""
    imgs = _checked_stack(images, reference)
    checked = _checked_masks(masks, len(imgs), imgs[reference].shape[:2], "mask")
    out = []
    for i, (img, mask) in enumerate(zip(imgs, checked)):
        if i == reference or mask is None or not mask.any():
            out.append(img)
            continue
        src, ref = _paired_channels(img, imgs[reference])
        mapping = _fit_mapping(src, ref, mask < 0.5)  # fitted on the still pixels
        box, result = _box(mask), src.copy()
        result[box] += mask[box][..., None] * (_apply(mapping, ref[box]) - result[box])
        out.append(result.reshape(img.shape))
    return out
