"""Tests for tcmoa.metrics.baselines and the colour rule in tcmoa.colour."""

from __future__ import annotations


import numpy as np
import pytest

from tcmoa.metrics.baselines import (
    BASELINES,
    average_fusion,
    laplacian_pyramid_fusion,
    mertens_fusion,
    mertens_weights,
    run_baseline,
)
from tcmoa.colour import combine_chroma, fuse_with_colour_rule, is_colour
from tcmoa.imaging import read_image, rgb_to_ycbcr, bt601_luma, ycbcr_to_rgb
from tcmoa.tasks import ROUTER_NAMES

from .conftest import DATA

RNG = np.random.default_rng(1)
H, W = 48, 64
EVAL = DATA / "eval"


def _grey() -> np.ndarray:
    return RNG.random((H, W)).astype(np.float32)


def _mild_colour() -> np.ndarray:
    """Colour image far enough from the gamut edges that fusing its Y never clips RGB."""
    y = 0.3 + 0.4 * RNG.random((H, W))
    cb = 0.5 + 0.05 * (RNG.random((H, W)) - 0.5)
    cr = 0.5 + 0.05 * (RNG.random((H, W)) - 0.5)
    return ycbcr_to_rgb(y.astype(np.float32), cb.astype(np.float32), cr.astype(np.float32))


def _colour() -> np.ndarray:
    return RNG.random((H, W, 3)).astype(np.float32)


def _detail(img: np.ndarray) -> float:
    """Mean absolute horizontal + vertical difference (texture energy)."""
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


# ------------------------------------------------------------------ shapes, dtypes, ranges


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("task", ROUTER_NAMES)
@pytest.mark.parametrize(
    "kinds, out_shape",
    [(("g", "g"), (H, W)), (("c", "g"), (H, W, 3)), (("c", "c"), (H, W, 3)), (("g", "c", "c"), (H, W, 3))],
)
def test_output_contract(name: str, task: str, kinds: tuple[str, ...], out_shape: tuple[int, ...]) -> None:
    sources = [_grey() if k == "g" else _colour() for k in kinds]
    out = BASELINES[name](sources, task)
    assert out.dtype == np.float32 and out.shape == out_shape
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_registry_names() -> None:
    assert set(BASELINES) == {"average", "laplacian", "mertens"}
    assert mertens_weights("mff") == (1.0, 0.0, 0.0)
    assert all(mertens_weights(t) == (1.0, 1.0, 0.0) for t in ("vif", "mef", "medical"))


# ------------------------------------------------------------------ behaviour


def test_average_of_identical_sources() -> None:
    g, c = _grey(), _colour()
    np.testing.assert_allclose(average_fusion([g, g]), g, atol=1e-6)
    np.testing.assert_allclose(average_fusion([c, c, c]), c, atol=1e-6)
    a, b = _grey(), _grey()
    np.testing.assert_allclose(average_fusion([a, b]), (a + b) / 2, atol=1e-6)


def test_laplacian_of_identical_sources() -> None:
    g = _grey()
    np.testing.assert_allclose(laplacian_pyramid_fusion([g, g]), g, atol=1e-5)
    c = _colour()  # all-colour path: Y pyramid + |C-0.5| chroma weighting of equal planes
    np.testing.assert_allclose(laplacian_pyramid_fusion([c, c]), c, atol=1e-4)


def test_laplacian_keeps_strongest_detail() -> None:
    flat = np.full((H, W), 0.5, np.float32)
    tex = (0.5 + 0.3 * np.sign(np.sin(np.arange(W) / 2.0)))[None, :].repeat(H, 0).astype(np.float32)
    out = laplacian_pyramid_fusion([flat, tex])
    assert _detail(out) > 0.8 * _detail(tex)
    small = laplacian_pyramid_fusion([_grey()[:5, :7], _grey()[:5, :7]], levels=8)  # levels capped
    assert small.shape == (5, 7)


