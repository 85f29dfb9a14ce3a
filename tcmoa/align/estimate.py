"""One source against the reference: global search, then refinement coarse to fine.

The measure is the normalised correlation of orientation fields (tcmoa.align.structure), refined
by Gauss-Newton (tcmoa.align.refine), for every kind of source. (Normalised mutual information,
the medical standard, was tried on the training MRI + PET/SPECT/CT slices: its optimum lay
further from the registered pose than this one's, at every pyramid level.)

The search starts from a global search of orientation fields on a level about COARSE_SIDE px
long (the layout of a scene survives there even across modalities), plus the identity (or, for
sources of different sizes, the fit of the source's frame onto the reference's), and from a
feature match for same-modality sources (tcmoa.align.features). The best few candidates are
refined on that level; the best of those through the finer levels, with the requested model
on the two finest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .refine import refine
from .consensus import CONSENSUS_SIDE, consensus
from .features import feature_seed
from .search import Candidate, distinct, overlap_weighted, search
from .structure import Level, Pyramid
from .transforms import apply, corners, decompose, overlap_share, project, similarity

COARSE_AREA = 6000  # px: the search runs on the coarsest level at least this large (96×64)
SCALE_STEP = 2 ** (1 / 6)  # 12 % between searched scales: a basin the refinement still converges from
SAME_SIZE_EXPONENTS = range(-2, 3)  # 0.79× .. 1.26×
OTHER_SIZE_EXPONENTS = range(-9, 4)  # the source's frame covering 0.35 .. 1.4 of the fitted size
# A source larger than the reference may hold it as a crop at the same pixel scale (a narrow thermal frame
# chosen as the reference beside a wide colour one): up to 3.2× the fitted zoom (not in the search of every
# rotation: 20 zooms × 36 angles took an unrelated pair 6 s to refuse).
LARGER_SOURCE_EXPONENTS = range(-9, 11)
ANGLES = (-10.0, -5.0, 0.0, 5.0, 10.0)
ALL_ANGLES = tuple(float(a) for a in range(0, 360, 10))
SEARCH_KEEP = 4
COARSE_ITERATIONS, FINE_ITERATIONS = 20, 6
FIT_PRIOR = 1.1


@dataclass
class Estimate:
    """A source's transform onto the reference and how well it scores."""

    matrix: np.ndarray  # 3×3, full-resolution source -> reference pixel coordinates
    model: str
    score: float  # the measure at the finest level after refinement
    start_score: float  # the measure of the starting frame (identity or fit), same level
    rival: float  # the best distinct other pose's coarse score over the chosen one's (0: none)


def frame_fit(src_shape: tuple[int, int], ref_shape: tuple[int, int]) -> np.ndarray:
    """The source's frame laid over the reference's: identity for equal sizes, else a centred uniform zoom."""
    if src_shape == ref_shape:
        return np.eye(3)
    (sh, sw), (rh, rw) = src_shape, ref_shape
    scale = math.sqrt(rh * rw / (sh * sw))
    return similarity(scale, 0, (rw - 1) / 2 - scale * (sw - 1) / 2, (rh - 1) / 2 - scale * (sh - 1) / 2)


def _at_levels(ref: Pyramid, src: Pyramid, k: int, matrix: np.ndarray) -> tuple[Level, Level, np.ndarray]:
    """Reference level k, the source level whose pixels are closest in size, and the matrix between them."""
    rl = ref.levels[k]
    full_scale = decompose(matrix)[0]  # reference px per source px, at full resolution
    # One pixel of source level lv spans full_scale · rl_scale / lv_scale pixels of reference level k: near 1 is
    # the source's own detail at the reference's; + 0.15 prefers a slightly finer source level (ratio ~0.86).
    sizes = [abs(math.log(full_scale * rl.to_level[0, 0] / lv.to_level[0, 0]) + 0.15) for lv in src.levels]
    sl = src.levels[int(np.argmin(sizes))]
    return rl, sl, rl.to_level @ matrix @ np.linalg.inv(sl.to_level)


def _to_full(rl: Level, sl: Level, level_matrix: np.ndarray) -> np.ndarray:
    m = np.linalg.inv(rl.to_level) @ level_matrix @ sl.to_level
    return m / m[2, 2]


