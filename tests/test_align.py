"""tcmoa.align: every transform recovered, registered sources left as given, bad inputs answered in words.

Bundled images only (demo/examples, tests/data): no research data needed. The warps are known,
so every recovered transform is checked by its corner error against the truth.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tcmoa.align import ALIGN_MODES, align_sources, default_reference, misalignment_hint
from tcmoa.align.register import MIN_SCORE_OTHER_SIZE, POLICIES, Policy, decide
from tcmoa.align.structure import Pyramid
from tcmoa.align.transforms import apply, corner_error, corners, describe, implausibility, resample_matrix, similarity
from tcmoa.align.warp import common_area
from tcmoa.imaging import read_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "demo" / "examples"


def example(task: str, name: str) -> list[np.ndarray]:
    """A bundled example's sources, in order."""
    return [read_image(p) for p in sorted((EXAMPLES / task / name).glob("*.png"))]


@pytest.fixture(scope="module")
def exposures() -> list[np.ndarray]:
    return example("mef", "mefb_chinese_garden")


@pytest.fixture(scope="module")
def visible_infrared() -> list[np.ndarray]:
    return example("vif", "tno_18")


def warped(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.clip(cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_CUBIC), 0, 1).astype(np.float32)


def centred(image: np.ndarray, scale: float, angle: float, dx: float, dy: float) -> np.ndarray:
    h, w = image.shape[:2]
    return similarity(scale, angle, dx, dy, centre=((w - 1) / 2, (h - 1) / 2))


CASES = {  # mode -> the warp applied to the second exposure (image -> moved image)
    "translation": lambda im: centred(im, 1.0, 0.0, 9.0, -6.0),
    "similarity": lambda im: centred(im, 1.06, 4.0, -7.0, 5.0),
    "affine": lambda im: np.array([[1.04, 0.05, -6.0], [-0.03, 0.97, 8.0], [0, 0, 1]]),
    "homography": lambda im: np.array([[1.02, 0.03, -5.0], [-0.02, 1.0, 4.0], [4e-5, -3e-5, 1.0]]),
}


@pytest.mark.parametrize("mode", list(CASES))
def test_every_transform_is_recovered_on_a_known_warp(exposures, mode):
    over, under = exposures
    move = CASES[mode](under)
    result = align_sources([over, warped(under, move)], mode, reference=0, task="mef")
    src = result.sources[1]
    assert src.status == "aligned" and src.model == mode
    assert corner_error(src.matrix, np.linalg.inv(move), *under.shape[:2]) < 1.0
    assert result.coverage[1] is not None and result.coverage[1].min() < 0.5  # the uncovered rim is marked


def test_auto_finds_a_misaligned_exposure_and_says_how_it_moved(exposures):
    over, under = exposures
    move = centred(under, 1.0, 2.0, 12.0, 7.0)
    result = align_sources([over, warped(under, move)], "auto", reference=0, task="mef")
    src = result.sources[1]
    assert src.status == "aligned"
    assert corner_error(src.matrix, np.linalg.inv(move), *under.shape[:2]) < 1.5
    assert src.note.startswith("source 2: moved ") and "left" in src.note and "up" in src.note
    assert "rotated 2.0° anticlockwise" in src.note
    cover = result.coverage[1]
    assert cover is not None
    uncovered = cover == 0
    assert bool(np.any(uncovered))
    # uncovered pixels hold the reference's content, never black
    assert np.allclose(result.images[1][uncovered], over[uncovered], atol=1e-5)


def test_registered_sources_come_back_as_the_very_objects_given(exposures, visible_infrared):
    for task, sources in (("mef", exposures), ("vif", visible_infrared), ("mri-ct", example("mri-ct", "harvard_2010")),
                          ("mff", example("mff", "lytro_triple_02"))):
        result = align_sources(sources, "auto", task=task)
        for given, out, rec in zip(sources, result.images, result.sources):
            assert out is given, (task, rec.note)
            assert rec.status in ("reference", "unchanged"), (task, rec.note)
        assert result.coverage == [None] * len(sources) and result.crop is None


def test_off_costs_nothing_and_returns_the_inputs(visible_infrared):
    result = align_sources(visible_infrared, "off")
    assert all(a is b for a, b in zip(result.images, visible_infrared))
    assert result.sources[1].note == "source 2: not checked (alignment off)"


