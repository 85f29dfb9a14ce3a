"""align_sources: every source into the reference frame, each with a status, a confidence and words.

Per source, after the estimate (tcmoa.align.estimate) the decision is, in order:

1. **failed** (left as given) when the images cannot say: a blank source, one too small, an
   estimate that is implausible (a fold, a mirror, no overlap; tcmoa.align.transforms), a
   placement too few tiles agree with (confidence below MIN_CONFIDENCE, or for a same-size source
   fewer than MIN_AGREEING_TILES agreeing; tcmoa.align.consensus) or, for a source of another size,
   whose edges correlate too little (the policy's min_score_other_size), each even with every
   rotation searched; or (auto only) a modality pair whose automatic alignment proved unreliable
   on the training data (MRI + PET/SPECT: see POLICIES).
2. **unchanged** (auto only): the tiles agree as given (consensus at least REGISTERED_CONSENSUS,
   checked first, before any estimate), or the estimate moved the corners at most MIN_SHIFT_PX,
   or at most the preset's tolerance while the edge agreement rose less than its min_gain. The
   rule and its constants were chosen on the training pairs (benchmarks/registration.py
   --calibrate), never on the evaluation sets.
3. **aligned**: warped into the reference frame, with a note of what moved (exposures after a
   sub-pixel polish by ECC, tcmoa.align.polish, kept only when it stays close).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..imaging import resize_to
from ..tasks import Preset, get_preset
from .estimate import Estimate, agreement, estimate, frame_fit, search_passes
from .polish import polish
from .reference import default_reference
from .result import ALIGN_MODES, Alignment, SourceAlignment
from .structure import Pyramid, is_flat
from .transforms import apply, corners, decompose, describe, implausibility, resample_matrix
from .warp import common_area, warp_into

MIN_SIDE = 24  # px: below it a pyramid has no coarse level to search on
# Corners moved less than this: registered (RoadScene/TNO carry ~1 px of their own). In px, not a share of the
# size: 1 % would leave a 40 px shake of a 12 MP bracket as given (and on RoadScene's training pairs as given
# the estimate moved up to 1.7 % while one medium warp moved only 1 %: no share separates them).
MIN_SHIFT_PX = 2.0
MIN_CONFIDENCE = 0.3  # tile consensus below which no placement is believed
# ... and a share of very few structured tiles is no evidence (one tile in three agrees by chance): a same-size
# source needs this many agreeing tiles (every right same-size placement of the training warps had at least 4;
# one of a different size is held to MIN_SCORE_OTHER_SIZE instead, its right placements had as few as 2).
MIN_AGREEING_TILES = 3
REGISTERED_CONSENSUS = 0.35  # tile consensus as given (finest level) from which a source counts as registered
# auto takes the homography when it raises the edge agreement by HOMOGRAPHY_GAIN and its tiles agree at least as
# well: on training warps a true similarity (medium) let the homography gain at most 0.07 while bending it by
# several px (LLVIP: 16 of 20 medium warps took it at a 0.02 gain, 11-17 px off); warps with perspective gained 0.07-0.8.
HOMOGRAPHY_GAIN = 0.10
HOMOGRAPHY_CONSENSUS = 0.0


@dataclass(frozen=True)
class Policy:
    """How `auto` treats one kind of fusion (chosen on training pairs)."""

    models: tuple[str, ...] = ("similarity", "homography")  # auto fits these; a later one must fit clearly better
    tolerance: float = 0.05  # of the longest side: a shift up to this may still be "registered" ...
    min_gain: float = 0.3  # ... when the edge agreement rises less than this (relative)
    features: bool = False  # same modality: SIFT matches as extra starting points
    polish: bool = False  # same modality: an aligned source's transform polished by ECC (tcmoa.align.polish)
    automatic: bool = True  # False: auto never warps (the measure is not reliable for this pair)
    # A source of another size than the reference is searched over many zooms and covers only part of it, so
    # few tiles vote: its placement must also correlate at least this well (finest level) to be believed.
    min_score_other_size: float = 0.0


# VIF sources of another size (training: llvip32, roadscene171; narrow views and thermal-at-a-third): right
# placements scored at least 0.28, wrong ones (>= 20 px off, confidence >= 0.3) 0.18-0.24.
MIN_SCORE_OTHER_SIZE = 0.24
# The ECC polish on training warps (27 FusionDN exposure pairs, 27 synthetic focal pairs): exposures 0.63 -> 0.55 px
# mean corner error, focal pairs 0.156 -> 0.153 px (no gain, and on MFFW's breathing planes it fits the breathing):
# on for exposures only.
# MRI + PET/SPECT: on the training slices the estimate of a registered pair wandered tens of pixels
# (a PET zoomed onto the skull) and no score told right from wrong, so auto never warps them.
POLICIES = {
    "vif": Policy(min_score_other_size=MIN_SCORE_OTHER_SIZE),
    "mef": Policy(features=True, polish=True),
    "mff": Policy(features=True),
    "mri-ct": Policy(models=("similarity",), tolerance=0.08, min_gain=0.75),
    "mri-pet": Policy(models=("similarity",), automatic=False),
    "mri-spect": Policy(models=("similarity",), automatic=False),
}
SUGGESTION = "check that the sources show the same scene and overlap"
# Only an implausible homography (auto) can be refused where the similarity would not be: its tiles and score are
# at least the similarity's, so a refusal for too little agreement would refuse the similarity too.
SIMILARITY_SUGGESTION = "check that the sources show the same scene, or choose align=similarity and check the overlay"


def _check_mode(mode: str) -> str:
    key = str(mode).strip().lower()
    if key not in ALIGN_MODES:
        raise ValueError(f"unknown align mode {mode!r}; choose one of {', '.join(ALIGN_MODES)}")
    return key


def _check_reference(reference: int, count: int) -> int:
    if isinstance(reference, bool) or not isinstance(reference, (int, np.integer)) or not 0 <= reference < count:
        raise ValueError(f"reference must be a source index from 0 to {count - 1}, got {reference!r}")
    return int(reference)


def _shift(matrix: np.ndarray, source_shape: tuple[int, int], ref_shape: tuple[int, int]) -> float:
    """How far (reference px) the source's corners land from where the plain frame fit puts them."""
    box = corners(*source_shape)
    return float(np.linalg.norm(apply(matrix, box) - apply(frame_fit(source_shape, ref_shape), box), axis=1).max())