def _refine_at(ref: Pyramid, src: Pyramid, k: int, matrix: np.ndarray, model: str,
               iterations: int) -> tuple[np.ndarray, float]:
    """Refine a full-resolution matrix on reference level k; (matrix, score)."""
    rl, sl, m = _at_levels(ref, src, k, matrix)
    m, s = refine(rl.field, sl, m, model, iterations)
    return _to_full(rl, sl, m), s


def score_at(ref: Pyramid, src: Pyramid, k: int, matrix: np.ndarray) -> float:
    """The measure of a full-resolution matrix on reference level k."""
    return _refine_at(ref, src, k, matrix, "translation", 0)[1]


def candidates(ref: Pyramid, src: Pyramid, k: int, wide: bool, features: bool,
               shift_only: bool = False) -> list[np.ndarray]:
    """Full-resolution starting matrices: the frame fit, a feature match and the search's peaks.

    `shift_only` (the translation model) searches translations of the frame fit alone.
    """
    fit = frame_fit(src.full_shape, ref.full_shape)
    rl, sl, fit_level = _at_levels(ref, src, k, fit)
    base = decompose(fit_level)[0]
    (sh, sw), (rh, rw) = src.full_shape, ref.full_shape
    same_size = (sh, sw) == (rh, rw)
    exponents = SAME_SIZE_EXPONENTS if same_size else \
        LARGER_SOURCE_EXPONENTS if sh * sw > rh * rw and not wide else OTHER_SIZE_EXPONENTS
    scales = np.array([base * SCALE_STEP ** e for e in ([0] if shift_only else exponents)])
    if wide and same_size:  # every rotation, at fewer zooms: the fallback for a camera turned on its side or upside down
        scales = scales[len(scales) // 2 - 1: len(scales) // 2 + 2]
    angles = np.array([0.0] if shift_only else ALL_ANGLES if wide else ANGLES)
    found = search(rl, sl, scales, angles, keep=SEARCH_KEEP)
    starts = [fit, *(_to_full(rl, sl, c.matrix) for c in found)]
    if features and not shift_only:
        rl0, sl0, _ = _at_levels(ref, src, 0, fit)
        seed = feature_seed(rl0, sl0)
        if seed is not None:
            starts.insert(1, _to_full(rl0, sl0, seed))
    return starts


def _weighted(ref: Pyramid, src: Pyramid, matrix: np.ndarray, score: float) -> float:
    """The score discounted for the share of the reference the source covers (search.overlap_weighted)."""
    h, w = ref.full_shape
    covered = overlap_share(matrix, src.full_shape, ref.full_shape) * min(h * w, _area(matrix, src.full_shape))
    return float(overlap_weighted(score, covered / (h * w)))


def _area(matrix: np.ndarray, shape: tuple[int, int]) -> float:
    """The area (reference px) the source's frame covers once mapped."""
    quad = apply(matrix, corners(*shape))
    x, y = quad[:, 0], quad[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def search_level(ref: Pyramid) -> int:
    """The coarsest reference level of at least COARSE_AREA px: where the global search runs."""
    return max(k for k, lv in enumerate(ref.levels) if k == 0 or lv.shape[0] * lv.shape[1] >= COARSE_AREA)


def _rank(ref: Pyramid, src: Pyramid, refined: list[tuple[np.ndarray, float]], is_fit: list[bool],
          k: int) -> list[Candidate]:
    """The best two distinct refined candidates, by overlap-weighted score; the frame fit's raised by FIT_PRIOR
    (the sources as given are the likeliest answer: another placement must beat them clearly)."""
    spacing = 2.0 * max(ref.full_shape) / max(ref.levels[k].shape)  # two pixels of the level
    scored = [Candidate(m, _weighted(ref, src, m, s) * (FIT_PRIOR if fit else 1.0)) for (m, s), fit in zip(refined, is_fit)]
    return distinct(sorted(scored, key=lambda c: -c.score), src.full_shape, spacing, keep=2)


def _coarse(ref: Pyramid, src: Pyramid, k0: int, model: str, wide: bool,
            features: bool) -> tuple[list[Candidate], np.ndarray]:
    """The search's candidates refined on level k0 and ranked; and the frame fit's refined matrix."""
    starts = candidates(ref, src, k0, wide, features, shift_only=model == "translation")
    refined = [_refine_at(ref, src, k0, m, model, COARSE_ITERATIONS) for m in starts]
    return _rank(ref, src, refined, [i == 0 for i in range(len(refined))], k0), refined[0][0]


def coarse_estimate(ref: Pyramid, src: Pyramid) -> tuple[np.ndarray, float, float]:
    """The search level's best similarity only (the cheap look of misalignment_hint): (matrix, score, fit's score)."""
    k0 = search_level(ref)
    ranked, _ = _coarse(ref, src, k0, "similarity", False, False)
    return ranked[0].matrix, score_at(ref, src, k0, ranked[0].matrix), \
        score_at(ref, src, k0, frame_fit(src.full_shape, ref.full_shape))


def estimate(ref: Pyramid, src: Pyramid, models: tuple[str, ...], wide: bool = False,
             features: bool = False, finer: bool = False) -> list[Estimate]:
    """The source's transform under each of `models` (in that order), refined coarse to fine.

    Every model after the first starts from the first model's result on the three finest levels.
    `wide` searches every rotation (a source upside down), not just ±10°; `features` adds a SIFT match;
    `finer` searches one level finer (a frame covering a fraction of the reference: see `search_passes`).
    """
    k0 = max(search_level(ref) - (1 if finer else 0), 0)
    coarse_model = "translation" if models[0] == "translation" else "similarity"
    ranked, fit = _coarse(ref, src, k0, coarse_model, wide, features)
    if len(ranked) > 1 and k0 > 0:  # the runner-up gets one more level to show which is right
        refined = [_refine_at(ref, src, k0 - 1, c.matrix, coarse_model, FINE_ITERATIONS) for c in ranked]
        ranked = _rank(ref, src, refined, [c.matrix is fit for c in ranked], k0)
        k0 -= 1
    # How close the best distinct other pose comes: near 1, the scene offers two answers.
    rival = ranked[1].score / ranked[0].score if len(ranked) > 1 and ranked[0].score > 0 else 0.0
    m = ranked[0].matrix
    best = 0.0
    for k in range(k0 - 1, -1, -1):
        m, best = _refine_at(ref, src, k, m, coarse_model, FINE_ITERATIONS)
    if k0 <= 0:
        best = score_at(ref, src, 0, m)
    start = score_at(ref, src, 0, frame_fit(src.full_shape, ref.full_shape))
    if coarse_model == "similarity":  # levels round each side on its own: undo their hair of shear
        m = project(m, "similarity", *src.full_shape)
    out = []
    for model in models:
        if model == coarse_model:
            out.append(Estimate(m, model, best, start, rival))
            continue
        mm, s = m, best
        for k in range(min(2, len(ref.levels) - 1), -1, -1):
            mm, s = _refine_at(ref, src, k, mm, model, FINE_ITERATIONS)
        out.append(Estimate(mm, model, s, start, rival))
    return out


def search_passes(ref: Pyramid, src: Pyramid) -> tuple[tuple[bool, bool], ...]:
    """(wide, finer) of the searches to try in turn until one is believed: ±10° on the coarse level; for a source
    smaller than the reference, ±10° one level finer (a narrow thermal view is ~40 px wide on the coarse level and
    lost there; on training pairs this pass placed 26 of 32 LLVIP narrow views, 11 before); then every rotation."""
    (sh, sw), (rh, rw) = src.full_shape, ref.full_shape
    smaller = sh * sw < rh * rw and search_level(ref) > 0
    return ((False, False), *(((False, True),) if smaller else ()), (True, False))


def agreement(ref: Pyramid, src: Pyramid, matrix: np.ndarray, side: int = CONSENSUS_SIDE) -> tuple[float, int]:
    """Tile consensus (tcmoa.align.consensus) of a full-resolution matrix, on the finest reference level at
    most `side` long where the source is not magnified more than 1.5× (its own pixels, not blur)."""
    zoom = decompose(matrix)[0] / src.levels[0].to_level[0, 0]  # reference px per finest source px
    k = 0
    while k + 1 < len(ref.levels) and min(ref.levels[k + 1].shape) >= 48 and (
            max(ref.levels[k].shape) > side or zoom * ref.levels[k].to_level[0, 0] > 1.5):
        k += 1
    rl, sl, m = _at_levels(ref, src, k, matrix)
    return consensus(rl, sl, m)