def thermal_view(visible_infrared: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visible, the infrared shrunk to a third and cropped, the crop's true matrix onto the visible)."""
    vi, ir = visible_infrared
    h, w = ir.shape[:2]
    small = cv2.resize(ir, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
    y0, x0 = 10, 14
    crop = np.ascontiguousarray(small[y0:y0 + 96, x0:x0 + 128])
    sx, sy = (w // 3) / w, (h // 3) / h
    truth = np.array([[1 / sx, 0, (x0 + 0.5) / sx - 0.5], [0, 1 / sy, (y0 + 0.5) / sy - 0.5], [0, 0, 1]])
    return vi, crop, truth


def test_a_thermal_frame_is_found_inside_a_larger_colour_frame(visible_infrared):
    vi, crop, truth = thermal_view(visible_infrared)
    result = align_sources([vi, crop], "auto", task="vif")
    src = result.sources[1]
    assert src.status == "aligned", src.note
    assert corner_error(src.matrix, truth, *crop.shape[:2]) < 6.0  # 3 reference px are one thermal pixel
    assert result.images[1].shape == vi.shape[:2] and "placed with its centre at" in src.note
    assert result.crop is not None and result.coverage[1] is not None
    top, left, ch, cw = result.crop
    assert result.coverage[1][top:top + ch, left:left + cw].min() >= 0.999
    cropped = align_sources([vi, crop], "auto", task="vif", crop_to_common=True)
    assert all(im.shape[:2] == (ch, cw) for im in cropped.images) and cropped.coverage == [None, None]


def test_a_source_of_another_size_must_also_correlate_to_be_placed(visible_infrared):
    # Few tiles vote on a frame covering part of the reference, so such a placement must also reach the policy's
    # score floor (on training warps wrong ones scored 0.18-0.24, right ones at least 0.28); same-size sources
    # are judged by their many tiles alone.
    vi, crop, _ = thermal_view(visible_infrared)
    ref_pyr, src_pyr = Pyramid.of(vi), Pyramid.of(crop)
    placed = decide(ref_pyr, src_pyr, "auto", POLICIES["vif"])
    assert placed.status == "aligned" and placed.estimate is not None
    assert placed.estimate.score >= MIN_SCORE_OTHER_SIZE
    strict = replace(POLICIES["vif"], min_score_other_size=placed.estimate.score + 0.01)
    refused = decide(ref_pyr, src_pyr, "auto", strict)
    assert refused.status == "failed" and "the edges barely agree" in str(refused.why)
    moved = warped(visible_infrared[1], centred(visible_infrared[1], 1.0, 2.0, 12.0, -8.0))
    same_size = decide(ref_pyr, Pyramid.of(moved), "auto", strict)
    assert same_size.status == "aligned", same_size.why


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_a_smaller_copy_is_placed_to_a_fraction_of_its_own_pixel(exposures, factor):
    # A source several times smaller than a large reference (estimated on a copy shrunk to 384 px) is refined on
    # its own finest level, not on a coarser one blown up (that cost 2-7.5 px here, and one 1/2-size copy was lost).
    over = cv2.resize(exposures[0], None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)  # 1280×850
    h, w = over.shape[:2]
    size = (round(w / factor), round(h / factor))
    small = cv2.resize(over, size, interpolation=cv2.INTER_AREA)
    y0, x0 = 7, 11
    crop = np.ascontiguousarray(small[y0:y0 + size[1] * 4 // 5, x0:x0 + size[0] * 4 // 5])
    sx, sy = size[0] / w, size[1] / h
    truth = np.array([[1 / sx, 0, (x0 + 0.5) / sx - 0.5], [0, 1 / sy, (y0 + 0.5) / sy - 0.5], [0, 0, 1]])
    src = align_sources([over, crop], "similarity", reference=0, task="mef").sources[1]
    assert src.status == "aligned", src.note
    assert corner_error(src.matrix, truth, *crop.shape[:2]) < 0.25 * factor  # a quarter of one of its pixels


def test_a_wide_frame_is_placed_on_a_third_of_it_chosen_as_the_reference(visible_infrared):
    # A narrow camera's frame chosen as the reference beside a wide one at the same pixel scale: the wide
    # source's true zoom is 3× the fitted one, beyond the search before (it failed as "scale 0.47×").
    big = cv2.resize(visible_infrared[0], None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC).clip(0, 1)  # 1280×930
    y0, x0 = 300, 400
    crop = np.ascontiguousarray(big[y0:y0 + 310, x0:x0 + 426])
    src = align_sources([crop, big], "auto", reference=0, task="vif").sources[1]
    assert src.status == "aligned", src.note
    assert corner_error(src.matrix, np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]), *big.shape[:2]) < 1.0


def test_a_narrow_view_shrunk_beside_a_wide_frame_is_found(exposures):
    # A narrow camera's view (45 % of the wide frame's side) at 2.5× fewer pixels: about 40 px wide on the
    # coarse search level, where it was never found; a second search one level finer places it.
    big = cv2.resize(exposures[0], None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC).clip(0, 1)  # 1280×850
    h, w = big.shape[:2]
    ch, cw = int(h * 0.45), int(w * 0.45)
    y0, x0 = int(0.1 * (h - ch)), int(0.5 * (w - cw))
    size = (round(cw / 2.5), round(ch / 2.5))
    narrow = cv2.resize(big[y0:y0 + ch, x0:x0 + cw], size, interpolation=cv2.INTER_AREA)
    truth = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]]) @ np.linalg.inv(resample_matrix(size[0] / cw, size[1] / ch))
    src = align_sources([big, narrow], "auto", reference=0, task="vif").sources[1]
    assert src.status == "aligned", src.note
    assert corner_error(src.matrix, truth, *narrow.shape[:2]) < 2.5  # one of its pixels


