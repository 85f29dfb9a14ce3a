"""What one request may ask of the shared server: its sources checked and read, and the resolution fused.

Cheap checks come first (count, file sizes, the pixels of every header), so an oversized request is
refused before anything is decoded. Every request is then fused at a bounded resolution (the
working resolution, or a smaller preview while a slider moves); the full resolution is the explicit
"Full resolution" action and `/fuse_full`, which run in a lane of their own (demo.events).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
from PIL import Image

from tcmoa import ImageError, get_preset, read_image
from tcmoa.align import ALIGN_MODES, default_reference
from tcmoa.colour import SizeMismatchError
from tcmoa.fuse.pipeline import FuseSettings, match_sizes
from tcmoa.imaging import ImageSource, resize_to
from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE, KnobRange
from tcmoa.tasks import Preset, Route

from .engine import DEFAULT_ALIGN, MAX_SOURCES, MIN_SIDE, Engine

RESIZE_HINT = "set “Align sources” to auto if they come from different cameras, or tick “Resize sources to source 1's size”"
ROUTER_WEIGHT = KnobRange("router weight", 0.0, 1.0, 0.05)


class InputError(ValueError):
    """A problem with what the user gave; its message is shown as is."""


class TooFewSources(InputError):
    """Fewer than two sources: on the page a step on the way in (it says which slot to fill), not an error."""


class KnobError(InputError):
    """α or β outside the library's range (a typed value): refused, and the page keeps what it shows."""


def check_knobs(alpha: object, beta: object) -> tuple[float, float]:
    """(α, β) within the library's ranges, else KnobError with the library's message."""
    try:
        return ALPHA_RANGE.check(alpha), BETA_RANGE.check(beta)
    except ValueError as exc:
        raise KnobError(str(exc)) from None


def present(slots: Sequence[object]) -> list[object]:
    """The filled source slots, in order."""
    return [s for s in slots if s is not None and not (isinstance(s, str) and not s)]


def header_size(source: object) -> tuple[int, int]:
    """(width, height) of a source from its header alone ((0, 0) when unreadable: read_image then says why)."""
    if isinstance(source, np.ndarray):
        return (int(source.shape[1]), int(source.shape[0])) if source.ndim >= 2 else (0, 0)
    try:
        with Image.open(source) as im:  # type: ignore[arg-type]
            return im.size
    except Exception:  # noqa: BLE001 (any unreadable file is explained by read_image)
        return 0, 0


def upload_name(source: object, message: str) -> str:
    """A message naming the upload, not the server's temporary path."""
    if isinstance(source, (str, os.PathLike)):
        return message.replace(f"'{source}'", f"'{os.path.basename(source)}'")
    return message


def read_sources(engine: Engine, sources: Sequence[object], notes: list[str] | None = None) -> list[np.ndarray]:
    """Check and read the sources: count, file sizes, pixels each and together, decodability.

    `notes` receives what reading decided (e.g. 12-bit data in a 16-bit file, scaled), naming the upload.
    """
    if len(sources) > MAX_SOURCES:
        raise InputError(f"this demo fuses at most {MAX_SOURCES} sources at once, got {len(sources)}")
    total = 0
    for i, src in enumerate(sources, start=1):
        if isinstance(src, (str, os.PathLike)) and os.path.isfile(src):
            size_mb = os.path.getsize(src) / 2**20
            if size_mb > engine.max_file_mb:
                raise InputError(f"source {i}: the file is {size_mb:.0f} MB, above this demo's limit of "
                                 f"{engine.max_file_mb:.0f} MB; downscale or re-encode it")
        w, h = header_size(src)
        if w * h > engine.max_pixels:
            raise InputError(f"source {i}: image is {w}x{h} = {w * h / 1e6:.1f} MP, above this demo's limit of "
                             f"{engine.max_pixels / 1e6:.1f} MP per source; downscale it")
        total += w * h
    if total > engine.request_pixels:
        raise InputError(f"the {len(sources)} sources hold {total / 1e6:.1f} MP together, above this demo's "
                         f"limit of {engine.request_pixels / 1e6:.0f} MP per request; downscale them or fuse fewer")
    images = []
    for i, src in enumerate(sources, start=1):
        read_notes: list[str] = []
        try:
            # any other type than read_image's is refused there, with an ImageError
            images.append(read_image(cast(ImageSource, src), max_pixels=engine.max_pixels, notes=read_notes))
        except ImageError as exc:
            message = upload_name(src, str(exc)).replace(" (or raise max_pixels)", "")
            raise InputError(f"source {i}: {message}") from None
        if notes is not None:
            notes.extend(f"source {i}: {upload_name(src, note)}" for note in read_notes)
    return images


def user_message(exc: Exception, resize_hint: str = RESIZE_HINT) -> str:
    """The message to show for an input problem, pointing at this entry point's resize control."""
    return exc.explain(resize_hint) if isinstance(exc, SizeMismatchError) else str(exc)


