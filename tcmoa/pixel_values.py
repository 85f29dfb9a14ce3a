"""What an image's pixels mean: any Pillow mode, bit depth or float range as float32 in [0, 1].

The rules tcmoa.imaging.read_image applies to the pixels it decodes (documented here once, tested in
tests/test_imaging.py):

* **Alpha is ignored**: RGBA / LA / palette-with-transparency inputs keep their colour channels
  and drop alpha. Fusion sources are photos or scans; a transparent area has no scene content
  to fuse, and compositing over an arbitrary background (black or white) would invent edges
  that the fusion would then faithfully preserve.
* **Integer depth**: 8-bit modes are divided by 255; 16-bit modes (``I;16``, ``I;16B`` ..., and
  ``I`` within [0, 65535]) by 65535, so a 16-bit infrared frame keeps its absolute level, unless
  they hold 8-14-bit data (PNG sBIT, else the value range: tcmoa.bit_depth), scaled with a note.
  Other mode ``I`` values have no standard white point and are min-max stretched to [0, 1].
* **Float (mode F)**: values in [0, 1] are used as-is; integer-valued data within [0, 255] is
  divided by 255, and within [0, 65535] scaled as 16-bit samples are (8-14-bit data by its value
  range, with a note; 8/16-bit data saved as float); anything else (HDR radiance, signed data) is
  min-max stretched. NaN/inf are an error.
* **Grey detection**: a 3-channel image whose channels agree within ``GREY_TOLERANCE`` (TNO's
  "visible" PNGs are R = G = B; JPEG re-encoding of such files leaves +-1 level of chroma
  noise) is grey; `grey_of` gives its one channel.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .bit_depth import scale_16bit
from .ycbcr import bt601_luma

GREY_TOLERANCE = 2.0 / 255.0
FLOAT_TOLERANCE = 1e-3  # float arrays may overshoot [0, 1] this much (resampling) and are clipped


class ImageError(ValueError):
    """An input image could not be read or is not usable; the message says why and what to do."""


def unit_float(pixels: object, top: float = 255.0) -> np.ndarray:
    """Integer samples (an array or a PIL image) / `top` as float32, dividing in place: a 24 MP RGB image
    needs one 288-MB float array, not two."""
    out = np.asarray(pixels, dtype=np.float32)
    if not out.flags.writeable or out is pixels:
        out = out.copy()
    out /= top
    return out


def pil_to_float(im: Image.Image, label: str, sbit: int | None = None,
                  notes: list[str] | None = None) -> np.ndarray:
    """Convert a loaded PIL image of any common mode to float32 [0,1] (H,W) or (H,W,3)."""
    mode = im.mode
    if mode in ("1", "L"):
        return unit_float(im.convert("L"))
    if mode in ("LA", "La"):
        return unit_float(im.getchannel(0))  # alpha ignored
    if mode.startswith("I;16"):
        # I;16 / I;16L / I;16B / I;16N: numpy reads the right byte order from the mode.
        return scale_16bit(np.asarray(im).astype(np.int64), label, sbit, notes)
    if mode == "I":
        a = np.asarray(im, dtype=np.int64)
        if int(a.min()) >= 0 and int(a.max()) <= 65535:  # Pillow's container for 16-bit data
            return scale_16bit(a, label, sbit, notes)
        return _minmax(a.astype(np.float64))
    if mode == "F":
        return _scale_float_mode(np.asarray(im, dtype=np.float32), label, notes)
    if mode == "RGB":
        return unit_float(im)
    if mode in ("RGBA", "RGBX"):
        return unit_float(np.asarray(im)[..., :3])  # alpha ignored
    if mode in ("P", "PA", "RGBa"):
        # Via RGBA so Pillow does not warn about palette transparency; alpha is then dropped,
        # transparent pixels keep their palette colour.
        return unit_float(np.asarray(im.convert("RGBA"))[..., :3])
    try:  # CMYK, YCbCr, HSV, LAB, ...: Pillow's own conversion
        rgb = im.convert("RGB")
    except Exception as exc:
        raise ImageError(
            f"{label}: unsupported image mode '{mode}'; convert it to RGB or grey first"
        ) from exc
    return unit_float(rgb)


def _scale_float_mode(a: np.ndarray, label: str, notes: list[str] | None = None) -> np.ndarray:
    """Mode F rule: [0,1] as-is; whole numbers to 255 by 255, to 65535 as 16-bit samples; else min-max."""
    check_finite(a, label)
    lo, hi = float(a.min()), float(a.max())
    if lo >= -FLOAT_TOLERANCE and hi <= 1.0 + FLOAT_TOLERANCE:
        return np.clip(a, 0.0, 1.0)
    if lo >= 0 and np.array_equal(a, np.round(a)):
        if hi <= 255:
            return a / np.float32(255.0)
        if hi <= 65535:  # e.g. a thermal camera's 12-bit counts saved as float: the same depth rule as 16-bit files
            return scale_16bit(a.astype(np.int64), label, None, notes, container="a float file")
    return _minmax(a.astype(np.float64))


def _minmax(a: np.ndarray) -> np.ndarray:
    """Stretch to [0,1]; a constant image maps to 0."""
    lo, hi = a.min(), a.max()
    if hi <= lo:
        return np.zeros(a.shape, np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def check_finite(a: np.ndarray, label: str) -> None:
    """Raise ImageError naming how many NaN / inf values the array has."""
    if np.isfinite(a).all():
        return
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "inf")) if n]
    raise ImageError(f"{label}: contains {' and '.join(parts)} values; fix or mask them first")


def is_grey(arr: np.ndarray, tol: float = GREY_TOLERANCE) -> bool:
    """True for a 2-D image, or a 3-channel one whose channels agree within tol (float scale)."""
    a = np.asarray(arr)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        return True
    if a.ndim != 3 or a.shape[2] < 3:
        return False
    if np.issubdtype(a.dtype, np.integer):
        tol = tol * (65535 if a.dtype == np.uint16 else 255)
    # Cheap early exit: colour photos fail on a row subsample without touching every pixel.
    for view in (a[:: max(1, a.shape[0] // 32)], a):
        r, g, b = (view[..., c].astype(np.float32) for c in range(3))
        # Channels agree within tol iff every pairwise difference does.
        for d in (r - g, g - b, r - b):
            if d.size and max(float(d.max()), -float(d.min())) > tol + 1e-6:
                return False
    return True


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """Grey of an (H,W,3) grey-looking image: the channel itself if exact, else luma."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0], dtype=np.float32)
    return bt601_luma(rgb)
