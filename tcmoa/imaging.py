"""Image reading, validation, colour conversion and saving (numpy + Pillow only).

Every image inside tcmoa is a float32 numpy array in [0, 1], shaped (H, W) for grey or
(H, W, 3) for RGB. ``read_image`` is the single entry point that turns user input (paths,
bytes, file objects, PIL images, numpy arrays) into that form, and ``ImageError`` is the single
exception it raises, with a message that names the input and says what to do.

What the pixels of each mode and bit depth become, alpha, and grey detection: tcmoa.pixel_values
(its docstring has the rules). Here, for files and arrays:

* **Grey collapse**: a 3-channel image that is grey (`is_grey`) is returned as (H, W) when
  ``collapse_grey=True``.
* **Colour management**: EXIF orientation is applied; ICC profiles are ignored (pixels are
  treated as sRGB); CMYK and YCbCr go through Pillow's conversion; multi-frame files (GIF,
  TIFF stacks) use the first frame.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

from .bit_depth import PNG_HEAD_BYTES, png_sbit
from .pixel_values import FLOAT_TOLERANCE, GREY_TOLERANCE, ImageError, check_finite, grey_of, is_grey, pil_to_float, unit_float
from .ycbcr import bt601_luma, rgb_to_ycbcr, ycbcr_to_rgb

__all__ = [
    "DEFAULT_MAX_PIXELS", "GREY_TOLERANCE", "MIN_SIDE", "ImageError", "ImageSource", "from_array", "is_grey", "probe_image",
    "read_image", "resize_to", "rgb_to_ycbcr", "save_image", "bt601_luma", "to_uint8", "ycbcr_to_rgb",
]

# 64 MP: above any phone sensor in common use (48/50 MP), still small enough that a five-shot
# bracket of float32 RGB arrays fits in a few GB. Callers may pass None to lift our limit;
# Pillow's own decompression-bomb limit (2 * Image.MAX_IMAGE_PIXELS) then still applies.
DEFAULT_MAX_PIXELS = 64_000_000
# The smallest side a source may have, everywhere (library, CLI, app): the smallest size every quality
# metric is defined for. MEF-SSIM's coarsest of 3 scales (a quarter of the side) must hold its 11-px
# patch, 11 * 4 = 44 (VIF needs 41); a smaller fusion could be made but never measured.
MIN_SIDE = 44

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO, Image.Image, np.ndarray]


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})


def _image_paths(folder: Path) -> list[Path]:
    """A folder's image files in name order; hidden ones (.x.png, macOS's ._x.png) are not images of it."""
    return [p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]


def image_files(folder: Path) -> dict[str, Path]:
    """The image files of a folder by stem, in name order."""
    return {p.stem: p for p in _image_paths(folder)}


def name_clashes(folder: Path) -> dict[str, list[str]]:
    """Stems that name more than one image file in a folder (x.jpg and x.png): {stem: [file names]}."""
    by_stem: dict[str, list[str]] = {}
    for p in _image_paths(folder):
        by_stem.setdefault(p.stem, []).append(p.name)
    return {stem: names for stem, names in by_stem.items() if len(names) > 1}


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    collapse_grey: bool = True,
    notes: list[str] | None = None,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """Read a path, bytes, file object, PIL image or array into float32 [0,1] (H,W) or (H,W,3).

    `notes`, when given, receives a line for each decision worth telling (e.g. 12-bit data in a
    16-bit file, scaled to the full range). An image under `min_side` px on a side is refused.
    """
    if isinstance(source, np.ndarray):
        return from_array(source, collapse_grey=collapse_grey, max_pixels=max_pixels, min_side=min_side)
    if isinstance(source, Image.Image):
        return _decode(source, "the given PIL image", max_pixels, collapse_grey, notes=notes, min_side=min_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("the uploaded data is empty (0 bytes); upload the image file again")
        data = bytes(source)
        with _open(io.BytesIO(data), "the uploaded data") as im:
            return _decode(im, "the uploaded data", max_pixels, collapse_grey, sbit=png_sbit(data), notes=notes,
                           min_side=min_side)
    if isinstance(source, (str, os.PathLike)):
        path, label = _checked_path(source)
        with _open(path, label) as im:
            with path.open("rb") as f:
                head = f.read(PNG_HEAD_BYTES)
            return _decode(im, label, max_pixels, collapse_grey, sbit=png_sbit(head), notes=notes, min_side=min_side)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):  # a text-mode file would recurse as a path
            raise ImageError("the file object must be opened in binary mode ('rb')")
        return read_image(data, max_pixels=max_pixels, collapse_grey=collapse_grey, notes=notes, min_side=min_side)
    raise ImageError(
        f"cannot read an image from {type(source).__name__}; "
        "give a file path, bytes, a PIL image or a numpy array"
    )


def _checked_path(source: str | os.PathLike) -> tuple[Path, str]:
    """The path and its label for messages, once it is known to be a non-empty file."""
    path = Path(source)
    label = f"'{path}'"
    if not path.exists():
        raise ImageError(f"{label}: no such file; check the path")
    if not path.is_file():
        raise ImageError(f"{label}: is not a file (a folder?); give the path of an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{label}: file is empty (0 bytes); re-export or re-copy the image")
    return path, label


def probe_image(source: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                min_side: int = MIN_SIDE) -> tuple[int, int]:
    """(width, height) of an image file from its header, upright (EXIF), with read_image's checks on the
    file and the pixel count: a fast check of inputs before a slow step (loading a model)."""
    path, label = _checked_path(source)
    with _open(path, label) as im:
        w, h = im.size
        _check_size(label, w, h, max_pixels, min_side)
        try:
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the sides
        except Exception:  # noqa: BLE001 (as read_image: a malformed EXIF block is ignored)
            turned = False
    return (h, w) if turned else (w, h)


def _open(fp: Path | BinaryIO, label: str) -> Image.Image:
    """Open lazily (header only) and map Pillow's errors to ImageError."""
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{label}: image is too large to decode safely ({exc}); downscale it before fusing"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(
            f"{label}: not a recognised image file (or its header is corrupt); "
            "use PNG, JPEG, TIFF, BMP or WebP"
        ) from exc
    except OSError as exc:
        raise ImageError(f"{label}: could not be opened ({exc})") from exc


