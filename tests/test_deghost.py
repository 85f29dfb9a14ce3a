"""tcmoa.align.deghost: the exposure relation, motion masks and de-ghosting, on bundled and synthetic brackets."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tcmoa.align.deghost import deghost, exposure_map, motion_masks
from tcmoa.imaging import read_image

DATA = Path(__file__).resolve().parent / "data"
EXPOSURES = (0.35, 1.0, 2.8)  # under, reference, over
RADIUS = 24


def radiance() -> np.ndarray:
    """A scene's linear radiance: the bundled visible crop (192 x 256, RGB) through sRGB^2.2."""
    return read_image(DATA / "vif_vi.png", collapse_grey=False) ** 2.2


def textured_disc(scene: np.ndarray, centre: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The scene with a bright, striped disc (an object) at centre; and its alpha."""
    h, w = scene.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.circle(alpha, centre, RADIUS, 1.0, -1)
    alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), 1.5))
    stripes = 0.08 + 0.25 * (np.indices((h, w)).sum(axis=0) // 6 % 2)
    look = np.stack([stripes, stripes * 0.6, stripes * 0.3], axis=-1).astype(np.float32)
    return scene * (1 - alpha[..., None]) + look * alpha[..., None], alpha


def expose(scene: np.ndarray, exposure: float, seed: int) -> np.ndarray:
    """An 8-bit exposure: gamma 1/2.2, clipped, with sensor noise."""
    rng = np.random.default_rng(seed)
    v = np.clip(scene * exposure, 0, 1) ** (1 / 2.2) + rng.normal(0, 0.008, scene.shape)
    return (np.round(np.clip(v, 0, 1) * 255) / 255).astype(np.float32)


def bracket(centres: list[tuple[int, int]] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three exposures with the object at centres[k] in exposure k (none when None); and its alphas."""
    images, alphas = [], []
    for k, t in enumerate(EXPOSURES):
        still = (radiance(), np.zeros((192, 256), np.float32))
        scene, alpha = still if centres is None else textured_disc(radiance(), centres[k])
        images.append(expose(scene, t, seed=k))
        alphas.append(alpha)
    return images, alphas


WALK = [(60, 120), (128, 120), (196, 120)]  # the object walks right; the reference (1) sees it in the middle


def test_exposure_map_is_monotone_and_reproduces_clipping() -> None:
    scene = radiance()
    ref, over = expose(scene, 1.0, 0), expose(scene, 2.8, 1)
    mapped = exposure_map(over, ref)
    assert mapped.shape == over.shape and mapped.dtype == np.float32
    for c in range(3):
        order = np.argsort(ref[..., c], axis=None, kind="stable")
        assert np.all(np.diff(mapped[..., c].ravel()[order]) >= -1e-6)  # a higher reference level never maps lower
    assert np.abs(mapped - over).mean() < 0.02
    blown = (over >= 1.0).all(axis=2) & (ref < 0.97).all(axis=2)  # clipped in the source, not in the reference
    assert blown.sum() > 500
    assert mapped[blown].mean() > 0.98
    detail = (over < 0.97).all(axis=2)  # and back, where the over-exposure holds detail
    assert np.abs(exposure_map(ref, over) - ref)[detail].mean() < 0.02


def test_a_moving_object_is_found_across_exposures() -> None:
    images, alphas = bracket(WALK)
    masks = motion_masks(images, 1)
    assert len(masks) == 3 and all(m.shape == (192, 256) and m.dtype == np.float32 for m in masks)
    for k in (0, 2):
        moving = (alphas[k] > 0.5) | (alphas[1] > 0.5)  # its own place and the reference's
        # The mask grows (into pixels the reference cannot see, then a soft edge): by less than 30 px.
        near = cv2.dilate(moving.astype(np.uint8), np.ones((61, 61), np.uint8)) > 0
        assert masks[k][moving].mean() > 0.8, k
        assert masks[k][~near].max() < 0.05, k
        assert (masks[k] > 0.5).sum() < 2.5 * moving.sum(), k
        assert 0 <= masks[k].min() and masks[k].max() <= 1.0


def test_the_masks_are_soft_edged() -> None:
    masks = motion_masks(bracket(WALK)[0], 1)
    values = masks[0][(masks[0] > 0.02) & (masks[0] < 0.98)]
    assert values.size > 100  # a feathered edge, not a step


def test_static_brackets_give_empty_masks() -> None:
    synthetic, _ = bracket(None)
    over, under = (read_image(DATA / f"mef_{name}.png", collapse_grey=False) for name in ("over", "under"))
    for stack in (synthetic, [under, over], [over, under]):
        for reference in range(len(stack)):
            masks = motion_masks(stack, reference)
            assert max(float((m > 0.5).mean()) for m in masks) < 0.002


def test_a_line_along_two_borders_stays_a_line() -> None:
    images, _ = bracket(None)
    framed = images[0].copy()
    framed[-4:, :] = framed[:, -4:] = (0.1, 0.2, 0.9)  # a coloured frame on two sides of one exposure (a scan border)
    masks = motion_masks([framed, images[1]], 1)
    assert masks[0][-4:, 10:-10].mean() > 0.5  # it differs, and is flagged
    assert (masks[0] > 0.5).mean() < 0.3  # but not the triangle its convex hull would be (half the image)


def test_grey_images_work_too() -> None:
    images, alphas = bracket(WALK)
    grey = [im.mean(axis=2) for im in images]
    masks = motion_masks(grey, 1)
    assert masks[2][alphas[2] > 0.5].mean() > 0.8
    assert exposure_map(grey[0], images[1]).shape == grey[0].shape  # a colour reference of a grey source: its luma


def test_the_reference_mask_is_zero() -> None:
    images, _ = bracket(WALK)
    for reference in range(3):
        masks = motion_masks(images, reference)
        assert not masks[reference].any()


def test_uncovered_pixels_carry_no_evidence() -> None:
    images, alphas = bracket(WALK)
    cover = np.ones((192, 256), np.float32)
    cover[:, :100] = 0  # the source's warp did not reach the left part, where its object is
    masks = motion_masks(images, 1, coverage=[cover, None, None])
    assert not masks[0][:, :100].any()
    assert masks[0][alphas[1] > 0.5].mean() > 0.8  # the reference's place is still flagged


def test_deghost_keeps_the_reference_and_removes_the_object() -> None:
    images, alphas = bracket(WALK)
    consistent, _ = bracket([WALK[1]] * 3)  # the object where the reference sees it, in every exposure
    masks = motion_masks(images, 1)
    cleaned = deghost(images, 1, masks)
    assert cleaned[1].dtype == np.float32 and np.array_equal(cleaned[1], images[1])
    for k in (0, 2):
        region = (alphas[k] > 0.05) | (alphas[1] > 0.05)
        before = np.abs(images[k] - consistent[k])[region].mean()
        after = np.abs(cleaned[k] - consistent[k])[region].mean()
        assert after < 0.3 * before, (k, before, after)
        untouched = masks[k] == 0
        assert np.array_equal(cleaned[k][untouched], images[k][untouched])


def test_deghost_with_empty_masks_changes_nothing() -> None:
    images, _ = bracket(None)
    masks = [np.zeros((192, 256), np.float32)] * 3
    assert all(np.array_equal(a, b) for a, b in zip(deghost(images, 0, masks), images))


@pytest.mark.parametrize("call, message", [
    (lambda im: motion_masks([im[0], im[1][:100]], 0), "align"),
    (lambda im: motion_masks([im[0]], 0), "at least 2"),
    (lambda im: motion_masks(im[0], 0), "list of images"),
    (lambda im: motion_masks(im, 3), "reference must be an image index"),
    (lambda im: motion_masks([im[0], np.full_like(im[1], np.nan)], 0), "NaN"),
    (lambda im: motion_masks(im, 0, coverage=[None]), "one per image"),
    (lambda im: deghost(im, 0, [np.zeros((5, 5), np.float32)] * 3), "shaped"),
    (lambda im: deghost(im, 0, [np.full((192, 256), 2.0, np.float32)] * 3), "in \\[0, 1\\]"),
    (lambda im: exposure_map(im[0], im[1][:, :10]), "align"),
])
def test_bad_input_is_a_clear_value_error(call, message) -> None:
    images, _ = bracket(None)
    with pytest.raises(ValueError, match=message):
        call(images)
