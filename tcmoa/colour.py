"""The colour rule: how grey-by-design fusion methods handle colour sources.

Most fusion methods (classical LP, TC-MoA's luma path, U2Fusion, ...) fuse single-channel
images. ``fuse_with_colour_rule`` wraps such a luma fusion so that every method, baseline or
model, treats colour the same way (docs/CONVENTIONS.md, "The colour rule"):

* **All sources grey** -> the luma function fuses them; the result is grey (H, W).
  A 3-channel source whose channels are equal (TNO "visible" PNGs) counts as grey, so TNO and
  Harvard MRI+CT results are grey.
* **Exactly one colour source** (VIF: RoadScene / MSRS / LLVIP visible + grey IR; medical:
  pseudo-colour PET / SPECT + grey MRI) -> the BT.601 full-range Y of the colour source is fused
  with the grey sources, then that source's own Cb and Cr are put back unchanged: the output is
  RGB and its chroma is exactly the colour source's (up to RGB gamut clipping).
* **All sources colour** (MEF brackets, MFF focal stacks) -> if the method works natively in RGB
  (``fuse_rgb`` given: Average, Mertens) it fuses RGB directly; otherwise Y is fused and Cb/Cr are
  combined by IFCNN's weighting, C = sum_i C_i |C_i - 0.5| / sum_i |C_i - 0.5| (0.5 where every
  source is neutral), which favours the most saturated source at each pixel.
* **Several colour plus some grey sources** (rare; N >= 3) -> Y fused over all sources, chroma
  combined by the same weighting over the colour sources only.
* ``colour_mode="grey"`` forces a grey result: every colour source is reduced to Y first.

The luma function always receives the sources' Y planes in the caller's order (so ordered
models, e.g. visible-then-infrared, see their inputs where they expect them).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

from .imaging import ImageError, from_array, is_grey, rgb_to_ycbcr, bt601_luma, ycbcr_to_rgb

__all__ = [
    "COLOUR_MODES",
    "ColourMode",
    "FuseFn",
    "SizeMismatchError",
    "check_source_count",
    "check_sources",
    "size_mismatch",
    "combine_chroma",
    "fuse_with_colour_rule",
    "is_colour",
]

ColourMode = Literal["auto", "grey"]
COLOUR_MODES: tuple[str, ...] = ("auto", "grey")
# Takes N >= 2 images of equal size (all (H, W), or all (H, W, 3) for fuse_rgb) -> one image.
FuseFn = Callable[[list[np.ndarray]], np.ndarray]


def is_colour(img: np.ndarray) -> bool:
    """True when img has 3+ channels that are not all equal (see imaging.is_grey)."""
    a = np.asarray(img)
    return a.ndim == 3 and a.shape[2] >= 3 and not is_grey(a)


class SizeMismatchError(ImageError):
    """Sources of different sizes. Each entry point names its own way to opt into resizing (`explain`)."""

    def __init__(self, index: int, size: tuple[int, int], first: tuple[int, int]):
        super().__init__(index, size, first)  # the arguments, so the error pickles (ZeroGPU workers)
        self.index, self.size, self.first = index, size, first

    def __str__(self) -> str:
        return self.explain("or resize='first'")

    def explain(self, hint: str) -> str:
        """The message with `hint` (e.g. "or --resize first") saying how to resize instead."""
        (w, h), (w1, h1) = self.size, self.first
        return (f"source {self.index} is {w}x{h} but source 1 is {w1}x{h1} (width x height); "
                f"fusion needs registered sources of one size ({hint})")


def check_source_count(sources: Sequence[object]) -> None:
    """The one check that a fusion has a list of at least 2 sources (ImageError otherwise)."""
    if isinstance(sources, (str, bytes, np.ndarray)) or not isinstance(sources, Sequence):
        raise ImageError("sources must be a list of images, one per source")
    if len(sources) < 2:
        raise ImageError(f"fusion needs at least 2 source images, got {len(sources)}")


def size_mismatch(images: Sequence[np.ndarray]) -> SizeMismatchError | None:
    """The error for the first source whose size differs from source 1's, or None when all agree."""
    h, w = images[0].shape[:2]
    for i, img in enumerate(images[1:], start=2):
        if img.shape[:2] != (h, w):
            return SizeMismatchError(i, (img.shape[1], img.shape[0]), (w, h))
    return None