def test_a_source_turned_upside_down_is_turned_back(exposures):
    over, under = exposures
    result = align_sources([over, np.ascontiguousarray(under[::-1, ::-1])], "auto", reference=0, task="mef")
    src = result.sources[1]
    assert src.status == "aligned" and "rotated 180.0°" in src.note
    h, w = under.shape[:2]
    turn = np.array([[-1, 0, w - 1], [0, -1, h - 1], [0, 0, 1.0]])
    assert corner_error(src.matrix, turn, h, w) < 1.5


def test_blank_tiny_and_unrelated_sources_are_left_as_given_with_a_reason(visible_infrared, exposures):
    vi, ir = visible_infrared
    blank = np.full_like(ir, 0.4)
    result = align_sources([vi, blank], "auto")
    assert result.sources[1].status == "failed" and "blank" in result.sources[1].note
    assert result.images[1] is blank
    tiny = align_sources([vi[:12, :12], ir[:12, :12]], "auto")
    assert tiny.sources[1].status == "failed" and "too small to align" in tiny.sources[1].note
    other = exposures[0][: vi.shape[0], : vi.shape[1]]  # another scene altogether: nothing overlaps
    unrelated = align_sources([vi, np.ascontiguousarray(other)], "similarity")
    assert unrelated.sources[1].status == "failed", unrelated.sources[1].note
    assert "left as given" in unrelated.sources[1].note and "show the same scene" in unrelated.sources[1].note
    assert "align=" not in unrelated.sources[1].note  # the transform it was given would fail the same way


def test_a_same_size_placement_needs_a_few_agreeing_tiles_not_just_a_share(exposures, monkeypatch):
    # One tile of three, or two of five, agree by chance: MEFB's House and Lake1 large warps were placed 290-350 px
    # wrong that way. The tile count comes from tcmoa.align.consensus; here it is set to show the rule alone.
    from tcmoa.align import register

    over, under = exposures
    moved = warped(under, centred(under, 1.05, 3.0, -6.0, 4.0))
    ref_pyr, src_pyr = Pyramid.of(over), Pyramid.of(moved)
    for tiles, status in ((4, "failed"), (8, "aligned")):  # half of them agree: 2 tiles, then 4
        monkeypatch.setattr(register, "agreement", lambda *args, n=tiles, **kw: (0.5, n))
        decision = decide(ref_pyr, src_pyr, "similarity", POLICIES["mef"])
        assert decision.status == status, decision.why
    monkeypatch.setattr(register, "agreement", lambda *args, **kw: (0.5, 4))
    assert "too few parts of the image agree with the best placement (2 tiles)" in str(
        decide(ref_pyr, src_pyr, "similarity", POLICIES["mef"]).why)