def _decode(im: Image.Image, label: str, max_pixels: int | None, collapse_grey: bool, *,
            sbit: int | None = None, notes: list[str] | None = None, min_side: int = MIN_SIDE) -> np.ndarray:
    """Check the header size, fully decode, apply EXIF orientation and convert to float."""
    _check_size(label, *im.size, max_pixels, min_side)  # on the header, before decoding: a huge file costs no memory
    try:
        # Pillow decodes lazily: only a full load() exposes truncated or corrupt pixel data.
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: image is too large to decode safely ({exc})") from exc
    except MemoryError as exc:
        raise ImageError(f"{label}: not enough memory to decode a {im.width}x{im.height} image") from exc
    except Exception as exc:  # plugins raise OSError, SyntaxError, ValueError, EOFError ...
        raise ImageError(
            f"{label}: image data is truncated or corrupt ({exc}); re-export or re-download it"
        ) from exc
    try:
        if im.getexif().get(0x0112, 1) not in (0, 1):  # exif_transpose copies even when upright
            im = ImageOps.exif_transpose(im) or im
    except Exception:  # noqa: BLE001 (a malformed EXIF block should not make a good image unreadable)
        pass
    arr = pil_to_float(im, label, sbit, notes)
    if arr.ndim == 3 and collapse_grey and is_grey(arr):
        arr = grey_of(arr)
    return arr


def _check_size(label: str, w: int, h: int, max_pixels: int | None, min_side: int = 1) -> None:
    """Refuse an image with no pixels, under min_side px on a side, or with more than max_pixels."""
    if w == 0 or h == 0:
        raise ImageError(f"{label}: image has zero size ({w}x{h}); the file holds no pixels")
    if min(w, h) < min_side:
        raise ImageError(f"{label}: image is {w}x{h} px; fusion needs at least {min_side} px on each side "
                         "(the smallest size every quality metric is defined for); use a larger image")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(f"{label}: image is {w}x{h} = {_pixel_count(w * h)}, above the limit of "
                         f"{_pixel_count(max_pixels)}; downscale it (or raise max_pixels)")


def _pixel_count(n: int) -> str:
    """'12.0 MP', or '1,000 px' for a count that would print as 0.0 MP."""
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n:,} px"


