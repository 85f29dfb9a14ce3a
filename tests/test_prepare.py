"""Sources put into one frame before fusion (tcmoa/fuse/prepare.py): alignment, the hint when it is off,
the fading in of a warped source, de-ghosting, and what the result carries."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tcmoa.align import default_reference
from tcmoa.fuse.pipeline import Fuser
from tcmoa.fuse.prepare import feathered, prepare_sources
from tcmoa.imaging import image_files, read_image
from tcmoa.model.checkpoint import load_model
from tcmoa.tasks import get_preset

from .conftest import REPO

EXAMPLES = REPO / "demo" / "examples"


def sources(folder: str) -> list[np.ndarray]:
    return [read_image(p) for p in sorted(image_files(EXAMPLES / folder).values())]


@pytest.fixture(scope="module")
def fuser(single_thread) -> Fuser:
    return Fuser(load_model(None), device="cpu")


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return np.asarray(cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT))


def test_registered_sources_are_fused_as_given(fuser):
    pair = sources("mef/mefb_cave")
    plain = fuser.fuse(pair, "mef", align="off")
    aligned = fuser.fuse(pair, "mef", align="auto")
    assert aligned.alignment is not None and [s.status for s in aligned.alignment.sources].count("aligned") == 0
    for given, kept in zip(plain.sources, aligned.sources):
        np.testing.assert_array_equal(kept, given)
    np.testing.assert_array_equal(aligned.image, plain.image)


def test_alignment_off_says_when_the_sources_look_misaligned(fuser):
    over, under = sources("mef/mefb_cave")
    moved = shifted(under, 30, -12)
    result = fuser.fuse([over, moved], "mef", check_alignment=True)
    assert result.alignment is None
    assert any(n.startswith("alignment off, but the sources look misaligned by about") and "align=auto" in n
               for n in result.notes), result.notes
    assert not any("misaligned" in n for n in fuser.fuse([over, under], "mef", check_alignment=True).notes)
    assert not any("misaligned" in n for n in fuser.fuse([over, moved], "mef").notes)  # off costs nothing


def test_an_unaligned_pair_is_aligned_into_the_references_frame(fuser):
    visible, thermal = sources("unaligned/tno_18_thermal_camera")
    assert visible.shape[:2] != thermal.shape[:2]
    result = fuser.fuse([visible, thermal], "vif", align="auto")
    assert result.image.shape[:2] == visible.shape[:2]
    assert result.alignment is not None and result.alignment.sources[1].status == "aligned"
    assert result.sources[1].shape[:2] == visible.shape[:2] and result.sources[0] is not None
    assert any("source 2: placed with its centre at" in n for n in result.notes)
    report = result.alignment.to_json()
    assert report["reference"] == 0 and report["sources"][1]["model"] in ("similarity", "homography")
    assert len(report["sources"][1]["matrix"]) == 3 and 0 < report["sources"][1]["confidence"] <= 1
    with pytest.raises(ValueError, match="reference 2 is not a source index: there are 2 sources"):
        fuser.fuse([visible, thermal], "vif", align="auto", reference=2)
    with pytest.raises(ValueError, match="align must be one of off, auto, translation"):
        fuser.fuse([visible, thermal], "vif", align="sideways")


def test_a_warped_source_fades_in_without_a_step():
    coverage = np.zeros((400, 500), np.float32)
    coverage[40:, 80:] = 1.0
    trust = feathered(coverage)
    assert trust[:40].max() == 0 and trust[:, :80].max() == 0  # nothing of its own outside
    assert trust[300, 400] == 1.0  # far inside: all of it
    ramp = trust[300, 80:120]
    assert np.all(np.diff(ramp) >= 0) and np.abs(np.diff(ramp)).max() < 0.15  # rises smoothly from the edge
    assert ramp[-1] == 1.0
    full = np.ones_like(coverage)
    assert feathered(full) is full


def test_moving_content_in_an_exposure_stack_is_taken_from_the_reference():
    pair = sources("mef/mefb_cave")
    reference = default_reference(pair, "mef")
    other = 1 - reference
    grey = pair[reference].mean(axis=2)
    h, w = grey.shape
    # an object (bright stripes) pasted into the other exposure where the reference sees mid-tones
    top, left = max(((y, x) for y in range(0, h - 64, 16) for x in range(0, w - 64, 16)),
                    key=lambda p: -abs(float(grey[p[0]:p[0] + 64, p[1]:p[1] + 64].mean()) - 0.45))
    box = (slice(top + 2, top + 62), slice(left + 2, left + 62))
    moved = [im.copy() for im in pair]
    moved[other][box] = (np.indices((60, 60)).sum(axis=0)[..., None] // 6 % 2) * 0.8 + 0.1
    prepared = prepare_sources(moved, get_preset("mef"), "auto", reference=reference)
    assert prepared.motion is not None and float(prepared.motion[other][box].mean()) > 0.8
    assert float(prepared.motion[other].mean()) < 0.1 and float(prepared.motion[reference].max()) == 0.0
    trust = prepared.trust[other]
    assert trust is not None and float(trust[box].mean()) < 0.2
    assert any(n.startswith(f"source {other + 1}: moving content") for n in prepared.notes)
    static = prepare_sources(pair, get_preset("mef"), "auto")
    assert static.trust == [None, None] and not any("moving" in n for n in static.notes)
    off = prepare_sources(moved, get_preset("mef"))  # de-ghosting comes after alignment: nothing with "off"
    assert off.motion is None and off.images[other] is moved[other]


def test_a_preparation_is_reused_only_for_its_settings(fuser):
    pair = sources("vif/tno_18")
    settings = fuser.settings("vif", align="auto")
    prepared = fuser.prepare(pair, settings)
    again = fuser.fuse(pair, fuser.settings("vif", align="auto", alpha=2.0), prepared=prepared)
    assert again.alignment is prepared.alignment
    with pytest.raises(ValueError, match="prepared= was made for other"):
        fuser.fuse(pair, fuser.settings("vif", align="off"), prepared=prepared)


def test_resizing_to_another_aspect_ratio_says_it_stretches(fuser):
    a = np.full((96, 128), 0.5, np.float32)  # 4:3
    same_shape = fuser.fuse([a, np.full((48, 64), 0.4, np.float32)], "vif", resize="first")
    assert any(n == "source 2 resized from 64x48 to 128x96" for n in same_shape.notes), same_shape.notes
    other = fuser.fuse([a, np.full((64, 56), 0.4, np.float32)], "vif", resize="first")  # 7:8
    assert any("stretched from 7:8 to 4:3" in n and "align='auto'" in n for n in other.notes), other.notes