def test_a_refused_homography_is_offered_the_similarity_only_when_it_bent_too_far(exposures, monkeypatch):
    # auto takes the homography only where its tiles and score are at least the similarity's, so a refusal for too
    # little agreement would refuse the similarity too; only a fold or mirror is the homography's alone.
    from tcmoa.align import register

    over, under = exposures
    moved = warped(under, centred(under, 1.05, 3.0, -6.0, 4.0))
    ref_pyr, src_pyr = Pyramid.of(over), Pyramid.of(moved)
    bent = register.estimate(ref_pyr, src_pyr, ("homography",))[0]
    monkeypatch.setattr(register, "_choose", lambda *args: (bent, 0.1, 3))  # a homography few tiles agree with
    weak = decide(ref_pyr, src_pyr, "auto", POLICIES["mef"])
    assert weak.status == "failed" and "confidence 0.10" in str(weak.why) and "align=" not in str(weak.why)
    monkeypatch.setattr(register, "implausibility", lambda *args: "it would fold the image")
    folded = decide(ref_pyr, src_pyr, "auto", POLICIES["mef"])
    assert "it would fold the image; " in str(folded.why) and "choose align=similarity" in str(folded.why)


def test_auto_offers_a_transform_for_pet_only_where_that_would_apply_its_estimate(exposures):
    # auto never warps MRI + PET; it offers align=similarity only when that would apply the estimate it shows.
    pet = align_sources(example("mri-pet", "harvard_30057"), "auto", task="mri-pet").sources[1]
    assert pet.status == "failed" and "was not applied" in pet.note
    assert "align=similarity would not apply it either: too little of the image agrees" in pet.note
    over, under = exposures
    moved = warped(under, centred(under, 1.05, 3.0, -6.0, 4.0))
    ref_pyr, src_pyr = Pyramid.of(over), Pyramid.of(moved)
    cautious = Policy(models=("similarity",), automatic=False)
    offered = decide(ref_pyr, src_pyr, "auto", cautious)
    assert offered.status == "failed" and "choose align=similarity to apply it" in str(offered.why)
    assert decide(ref_pyr, src_pyr, "similarity", cautious).status == "aligned"