def check_sources(sources: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate N >= 2 equally sized images into float32 [0,1] grey (H,W) / colour (H,W,3) arrays."""
    check_source_count(sources)
    # from_array validates dtype/range/NaN and turns R = G = B images into grey. No copy of a valid float32
    # source: the colour rule only reads them (a 24 MP colour source is 288 MB).
    imgs = [from_array(s, label=f"source {i + 1}", copy=False) for i, s in enumerate(sources)]
    mismatch = size_mismatch(imgs)
    if mismatch is not None:
        raise mismatch
    return imgs


def combine_chroma(planes: Sequence[np.ndarray]) -> np.ndarray:
    """IFCNN's chroma fusion: weight each Cb (or Cr) plane by |C - 0.5|; 0.5 where all are neutral."""
    # Accumulated plane by plane: no (N, H, W) stack for long exposure brackets.
    num = np.zeros(np.shape(planes[0]), np.float32)
    total = np.zeros_like(num)
    for plane in planes:
        c = np.asarray(plane, dtype=np.float32)
        weight = np.abs(c - 0.5)
        num += c * weight
        total += weight
    out = np.full(total.shape, 0.5, dtype=np.float32)
    np.divide(num, total, out=out, where=total > 0)
    return out


def _call_fuse(fn: FuseFn, imgs: list[np.ndarray], shape: tuple[int, ...], what: str) -> np.ndarray:
    """Run a fusion callable and insist on a finite image of the expected shape, clipped to [0,1]."""
    out = np.asarray(fn(imgs), dtype=np.float32)
    if out.ndim == 3 and out.shape[2] == 1 and len(shape) == 2:
        out = out[..., 0]
    if out.shape != shape:
        raise ValueError(f"{what} returned shape {out.shape}, expected {shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"{what} returned NaN or inf values")
    # In place: the result is the fusion's own (a 24 MP colour copy is 288 MB); if a method returned one of its
    # sources, that is in [0, 1] already and stays as it was.
    return np.clip(out, 0.0, 1.0, out=out if out.flags.writeable else None)


def fuse_with_colour_rule(
    sources: Sequence[np.ndarray],
    fuse_luma: FuseFn,
    *,
    fuse_rgb: FuseFn | None = None,
    colour_mode: ColourMode = "auto",
) -> np.ndarray:
    """Fuse N >= 2 sources with a luma fusion function under the colour rule (module docstring)."""
    if colour_mode not in COLOUR_MODES:
        raise ValueError(f"colour_mode must be one of {COLOUR_MODES}, got {colour_mode!r}")
    imgs = check_sources(sources)
    hw = imgs[0].shape[:2]
    # check_sources already collapsed grey-looking RGB, so 3 dims means colour here.
    colour_idx = [i for i, im in enumerate(imgs) if im.ndim == 3]

    if colour_mode == "grey" or not colour_idx:
        lumas = [bt601_luma(im) if im.ndim == 3 else im for im in imgs]
        return _call_fuse(fuse_luma, lumas, hw, "fuse_luma")

    if fuse_rgb is not None and len(colour_idx) == len(imgs):
        return _call_fuse(fuse_rgb, imgs, hw + (3,), "fuse_rgb")

    lumas = []
    cbs: list[np.ndarray] = []
    crs: list[np.ndarray] = []
    for im in imgs:
        if im.ndim == 3:
            y, cb, cr = rgb_to_ycbcr(im)
            lumas.append(y)
            cbs.append(cb)
            crs.append(cr)
        else:
            lumas.append(im)
    fused_y = _call_fuse(fuse_luma, lumas, hw, "fuse_luma")
    if len(cbs) == 1:
        # Exactly one colour source: its chroma is copied, not re-weighted, so it is kept exactly.
        cb, cr = cbs[0], crs[0]
    else:
        cb, cr = combine_chroma(cbs), combine_chroma(crs)
    return ycbcr_to_rgb(fused_y, cb, cr)