def _bracket() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scene with texture everywhere, and an under/over pair that each clip half of it."""
    yy, xx = np.mgrid[0:H, 0:W]
    ramp = 0.05 + 0.9 * xx / (W - 1)
    scene = np.clip(ramp + 0.1 * np.sin(xx * 1.3) * np.sin(yy * 1.1), 0, 1).astype(np.float32)
    over = np.clip(2 * scene, 0, 1)
    under = np.clip(2 * scene - 1, 0, 1)
    return scene, under, over


@pytest.mark.parametrize("colour", [False, True])
def test_mertens_under_over(colour: bool) -> None:
    _, under, over = _bracket()
    if colour:
        under, over = np.dstack([under, under * 0.9, under * 0.8]), np.dstack([over, over * 0.9, over * 0.8])
    out = run_baseline("mertens", [under, over], "mef")
    assert out.shape == under.shape
    assert under.mean() < out.mean() < over.mean()
    g_out, g_under, g_over = bt601_luma(out), bt601_luma(under), bt601_luma(over)
    bright, dark = slice(int(0.8 * W), W), slice(0, int(0.2 * W))
    # Where one exposure is clipped flat, the fusion recovers texture from the other one.
    assert _detail(g_over[:, bright]) < 1e-6 and _detail(g_out[:, bright]) > 0.3 * _detail(g_under[:, bright])
    assert _detail(g_under[:, dark]) < 1e-6 and _detail(g_out[:, dark]) > 0.3 * _detail(g_over[:, dark])


def test_mertens_mff_weights_prefer_sharp_source() -> None:
    sharp = _grey()
    blurred = np.full_like(sharp, float(sharp.mean()))
    out = run_baseline("mertens", [blurred, sharp], "mff")
    assert _detail(out) > 0.5 * _detail(sharp)
    assert mertens_fusion([sharp, sharp], 1, 0, 0).shape == (H, W)


# ------------------------------------------------------------------ the colour rule


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("colour_first", [True, False])
def test_one_colour_source_keeps_its_chroma(name: str, colour_first: bool) -> None:
    colour, grey = _mild_colour(), 0.2 + 0.6 * _grey()
    sources = [colour, grey] if colour_first else [grey, colour]
    out = run_baseline(name, sources, "vif")
    assert out.shape == (H, W, 3)
    _, cb, cr = rgb_to_ycbcr(out)
    _, cb0, cr0 = rgb_to_ycbcr(colour)
    inside = ((out > 0) & (out < 1)).all(axis=2)  # chroma is only defined without gamut clipping
    assert inside.mean() > 0.99
    np.testing.assert_allclose(cb[inside], cb0[inside], atol=1e-5)
    np.testing.assert_allclose(cr[inside], cr0[inside], atol=1e-5)


def test_colour_rule_passes_luma_in_order() -> None:
    colour, grey = _mild_colour(), _grey()
    seen: list[int] = []

    def pick_second(ys: list[np.ndarray]) -> np.ndarray:
        seen.append(len(ys))
        assert all(y.ndim == 2 and y.dtype == np.float32 for y in ys)
        return ys[1]

    out = fuse_with_colour_rule([colour, grey], pick_second)
    np.testing.assert_allclose(rgb_to_ycbcr(out)[0], np.clip(grey, 0, 1), atol=2e-2)
    out = fuse_with_colour_rule([grey, colour], pick_second)
    np.testing.assert_allclose(rgb_to_ycbcr(out)[0], rgb_to_ycbcr(colour)[0], atol=1e-5)
    assert seen == [2, 2]


def test_grey_cases() -> None:
    g = _grey()
    tno_like = np.dstack([g, g, g])  # R = G = B counts as grey
    assert not is_colour(tno_like) and is_colour(_colour())
    assert average_fusion([tno_like, _grey()]).shape == (H, W)
    out = laplacian_pyramid_fusion([_colour(), _colour()], colour_mode="grey")
    assert out.shape == (H, W)
    with pytest.raises(ValueError, match="colour_mode"):
        average_fusion([g, g], colour_mode="rgb")  # type: ignore[arg-type]


def test_combine_chroma() -> None:
    neutral = np.full((2, 2), 0.5, np.float32)
    strong = np.array([[0.9, 0.1], [0.5, 0.7]], np.float32)
    np.testing.assert_allclose(combine_chroma([neutral, strong]), strong, atol=1e-7)
    np.testing.assert_array_equal(combine_chroma([neutral, neutral]), neutral)
    mixed = combine_chroma([np.full((1, 1), 0.7), np.full((1, 1), 0.4)])
    np.testing.assert_allclose(mixed, [[(0.7 * 0.2 + 0.4 * 0.1) / 0.3]], atol=1e-6)


def test_all_colour_lp_uses_weighted_chroma() -> None:
    a, b = _mild_colour(), _mild_colour()
    out = laplacian_pyramid_fusion([a, b])
    _, cb, cr = rgb_to_ycbcr(out)
    (_, cba, cra), (_, cbb, crb) = rgb_to_ycbcr(a), rgb_to_ycbcr(b)
    np.testing.assert_allclose(cb, combine_chroma([cba, cbb]), atol=1e-5)
    np.testing.assert_allclose(cr, combine_chroma([cra, crb]), atol=1e-5)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_three_sources(name: str) -> None:
    assert run_baseline(name, [_grey(), _grey(), _grey()], "mff").shape == (H, W)
    assert run_baseline(name, [_colour(), _colour(), _colour()], "mff").shape == (H, W, 3)


# ------------------------------------------------------------------ errors


def test_errors() -> None:
    g = _grey()
    with pytest.raises(ValueError, match="at least 2"):
        average_fusion([g])
    with pytest.raises(ValueError, match="source 2 is 30x20 but source 1 is 64x48"):
        laplacian_pyramid_fusion([g, g[:20, :30]])
    with pytest.raises(ValueError, match="source 3"):
        mertens_fusion([g, g, np.zeros((5, 5))])
    with pytest.raises(ValueError, match="NaN"):
        average_fusion([g, np.full_like(g, np.nan)])
    with pytest.raises(ValueError, match="unknown router"):
        run_baseline("average", [g, g], "depth")
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baseline("wavelet", [g, g], "vif")
    with pytest.raises(ValueError, match="levels"):
        laplacian_pyramid_fusion([g, g], levels=0)
    with pytest.raises(ValueError, match="list of images"):
        average_fusion(np.stack([g, g]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fuse_luma returned shape"):
        fuse_with_colour_rule([g, g], lambda ys: ys[0][:10])


# ------------------------------------------------------------------ real data


def test_real_pet_mri_pair() -> None:
    pet_dir, mri_dir = EVAL / "medical/harvard_pet/pet", EVAL / "medical/harvard_pet/mri"
    pets = sorted(pet_dir.glob("*")) if pet_dir.is_dir() else []
    if not pets or not (mri_dir / pets[0].name).is_file():
        pytest.skip("harvard_pet eval pair not available")
    pet, mri = read_image(pets[0]), read_image(mri_dir / pets[0].name)
    assert pet.ndim == 3 and mri.ndim == 2
    for name in BASELINES:
        out = run_baseline(name, [pet, mri], "medical")
        assert out.shape == pet.shape and out.dtype == np.float32