def _as_given(index: int, image: np.ndarray, ref: np.ndarray, status: str, confidence: float,
              note: str) -> tuple[SourceAlignment, np.ndarray]:
    """A source left as given (resized to the reference's size if it differs, said in the note)."""
    h, w = ref.shape[:2]
    record = SourceAlignment(index, status, "identity", np.eye(3), float(np.clip(confidence, 0, 1)), note)
    if image.shape[:2] == (h, w):
        return record, image
    note = f"{note}; resized from {image.shape[1]}×{image.shape[0]} to {w}×{h}"
    stretch = resample_matrix(w / image.shape[1], h / image.shape[0])  # what resize_to does, aspect and all
    record = SourceAlignment(index, status, "identity", stretch, record.confidence, note)
    return record, resize_to(image, (h, w))


@dataclass
class Decision:
    """What happens to one source, and the numbers it was decided on."""

    status: str  # "unchanged", "aligned" or "failed"
    estimate: Estimate | None  # the chosen model's estimate (None: registered as given, nothing estimated)
    consensus: float  # tile consensus of the estimate (the confidence)
    shift: float  # px the simplest model's estimate moves the corners from the frame fit
    gain: float  # relative rise of the edge agreement from the frame fit to that estimate
    why: str | None = None  # for "failed"


