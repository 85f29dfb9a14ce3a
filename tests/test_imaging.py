"""Tests for tcmoa.imaging: every PIL mode, error paths, colour conversion, saving, resizing."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tcmoa import imaging
from tcmoa.imaging import (
    MIN_SIDE,
    ImageError,
    from_array,
    is_grey,
    probe_image,
    shrink_to,
    resize_to,
    rgb_to_ycbcr,
    save_image,
    bt601_luma,
    to_uint8,
    ycbcr_to_rgb,
)

from .conftest import DATA

EVAL = DATA / "eval"
RNG = np.random.default_rng(0)
# The format tests read small images: here with no minimum side (test_sources_under_the_minimum_side_are_refused
# checks the minimum on its own).
read_image = functools.partial(imaging.read_image, min_side=1)


def _rgb_u8(h: int = 12, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _info(path: Path) -> Image.Image:
    """Header of a saved file (closed again, so no ResourceWarning)."""
    with Image.open(path) as im:
        return im


def _check(img: np.ndarray, shape: tuple[int, ...]) -> None:
    assert img.dtype == np.float32
    assert img.shape == shape
    assert img.min() >= 0.0 and img.max() <= 1.0


# ------------------------------------------------------------------ modes from files


def test_mode_L_and_1(tmp_path: Path) -> None:
    a = RNG.integers(0, 256, (10, 14), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    _check(out, (10, 14))
    np.testing.assert_allclose(out, a / 255.0, atol=1e-7)
    Image.fromarray(a > 128).save(tmp_path / "b.png")  # mode "1"
    out = read_image(str(tmp_path / "b.png"))
    _check(out, (10, 14))
    assert set(np.unique(out)) <= {0.0, 1.0}
    np.testing.assert_array_equal(out, (a > 128).astype(np.float32))


def test_mode_LA_ignores_alpha(tmp_path: Path) -> None:
    im = Image.merge("LA", [Image.new("L", (6, 4), 200), Image.new("L", (6, 4), 0)])
    im.save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    _check(out, (4, 6))
    np.testing.assert_allclose(out, 200 / 255.0)


def test_16bit_grey_png(tmp_path: Path) -> None:
    a = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "ir16.png")
    assert _info(tmp_path / "ir16.png").mode.startswith("I")
    out = read_image(tmp_path / "ir16.png")
    _check(out, (20, 30))
    np.testing.assert_allclose(out, a / 65535.0, atol=1e-7)


def test_16bit_big_endian_in_memory() -> None:
    a = np.array([[0, 1000], [30000, 65535]], dtype=">u2")
    im = Image.frombytes("I;16B", (2, 2), a.tobytes())
    np.testing.assert_allclose(read_image(im), a.astype(np.float64) / 65535.0, atol=1e-7)


def test_palette_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (8, 6), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (4, 0, 8, 6))
    im.info["transparency"] = 0  # index 0 (red) is transparent: alpha ignored, colour kept
    im.save(tmp_path / "p.png", transparency=0)
    assert _info(tmp_path / "p.png").mode == "P"
    out = read_image(tmp_path / "p.png")
    _check(out, (6, 8, 3))
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[0, 7], [0, 0, 1])


def test_grey_palette_collapses(tmp_path: Path) -> None:
    im = Image.new("P", (5, 5), 3)
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(tmp_path / "gp.png")
    out = read_image(tmp_path / "gp.png")
    _check(out, (5, 5))
    np.testing.assert_allclose(out, 3 / 255.0)


def test_rgb_and_rgba(tmp_path: Path) -> None:
    rgb = _rgb_u8()
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), rgb / 255.0, atol=1e-7)
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: colour must survive
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "ca.png")
    out = read_image(tmp_path / "ca.png")
    _check(out, rgb.shape)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert _info(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = read_image(tmp_path / "cmyk.jpg")
    _check(out, (16, 16, 3))
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [1, 0, 0], atol=0.03)  # pure red


def test_ycbcr_in_memory() -> None:
    out = read_image(Image.new("YCbCr", (4, 3), (128, 128, 128)))
    _check(out, (3, 4))  # neutral chroma -> collapses to grey
    np.testing.assert_allclose(out, 128 / 255.0, atol=1 / 255)


def test_exif_rotated_jpeg_is_transposed(tmp_path: Path) -> None:
    im = Image.fromarray(_rgb_u8(20, 40))  # 40 wide, 20 high
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif)
    out = read_image(tmp_path / "rot.jpg")
    _check(out, (40, 20, 3))


def test_mode_I_rules() -> None:
    a16 = np.array([[0, 1000], [40000, 65535]], dtype=np.int32)
    np.testing.assert_allclose(read_image(Image.fromarray(a16)), a16 / 65535.0, atol=1e-7)
    wide = np.array([[-5, 0], [5, 100000]], dtype=np.int32)  # no natural white: min-max
    out = read_image(Image.fromarray(wide))
    assert out.min() == 0.0 and out.max() == 1.0


def test_mode_F_rules() -> None:
    unit = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(read_image(Image.fromarray(unit)), unit)
    eight = np.array([[0, 51], [102, 255]], dtype=np.float32)
    np.testing.assert_allclose(read_image(Image.fromarray(eight)), eight / 255.0, atol=1e-7)
    hdr = np.array([[0.0, 0.5], [1.5, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(read_image(Image.fromarray(hdr)), hdr / 3.0, atol=1e-6)
    with pytest.raises(ImageError, match="NaN"):
        read_image(Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)))


def test_grey_rgb_collapses(tmp_path: Path) -> None:
    g = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(np.dstack([g, g, g])).save(tmp_path / "tno_like.png")
    out = read_image(tmp_path / "tno_like.png")
    _check(out, (9, 7))
    np.testing.assert_array_equal(out, g / np.float32(255))
    assert read_image(tmp_path / "tno_like.png", collapse_grey=False).shape == (9, 7, 3)


def test_is_grey() -> None:
    g = RNG.random((8, 8)).astype(np.float32)
    assert is_grey(g)
    assert is_grey(np.dstack([g, g, g]))
    assert is_grey(np.dstack([g, g + 1 / 255, g]))  # JPEG-level chroma noise
    assert not is_grey(np.dstack([g, g + 0.1, g]))
    u = (g * 255).astype(np.uint8)
    assert is_grey(np.dstack([u, u, u])) and not is_grey(_rgb_u8())


# ------------------------------------------------------------------ other source kinds


def test_bytes_fileobj_pil_sources(tmp_path: Path) -> None:
    rgb = _rgb_u8()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    for src in (buf.getvalue(), io.BytesIO(buf.getvalue()), Image.fromarray(rgb)):
        np.testing.assert_allclose(read_image(src), rgb / 255.0, atol=1e-7)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(12345)  # type: ignore[arg-type]


def test_numpy_inputs() -> None:
    u8 = _rgb_u8()
    np.testing.assert_allclose(read_image(u8), u8 / 255.0, atol=1e-7)
    u16 = (u8.astype(np.uint16) * 257)[..., 0]
    np.testing.assert_allclose(read_image(u16), u16 / 65535.0, atol=1e-7)
    _check(read_image(np.ones((4, 5), bool)), (4, 5))
    f = RNG.random((4, 5, 1))
    _check(read_image(f), (4, 5))
    rgba = RNG.random((4, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(read_image(rgba), rgba[..., :3])
    np.testing.assert_allclose(read_image(np.full((2, 2), 1.0005)), 1.0)  # small overshoot clipped


@pytest.mark.parametrize(
    "arr, msg",
    [
        (np.array([[0.1, np.nan]]), "NaN"),
        (np.array([[0.1, np.inf]]), "inf"),
        (np.array([[0.0, 2.0]]), r"\[0, 1\]"),
        (np.array([[0.0, 200.0]]), "divide by 255"),
        (np.zeros((3, 8, 8)), "channels-first"),
        (np.zeros((8, 8, 2)), "not an image"),
        (np.zeros((0, 8)), "zero size"),
        (np.zeros((4, 4), np.int64), "unsupported dtype"),
    ],
)
def test_numpy_errors(arr: np.ndarray, msg: str) -> None:
    with pytest.raises(ImageError, match=msg):
        from_array(arr)


# ------------------------------------------------------------------ error paths


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png.*empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="empty"):
        read_image(b"")
    with pytest.raises(ImageError, match="not a file"):
        read_image(tmp_path)


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(ImageError, match="x.png.*not a recognised image"):
        read_image(tmp_path / "x.png")


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_file(tmp_path: Path, ext: str) -> None:
    noise = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"t.{ext}"
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        read_image(path)


def test_pixel_limit_checked_before_decode(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(RNG.integers(0, 256, (40, 50), dtype=np.uint8)).save(path)
    with pytest.raises(ImageError, match=r"big.png.*50x40.*above the limit"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=2000).shape == (40, 50)
    # A truncated body still reports the size problem: the header is checked before decoding.
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageError, match="above the limit"):
        read_image(path, max_pixels=1000)
    with pytest.raises(ImageError, match="= 2,000 px, above the limit of 1,000 px; downscale it"):
        read_image(np.zeros((40, 50)), max_pixels=1000)  # a tiny limit in pixels, not "0.0 MP"


def test_pil_decompression_bomb_becomes_image_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 px > 2 * 100 -> Pillow refuses
    with pytest.raises(ImageError, match="too large"):
        read_image(path, max_pixels=None)


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 200), (200, MIN_SIDE - 1)])
def test_sources_under_the_minimum_side_are_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    # Every way in (file, its header alone, bytes, PIL image, array) gives the one message.
    w, h = size
    path = tmp_path / "small.png"
    Image.new("RGB", (w, h), (90, 120, 30)).save(path)
    message = rf"{w}x{h} px; fusion needs at least {MIN_SIDE} px on each side"
    with Image.open(path) as opened:
        for source in (path, path.read_bytes(), opened, np.zeros((h, w, 3), np.uint8)):
            with pytest.raises(ImageError, match=message):
                imaging.read_image(source)
    with pytest.raises(ImageError, match=message):
        probe_image(path)


def test_the_minimum_side_itself_is_read(tmp_path: Path) -> None:
    path = tmp_path / "edge.png"
    Image.new("L", (MIN_SIDE, MIN_SIDE + 5)).save(path)
    assert imaging.read_image(path).shape == (MIN_SIDE + 5, MIN_SIDE)
    assert probe_image(path) == (MIN_SIDE, MIN_SIDE + 5)
    assert from_array(np.zeros((2, 3))).shape == (2, 3)  # arrays the library makes have no minimum


def test_zero_size_pil() -> None:
    with pytest.raises(ImageError, match="zero size"):
        read_image(Image.new("L", (0, 5)))


# ------------------------------------------------------------------ colour


def test_ycbcr_round_trip_and_known_values() -> None:
    rgb = RNG.random((16, 16, 3)).astype(np.float32)
    y, cb, cr = rgb_to_ycbcr(rgb)
    assert y.dtype == cb.dtype == cr.dtype == np.float32
    np.testing.assert_allclose(ycbcr_to_rgb(y, cb, cr), rgb, atol=2e-6)
    white = rgb_to_ycbcr(np.ones((1, 1, 3), np.float32))
    np.testing.assert_allclose([c[0, 0] for c in white], [1.0, 0.5, 0.5], atol=1e-6)
    red = rgb_to_ycbcr(np.array([[[1.0, 0.0, 0.0]]], np.float32))
    np.testing.assert_allclose([c[0, 0] for c in red], [0.299, 0.5 - 0.168736, 1.0], atol=1e-5)
    assert ycbcr_to_rgb(np.ones((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))).max() <= 1.0


def test_ycbcr_to_rgb_computes_the_written_formula_exactly() -> None:
    """The in-place version gives the same bits as the formula written out with temporaries."""
    y, cb, cr = (RNG.random((70, 90)).astype(np.float32) for _ in range(3))
    r = y + np.float32(1.402) * (cr - np.float32(0.5))
    b = y + np.float32(1.772) * (cb - np.float32(0.5))
    g = (y - np.float32(0.299) * r - np.float32(0.114) * b) / np.float32(0.587)
    plain = np.stack([r, g, b], axis=-1)
    np.testing.assert_array_equal(ycbcr_to_rgb(y, cb, cr, clip=False), plain)
    np.testing.assert_array_equal(ycbcr_to_rgb(y, cb, cr), np.clip(plain, 0, 1))
    before = cb.copy()
    ycbcr_to_rgb(y, cb, cr)
    np.testing.assert_array_equal(cb, before)  # the caller's planes are not written


def test_to_grey() -> None:
    rgb = RNG.random((5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(bt601_luma(rgb), rgb @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-6)
    g = rgb[..., 0]
    np.testing.assert_array_equal(bt601_luma(g), g)


# ------------------------------------------------------------------ output


def test_to_uint8() -> None:
    a = np.array([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.3], np.float32)
    np.testing.assert_array_equal(to_uint8(a), [0, 0, 0, 1, 255, 255])
    assert to_uint8(a).dtype == np.uint8


@pytest.mark.parametrize("shape", [(600, 7), (600, 7, 3), (1, 3), ()])
def test_to_uint8_by_rows_matches_the_whole_image_formula(shape: tuple[int, ...]) -> None:
    a = (RNG.random(shape) * 1.4 - 0.2).astype(np.float32)  # out-of-range values clip
    np.testing.assert_array_equal(to_uint8(a), np.clip(np.rint(a * np.float32(255)), 0, 255).astype(np.uint8))


def test_uint8_arrays_read_as_exact_fractions_without_touching_the_input() -> None:
    a = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    before = a.copy()
    np.testing.assert_array_equal(read_image(a), a.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(a, before)


def test_save_png_jpeg_and_16bit(tmp_path: Path) -> None:
    rgb = _rgb_u8() / np.float32(255)
    p = save_image(tmp_path / "deep" / "er" / "out.png", rgb)
    assert p.exists()
    np.testing.assert_allclose(read_image(p), rgb, atol=1e-6)
    save_image(tmp_path / "out.jpg", rgb)
    assert _info(tmp_path / "out.jpg").format == "JPEG"
    grey = RNG.random((7, 9)).astype(np.float32)
    save_image(tmp_path / "g16.png", grey, bits=16)
    assert _info(tmp_path / "g16.png").mode.startswith("I;16")
    np.testing.assert_allclose(read_image(tmp_path / "g16.png"), grey, atol=1 / 65535)
    with pytest.raises(ValueError, match="16 bits"):
        save_image(tmp_path / "c16.png", rgb, bits=16)
    with pytest.raises(ValueError, match="unknown extension"):
        save_image(tmp_path / "out.xyz", rgb)


def test_resize_to() -> None:
    img = RNG.random((40, 60, 3)).astype(np.float32)
    small = resize_to(img, (20, 30))
    _check(small, (20, 30, 3))
    np.testing.assert_allclose(small[0, 0], img[:2, :2].mean(axis=(0, 1)), atol=1e-5)  # area average
    big = resize_to(img[..., 0], (81, 121))
    _check(big, (81, 121))
    np.testing.assert_allclose(resize_to(np.full((10, 10), 0.3, np.float32), (7, 13)), 0.3, atol=1e-5)
    with pytest.raises(ValueError):
        resize_to(img, (0, 5))


# ------------------------------------------------------------------ real data


@pytest.mark.parametrize(
    "rel, ndim",
    [("vif/tno25/vi/01.png", 2), ("medical/harvard_pet/pet", 3), ("vif/roadscene50/ir", 2)],
)
def test_real_files(rel: str, ndim: int) -> None:
    path = EVAL / rel
    if path.is_dir():
        files = sorted(path.iterdir())
        path = files[0] if files else path
    if not path.is_file():
        pytest.skip(f"{path} not available")
    out = read_image(path)
    assert out.dtype == np.float32 and out.ndim == ndim
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.max() > 0


def test_shrink_to_bounds_the_longer_side_and_keeps_the_dtype_kind():
    rgb = np.random.default_rng(0).random((300, 120, 3)).astype(np.float32)
    assert shrink_to(rgb, 400) is rgb  # already small enough: untouched
    small = shrink_to(rgb, 150)
    assert small.shape == (150, 60, 3) and small.dtype == np.float32
    grey8 = (rgb[..., 0] * 255).astype(np.uint8)
    assert shrink_to(grey8, 100).shape == (100, 40) and shrink_to(grey8, 100).dtype == np.uint8