def from_array(
    arr: np.ndarray,
    *,
    collapse_grey: bool = True,
    max_pixels: int | None = None,
    label: str = "the image array",
    min_side: int = 1,
    copy: bool = True,
) -> np.ndarray:
    """Validate a numpy image (uint8/uint16/bool/float [0,1]; HxW, HxWx1/3/4) into float32 [0,1].

    `min_side` is 1 for images the library makes (saved results, the colour rule's planes); read_image
    passes MIN_SIDE for sources. `copy=False` returns a valid float32 [0, 1] array itself rather than a
    copy, for callers that only read it (the colour rule, on sources the pipeline already read).
    """
    a = np.asarray(arr)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        channels_first = a.ndim == 3 and a.shape[0] in (1, 3, 4)
        hint = " (channels-first? use arr.transpose(1, 2, 0))" if channels_first else ""
        raise ImageError(
            f"{label}: shape {a.shape} is not an image; expected (H, W), (H, W, 1), "
            f"(H, W, 3) or (H, W, 4){hint}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"{label}: image has zero size {a.shape[:2]}")
    _check_size(label, a.shape[1], a.shape[0], max_pixels, min_side)
    if a.dtype == np.uint8:
        out = unit_float(a, 255.0)
    elif a.dtype == np.uint16:
        out = unit_float(a, 65535.0)
    elif a.dtype == np.bool_:
        out = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # min/max propagate NaN and inf
            check_finite(a, label)
        if lo < -FLOAT_TOLERANCE or hi > 1.0 + FLOAT_TOLERANCE:
            hint = "; divide by 255 for 8-bit data" if hi <= 255 and lo >= 0 else ""
            raise ImageError(f"{label}: float values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]{hint}")
        out = a.astype(np.float32, copy=copy)  # by default a copy: callers may modify their array later
        if lo < 0.0 or hi > 1.0:  # within the tolerance: clipped, never in the caller's array
            out = np.clip(out, 0.0, 1.0) if out is a else np.clip(out, 0.0, 1.0, out=out)
    else:
        raise ImageError(
            f"{label}: unsupported dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1]"
        )
    if out.ndim == 3:
        if out.shape[2] == 1:
            out = out[..., 0]
        elif out.shape[2] == 4:
            out = out[..., :3]  # alpha ignored, see module docstring
    if out.ndim == 3 and collapse_grey and is_grey(out):
        out = grey_of(out)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Writing and resizing
# --------------------------------------------------------------------------------------------


# Extensions save_image writes, and the Pillow format of each (the CLI checks outputs against it).
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                ".bmp": "BMP", ".webp": "WEBP"}


# zlib level 1 for PNG (OpenCV's default too): a 640x480 result in 19 ms instead of Pillow's level 6 at
# 90 ms, the largest part of the page's encoding time, for files about 15 % larger; the pixels are the same.
PNG_COMPRESS_LEVEL = 1
UINT8_ROWS = 256  # rows converted at a time by to_uint8


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0,1] image -> uint8 by rounding and clipping (uint8 input is returned unchanged)."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    rows = a.reshape(1) if a.ndim == 0 else a
    out = np.empty(rows.shape, np.uint8)
    for top in range(0, len(rows), UINT8_ROWS):  # by rows: a float temporary of a few MB, not of the image
        scaled = np.multiply(rows[top:top + UINT8_ROWS], 255.0, dtype=np.float32)
        out[top:top + UINT8_ROWS] = np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled)
    return out.reshape(a.shape)


def save_image(path: str | os.PathLike, img: np.ndarray, bits: int = 8, *, quality: int = 95) -> Path:
    """Write an image (format from the extension; 16-bit only for grey PNG/TIFF); returns the path."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save '{path}': unknown extension; use one of {sorted(SAVE_FORMATS)}")
    a = from_array(img, collapse_grey=False, label=f"image for '{path}'", copy=False)  # read only: no copy
    if bits == 16:
        if a.ndim != 2 or fmt not in ("PNG", "TIFF"):
            raise ValueError(
                f"cannot save '{path}' with 16 bits: only grey PNG/TIFF can be written at 16 bits "
                "(Pillow has no 16-bit RGB); use bits=8"
            )
        pil = Image.fromarray(np.clip(np.rint(a * 65535.0), 0, 65535).astype(np.uint16))
    elif bits == 8:
        pil = Image.fromarray(to_uint8(a))
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma: fused results carry fine colour edges that 4:2:0 would smear.
    kwargs = {"JPEG": {"quality": quality, "subsampling": 0}, "PNG": {"compress_level": PNG_COMPRESS_LEVEL}}.get(fmt, {})
    # Atomic: written beside the target under a hidden name, then renamed into place, so an
    # interrupt (Ctrl-C), a full disk or a crash never leaves a partial file at `path`.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        pil.save(partial, format=fmt, **kwargs)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def resize_to(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float [0,1] image to (h, w): area averaging when shrinking, bicubic otherwise."""
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_to: target size must be positive, got {size}")
    a = np.asarray(img, dtype=np.float32)
    if a.shape[:2] == (h, w):
        return a.copy()
    # BOX = exact area average, no ringing; bicubic for enlarging (or mixed up/down).
    shrink = h <= a.shape[0] and w <= a.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC
    planes = [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[2])]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((w, h), resample)) for p in planes]
    res = out[0] if a.ndim == 2 else np.stack(out, axis=-1)
    return np.clip(res, 0.0, 1.0).astype(np.float32)


def shrink_to(image: np.ndarray, side: int) -> np.ndarray:
    """An image (float [0,1] or uint8) at most `side` px on its longer side, keeping its dtype kind."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if image.dtype == np.uint8:
        return to_uint8(resize_to(unit_float(image), size))
    return resize_to(image, size)