def _choose(ref_pyr: Pyramid, src_pyr: Pyramid, found: list[Estimate]) -> tuple[Estimate, float, int]:
    """The first model's estimate, or a later one whose edges and tiles agree clearly better; with its consensus
    and the number of tiles that agree."""
    best, (best_agree, tiles) = found[0], agreement(ref_pyr, src_pyr, found[0].matrix)
    for e in found[1:]:
        if e.score > best.score * (1 + HOMOGRAPHY_GAIN):
            agree, count = agreement(ref_pyr, src_pyr, e.matrix)
            if agree >= best_agree + HOMOGRAPHY_CONSENSUS:
                best, best_agree, tiles = e, agree, count
    return best, best_agree, round(best_agree * tiles)


def decide(ref_pyr: Pyramid, src_pyr: Pyramid, mode: str, policy: Policy) -> Decision:
    """Estimate one source and decide (see the module docstring); searches every rotation before failing."""
    auto = mode == "auto"
    ref_shape, src_shape = ref_pyr.full_shape, src_pyr.full_shape
    same_size = src_shape == ref_shape
    if auto and same_size:  # the tiles agree where they are: registered, nothing to estimate
        as_given = agreement(ref_pyr, src_pyr, np.eye(3), side=max(ref_pyr.levels[0].shape))[0]
        if as_given >= REGISTERED_CONSENSUS:
            return Decision("unchanged", None, as_given, 0.0, 0.0)
    base = decompose(frame_fit(src_shape, ref_shape))[0]
    best: Decision | None = None
    for wide, finer in search_passes(ref_pyr, src_pyr):
        estimates = estimate(ref_pyr, src_pyr, policy.models if auto else (mode,), wide=wide, features=policy.features,
                             finer=finer)
        simplest = estimates[0]
        shift = _shift(simplest.matrix, src_shape, ref_shape)
        gain = simplest.score / max(simplest.start_score, 1e-6) - 1
        registered = shift <= MIN_SHIFT_PX or (shift <= policy.tolerance * max(ref_shape) and gain <= policy.min_gain)
        if auto and same_size and registered and not wide:
            return Decision("unchanged", simplest, agreement(ref_pyr, src_pyr, np.eye(3))[0], shift, gain)
        found, agree, agreeing = _choose(ref_pyr, src_pyr, estimates)
        why = implausibility(found.matrix, src_shape, ref_shape, base)
        if why is not None and auto and found.model != "similarity":  # a bend the similarity cannot make: worth a try
            why = f"{why}; {SIMILARITY_SUGGESTION}"
        if why is None and agree < MIN_CONFIDENCE:
            why = f"too little of the image agrees with any placement (confidence {agree:.2f})"
        if why is None and same_size and agreeing < MIN_AGREEING_TILES:
            why = f"too few parts of the image agree with the best placement ({agreeing} tiles)"
        if why is None and not same_size and found.score < policy.min_score_other_size:
            why = f"the edges barely agree at the best placement (score {found.score:.2f})"
        if auto and not policy.automatic:  # no search of every rotation either: nothing would be applied
            # align=similarity runs this very estimate first: offer it only when that would apply it.
            offer = "choose align=similarity to apply it and check the overlay" if why is None else \
                f"align=similarity would not apply it either: {why}"
            why = ("automatic alignment is not reliable for this pair of modalities (they share too little structure); "
                   f"the best estimate ({describe(found.matrix, src_shape, ref_shape)}) was not applied; {offer}")
            return Decision("failed", found, agree, shift, gain, why)
        decision = Decision("failed" if why else "aligned", found, agree, shift, gain, why)
        if best is None or (why is None and (best.why is not None or agree > best.consensus)):
            best = decision
        if why is None:
            break
    assert best is not None
    return best