def blend_route(engine: Engine, weights: Sequence[object]) -> list[float]:
    """The user's router blend, validated: one weight in [0, 1] per router, a positive sum."""
    w = [ROUTER_WEIGHT.check(v) for v in weights]
    if len(w) != len(engine.router_names) or sum(w) <= 0:
        raise InputError("router blending needs a positive weight on at least one router")
    return w


@dataclass(frozen=True)
class AlignOptions:
    """How the sources are put into one frame, as the page or /fuse asks (checked by `check_align`)."""

    align: object = DEFAULT_ALIGN  # one of tcmoa.align.ALIGN_MODES, any case
    reference: object = None  # the source (1-based) whose frame the output keeps; None or 0: the task's choice
    crop: object = False  # crop to the area every source covers
    deghost: object = True  # exposure stacks: moving content taken from the reference exposure


@dataclass(frozen=True)
class CheckedAlign:
    """AlignOptions as Fuser.settings takes them."""

    align: str
    reference: int | None  # 0-based; None: the task's choice (tcmoa.align.default_reference)
    crop: bool
    deghost: bool


def check_align(options: AlignOptions, count: int) -> CheckedAlign:
    """The options checked for `count` sources, else InputError naming the valid values."""
    align = options.align.strip().lower() if isinstance(options.align, str) else options.align
    if align not in ALIGN_MODES:
        raise InputError(f"align must be one of {', '.join(ALIGN_MODES)}, got {options.align!r}")
    reference = options.reference
    if isinstance(reference, float) and reference.is_integer():
        reference = int(reference)  # a JSON or Gradio number: 2.0 is source 2
    if reference is not None and (isinstance(reference, bool) or not isinstance(reference, int)
                                  or not 0 <= reference <= count):
        raise InputError(f"reference must be a source number from 1 to {count} (0 or none: the task's choice), "
                         f"got {options.reference!r}")
    return CheckedAlign(str(align), reference - 1 if reference else None, strict_bool(options.crop, "crop"),
                        strict_bool(options.deghost, "deghost"))


@dataclass(frozen=True)
class Request:
    """A checked request: the task, the Fuser.fuse settings, and the sources (full resolution; one size unless
    aligned)."""

    preset: Preset
    settings: FuseSettings  # validated and resolved for the model by Fuser.settings
    images: tuple[np.ndarray, ...]
    notes: tuple[str, ...]  # e.g. "source 2 resized from 48x32 to 96x64"
    reference: int = 0  # the source whose frame (and size) the output keeps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the reference source: the output's size (before any crop)."""
        h, w = self.images[self.reference].shape[:2]
        return w, h


def prepare(engine: Engine, slots: Sequence[object], task: object, alpha: object, beta: object, *,
            route: Route | None = None, resize: object = False, align: AlignOptions = AlignOptions(),
            what: str = "fusion") -> Request:
    """Validate a request, cheap checks first: task, count, α, β, alignment, then the sources (headers, then read,
    one size unless aligned), then the settings as the model resolves them (its router unless one is given)."""
    try:
        preset = get_preset(str(task))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    sources = present(slots)
    if len(sources) < 2:
        raise TooFewSources(f"{what} needs at least 2 source images, got {len(sources)} "
                         f"({' and '.join(preset.roles)}: upload them or click an example)")
    alpha_value, beta_value = check_knobs(alpha, beta)
    framing = check_align(align, len(sources))
    notes: list[str] = []
    images = read_sources(engine, sources, notes)
    if framing.align == "off":
        images, resized = match_sizes(images, "first" if resize else None)
        notes += resized
    for k, image in enumerate(images, start=1):
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise InputError(f"source {k} is {w}x{h} px; this demo needs at least {MIN_SIDE} px on each side "
                             "(the smallest size all its metrics are defined for)")
    # the frame the output keeps, as the alignment stage (and de-ghosting) will choose it
    reference = default_reference(images, preset) if framing.reference is None else framing.reference
    # route None: the preset's own router
    # check_alignment: with alignment off the page still says when the sources look misaligned (once per
    # source set: the preparation is kept)
    settings = engine.fuser.settings(preset, alpha=alpha_value, beta=beta_value, route=route, align=framing.align,
                                     reference=framing.reference, crop=framing.crop, deghost=framing.deghost,
                                     check_alignment=True)
    return Request(preset, settings, tuple(images), tuple(notes), reference)


def scaled_to(images: Sequence[np.ndarray], pixels: int, reference: int = 0) -> list[np.ndarray]:
    """Images scaled by one factor (so any transform between them keeps its kind), the reference to at most
    `pixels`; never a source below MIN_SIDE on its short side."""
    h, w = images[reference].shape[:2]
    shortest = min(min(im.shape[:2]) for im in images)
    scale = max(min(1.0, math.sqrt(pixels / (h * w))), min(1.0, MIN_SIDE / shortest))
    if scale >= 1.0:
        return list(images)
    # rounded down: within the budget
    return [resize_to(im, (max(1, int(im.shape[0] * scale + 1e-6)), max(1, int(im.shape[1] * scale + 1e-6))))
            for im in images]


def strict_bool(value: object, name: str) -> bool:
    """True/False, 1/0 or their strings; anything else is refused (bool('false') is True)."""
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InputError(f"{name} must be true or false, got {value!r}")
