"""Global search over scale, rotation and translation on a coarse level of both sources.

For every (scale, angle) on a grid, the source's orientation field is turned and zoomed about its
centre (its doubled-angle vectors turned by twice the angle), and its normalised correlation with
the reference's field is computed for every translation at once with FFTs, each translation
normalised over its own overlap (masked normalised cross-correlation, Padfield 2012). This is
what finds a 640×512 thermal frame inside a 1920×1080 colour frame, or a source moved by a tenth
of its size, before any local refinement; the best few peaks go on to be refined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .refine import footprint
from .structure import Level, orientation_field
from .transforms import apply, corners, resample_matrix

PEAKS_PER_POSE = 2  # local maxima kept per (scale, angle)
MIN_SHARE = 0.4  # overlap / the smaller frame's area, below which a pose is not considered
PEAK_SPACING = 0.08  # of the reference's longest side: closer maxima are one peak


@dataclass(frozen=True)
class Candidate:
    """A coarse estimate: matrix (source level -> reference level coordinates) and its score."""

    matrix: np.ndarray
    score: float


def _posed(level: Level, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source zoomed and turned into a canvas, its field computed there: (field, mask, level -> canvas)."""
    h, w = level.shape
    grey = level.grey
    pre = np.eye(3)
    if scale < 0.75:  # shrink by area first: a plain warp would alias
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        pre = resample_matrix(size[0] / w, size[1] / h)
    gh, gw = grey.shape[:2]
    rest = scale / pre[0, 0]
    c, s = rest * math.cos(math.radians(angle)), rest * math.sin(math.radians(angle))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    box = apply(rot, corners(gh, gw))
    lo = np.floor(box.min(0))
    rot[:2, 2] = -lo
    cw, ch = (np.ceil(box.max(0)) - lo).astype(int) + 1
    canvas = cv2.warpAffine(grey, rot[:2], (int(cw), int(ch)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = footprint(rot, (gh, gw), (int(ch), int(cw)))
    field = orientation_field(canvas, level.eps2 / scale ** 2)
    return field * mask[..., None], mask, rot @ pre


class _Spectra:
    """The reference's spectra for one padded size, reused by every pose."""

    def __init__(self, ref: np.ndarray, size: tuple[int, int]):
        self.size = size
        self.field = [np.fft.rfft2(ref[..., c], size) for c in range(2)]
        self.energy = np.fft.rfft2((ref * ref).sum(-1), size)
        self.mask = np.fft.rfft2(np.ones(ref.shape[:2], np.float32), size)

    def correlations(self, canvas: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(normalised correlation, overlap px) for every offset of the canvas over the reference.

        Entry [y, x] is the canvas placed with its origin at reference pixel (y, x), modulo the size.
        """
        fft, size = np.fft.rfft2, self.size

        def inverse(spectrum: np.ndarray) -> np.ndarray:
            return np.fft.irfft2(spectrum, size)

        mask_f = np.conj(fft(mask, size))
        num = inverse(self.field[0] * np.conj(fft(canvas[..., 0], size)) + self.field[1] * np.conj(fft(canvas[..., 1], size)))
        ref_energy = inverse(self.energy * mask_f)
        canvas_energy = inverse(self.mask * np.conj(fft((canvas * canvas).sum(-1), size)))
        overlap = inverse(self.mask * mask_f)
        return num / np.sqrt(np.maximum(ref_energy * canvas_energy, 1e-12)), overlap


def overlap_weighted(score: np.ndarray | float, share: np.ndarray | float) -> np.ndarray | float:
    """A correlation discounted for a small overlap, `share` of the reference's area: over fewer pixels a
    high correlation is easier by chance (its noise shrinks as one over the root of the pixels)."""
    return score * np.sqrt(np.minimum(share, 1.0))


def search(reference: Level, source: Level, scales: np.ndarray, angles: np.ndarray,
           keep: int = 4) -> list[Candidate]:
    """The best `keep` poses of the source on the reference, best first, distinct by their corners."""
    rh, rw = reference.shape
    ref = reference.field
    posed = [(s, a, *_posed(source, s, a)) for s in scales for a in angles]
    ph = rh + max(p[3].shape[0] for p in posed)
    pw = rw + max(p[3].shape[1] for p in posed)
    size = (cv2.getOptimalDFTSize(ph), cv2.getOptimalDFTSize(pw))
    spectra = _Spectra(ref, size)
    found: list[Candidate] = []
    spacing = PEAK_SPACING * max(rh, rw)
    for _, _, canvas, mask, to_canvas in posed:
        score, overlap = spectra.correlations(canvas, mask)
        overlap = np.maximum(overlap, 0)
        share = overlap / min(rh * rw, float(mask.sum()))
        score = np.where(share >= MIN_SHARE, overlap_weighted(score, overlap / (rh * rw)), -1.0)
        for _ in range(PEAKS_PER_POSE):
            y, x = np.unravel_index(int(np.argmax(score)), score.shape)
            if score[y, x] <= 0:
                break
            dy, dx = (y if y < rh else y - size[0]), (x if x < rw else x - size[1])
            shift = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
            found.append(Candidate(shift @ to_canvas, float(score[y, x])))
            r = int(math.ceil(spacing))
            ys = np.arange(y - r, y + r + 1) % size[0]
            xs = np.arange(x - r, x + r + 1) % size[1]
            score[np.ix_(ys, xs)] = -1.0
    return distinct(sorted(found, key=lambda c: -c.score), source.shape, spacing, keep)


def distinct(candidates: list[Candidate], shape: tuple[int, int], spacing: float, keep: int) -> list[Candidate]:
    """The first `keep` candidates whose corners differ from every earlier kept one by more than `spacing`."""
    out: list[Candidate] = []
    box = corners(*shape)
    for c in candidates:
        where = apply(c.matrix, box)
        if all(np.abs(where - apply(k.matrix, box)).max() > spacing for k in out):
            out.append(c)
        if len(out) == keep:
            break
    return out