def _align_one(index: int, src: np.ndarray, ref: np.ndarray, ref_pyr: Pyramid | None, mode: str,
               policy: Policy) -> tuple[SourceAlignment, np.ndarray, np.ndarray | None]:
    """One source's record, image in the reference frame, and coverage."""
    label = f"source {index + 1}"
    fail = f"{label}: left as given: "
    if min(src.shape[:2]) < MIN_SIDE or ref_pyr is None:
        small = src if min(src.shape[:2]) < MIN_SIDE else ref
        tiny = f"{small.shape[1]}×{small.shape[0]} is too small to align (at least {MIN_SIDE} px a side)"
        return (*_as_given(index, src, ref, "failed", 0.0, fail + tiny), None)
    if is_flat(src):
        return (*_as_given(index, src, ref, "failed", 0.0, fail + "it is blank (one flat tone): nothing to align by"),
                None)
    d = decide(ref_pyr, Pyramid.of(src), mode, policy)
    if d.status == "unchanged":
        return (*_as_given(index, src, ref, "unchanged", d.consensus,
                           f"{label}: already aligned with the reference (left as given)"), None)
    if d.status == "failed":
        suggestion = "" if "align=similarity" in str(d.why) else f"; {SUGGESTION}"
        return (*_as_given(index, src, ref, "failed", d.consensus, f"{fail}{d.why}{suggestion}"), None)
    found = d.estimate
    assert found is not None
    matrix = polish(ref, src, found.matrix, found.model) if policy.polish else found.matrix
    image, cover = warp_into(src, matrix, ref)
    note = f"{label}: {describe(matrix, src.shape[:2], ref.shape[:2])} ({found.model}, confidence {d.consensus:.2f})"
    return SourceAlignment(index, "aligned", found.model, matrix, d.consensus, note), image, cover


def align_sources(images: Sequence[np.ndarray], mode: str = "auto", reference: int | None = None,
                  task: str | Preset = "vif", crop_to_common: bool = False) -> Alignment:
    """Every source in one reference frame: see the package docstring (tcmoa.align) for what each field says."""
    mode = _check_mode(mode)
    preset = task if isinstance(task, Preset) else get_preset(task)
    images = list(images)
    if len(images) < 2:
        raise ValueError(f"alignment needs at least 2 sources, got {len(images)}")
    ref_index = default_reference(images, preset) if reference is None else _check_reference(reference, len(images))
    ref = images[ref_index]
    ref_record = SourceAlignment(ref_index, "reference", "identity", np.eye(3), 1.0,
                                 f"source {ref_index + 1} is the reference frame")
    if mode == "off":
        records = [ref_record if i == ref_index else SourceAlignment(
            i, "unchanged", "identity", np.eye(3), 0.0, f"source {i + 1}: not checked (alignment off)")
            for i in range(len(images))]
        return Alignment(ref_index, images, [None for _ in images], records, None, [])
    policy = POLICIES.get(preset.key, POLICIES["vif"])
    usable = min(ref.shape[:2]) >= MIN_SIDE and not is_flat(ref)
    ref_pyr = Pyramid.of(ref) if usable else None
    out_images, records = list(images), [ref_record]
    coverage: list[np.ndarray | None] = [None] * len(images)
    for i, src in enumerate(images):
        if i == ref_index:
            continue
        if ref_pyr is None and min(ref.shape[:2]) >= MIN_SIDE:
            why = f"source {i + 1}: left as given: the reference (source {ref_index + 1}) is blank; choose another"
            record, out_images[i] = _as_given(i, src, ref, "failed", 0.0, why)
        else:
            record, out_images[i], coverage[i] = _align_one(i, src, ref, ref_pyr, mode, policy)
        records.append(record)
    records.sort(key=lambda r: r.index)
    crop = common_area(coverage, ref.shape[:2])
    if crop_to_common and crop is not None:
        t, left, h, w = crop
        out_images = [np.ascontiguousarray(im[t:t + h, left:left + w]) for im in out_images]
        coverage = [None for _ in images]
    notes = [r.note for r in records if r.status != "reference"]
    if crop_to_common and crop is not None:
        notes.append(f"cropped to the area every source covers: {crop[3]}×{crop[2]} from ({crop[1]}, {crop[0]})")
    return Alignment(ref_index, out_images, coverage, records, crop, notes)