def test_a_source_of_another_shape_left_as_given_records_the_stretch_it_gets(visible_infrared):
    # A source left as given but of another size is resized onto the reference (aspect and all): the recorded
    # matrix must say where its corners went, not a centred uniform zoom (that was up to 107 px off).
    vi = cv2.resize(visible_infrared[0], (1600, 900), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    blank = np.full((480, 640), 0.4, np.float32)
    result = align_sources([vi, blank], "auto")
    src = result.sources[1]
    assert src.status == "failed" and "resized from 640×480 to 1600×900" in src.note
    assert result.images[1].shape == (900, 1600)
    assert np.abs(apply(src.matrix, corners(480, 640)) - corners(900, 1600)).max() < 1e-9


@pytest.mark.parametrize("shape", [(1062, 1600), (999, 1333), (1160, 730)])
def test_the_common_area_of_a_nearly_whole_cover_is_nearly_whole(shape):
    # A fully covered small pixel averages to 0.99999988 in float32 at some sizes; it must still count as
    # covered (the crop was empty or a sliver at these sizes).
    h, w = shape
    cover = np.ones(shape, np.float32)
    cover[:, :20] = 0  # a 20 px strip on the left is not covered
    box = common_area([cover], shape)
    assert box is not None
    top, left, bh, bw = box
    assert left >= 20 and cover[top:top + bh, left:left + bw].min() == 1
    assert bh >= 0.97 * h and bw >= 0.97 * (w - 20)


def test_eight_sources_one_of_them_blank(exposures):
    over, under = exposures
    moves = [centred(under, 1.0, a, dx, dy) for a, dx, dy in
             [(0, 0, 0), (1, 6, 0), (-1, 0, 5), (2, -5, 3), (0, 8, 8), (-2, -4, -6), (0, 0, 0)]]
    sources = [over] + [warped(under, m) for m in moves]
    sources[4] = np.full_like(under, 0.5)
    result = align_sources(sources, "auto", reference=0, task="mef")
    assert [r.status for r in result.sources][4] == "failed"
    for k, m in enumerate(moves, start=1):
        if k == 4:
            continue
        rec = result.sources[k]
        assert rec.status in ("aligned", "unchanged"), rec.note
        applied = rec.matrix if rec.status == "aligned" else np.eye(3)
        assert corner_error(applied, np.linalg.inv(m), *under.shape[:2]) < 2.0, rec.note


def test_bad_modes_and_references_are_one_line_errors(visible_infrared):
    with pytest.raises(ValueError, match="unknown align mode 'sideways'; choose one of off, auto, translation"):
        align_sources(visible_infrared, "sideways")
    with pytest.raises(ValueError, match="reference must be a source index from 0 to 1, got 2"):
        align_sources(visible_infrared, "auto", reference=2)
    with pytest.raises(ValueError, match="at least 2 sources"):
        align_sources(visible_infrared[:1])
    assert ALIGN_MODES == ("off", "auto", "translation", "similarity", "affine", "homography")


def test_a_folding_or_mirroring_homography_is_refused():
    shape = (100, 120)
    fold = np.array([[1, 0, 0], [0, 1, 0], [-1 / 60, 0, 1.0]])  # its horizon, x = 60, crosses the image
    assert "fold" in str(implausibility(fold, shape, shape))
    mirror = np.array([[-1, 0, 119], [0, 1, 0], [0, 0, 1.0]])
    assert "mirror" in str(implausibility(mirror, shape, shape))
    assert "overlap" in str(implausibility(np.array([[1, 0, 500], [0, 1, 0], [0, 0, 1.0]]), shape, shape))
    assert implausibility(np.eye(3), shape, shape) is None


def test_words_and_the_json_report(exposures):
    m = similarity(0.98, 1.0, 14.2, 3.1, centre=(49.5, 39.5))
    assert describe(m, (80, 100), (80, 100)) == "moved 14.2 px right and 3.1 px down, rotated 1.0° clockwise, scaled 0.98×"
    over, under = exposures
    result = align_sources([over, warped(under, centred(under, 1, 0, 6, 6))], "auto", reference=0, task="mef")
    report = json.loads(json.dumps(result.to_json()))
    assert report["reference"] == 0 and len(report["sources"]) == 2
    for rec in report["sources"]:
        assert set(rec) == {"index", "status", "model", "matrix", "confidence", "note"}
        assert len(rec["matrix"]) == 3 and all(len(row) == 3 for row in rec["matrix"])
        assert 0.0 <= rec["confidence"] <= 1.0
    assert report["sources"][0]["status"] == "reference" and report["sources"][1]["status"] == "aligned"
    assert report["notes"] == [result.sources[1].note]


def test_default_reference_and_the_misalignment_hint(exposures, visible_infrared):
    over, under = exposures
    assert default_reference([under, over], "mef") in (0, 1)
    bracket = [np.clip(under * f, 0, 1) for f in (0.5, 1.0, 3.0)]
    assert default_reference(bracket, "mef") == 1  # the middle exposure
    blurred = cv2.GaussianBlur(over, (0, 0), 3)
    assert default_reference([blurred, over], "mff") == 1  # the sharpest
    assert default_reference(visible_infrared, "vif") == 0
    assert misalignment_hint(visible_infrared, "vif") is None
    shifted = warped(under, centred(under, 1, 0, 25, 0))
    hint = misalignment_hint([over, shifted], "mef")
    assert hint is not None and hint.startswith("the sources look misaligned by about") and "align=auto" in hint
    assert "differ in size" in str(misalignment_hint([over, under[:100, :100]], "mef"))


def test_the_ecc_polish_sharpens_a_same_modality_estimate_and_never_runs_for_vif(exposures, visible_infrared,
                                                                                monkeypatch):
    from tcmoa.align import register
    from tcmoa.align.polish import polish

    over, under = exposures
    move = centred(under, 1.04, 3.0, -8.0, 6.0)
    moved = warped(under, move)
    truth = np.linalg.inv(move)
    off = centred(over, 1.002, 0.15, 0.9, -0.7) @ truth  # an estimate about a pixel off
    assert corner_error(off, truth, *under.shape[:2]) > 0.8
    polished = polish(over, moved, off, "similarity")
    assert corner_error(polished, truth, *under.shape[:2]) < 0.3
    far = centred(over, 1.0, 0.0, 12.0, 0.0) @ truth  # another placement: the polish keeps the estimate as given
    assert polish(over, moved, far, "similarity") is far

    calls: list[str] = []

    def recorded(*args: object) -> object:  # the estimate as given, and a record of the call
        calls.append("polished")
        return args[2]

    monkeypatch.setattr(register, "polish", recorded)
    vi, ir = visible_infrared
    shift = centred(ir, 1.0, 2.0, 10.0, -6.0)
    assert align_sources([vi, warped(ir, shift)], "auto", reference=0, task="vif").sources[1].status == "aligned"
    assert calls == []
    assert align_sources([over, moved], "auto", reference=0, task="mef").sources[1].status == "aligned"
    assert calls == ["polished"]
