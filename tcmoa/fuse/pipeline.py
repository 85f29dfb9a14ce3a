"""From image files or arrays to a fused image of the sources' size (any size, mode and count).

Steps: read and validate every source -> put order-free sets (exposure brackets, focal stacks)
in a canonical order -> apply the colour rule (tcmoa.colour) -> fuse pairs with the model
(tcmoa.fuse.runner: the token path within its budget, the output at full resolution) -> fold
N > 2 sources pairwise.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..colour import check_source_count, fuse_with_colour_rule, size_mismatch
from ..device import pick_device
from ..imaging import DEFAULT_MAX_PIXELS, ImageError, ImageSource, read_image, resize_to, bt601_luma
from ..model.network import TCMoA
from ..model.moa import ALPHA_RANGE, BETA_RANGE, PromptControl
from ..tasks import Preset, Route, get_preset
from ..align import ALIGN_MODES, Alignment
from .prepare import Prepared, prepare_sources
from .runner import DEFAULT_TOKEN_PIXELS, FusionMaps, PairRunner, RunSettings
from .runtime import prepare, resolve
from .tiling import DEFAULT_TILE_BATCH, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# How an image is brought to whole attention windows: mirror-pad and crop back (ours), or the
# official resize path (bilinear to the next multiple, then back), which an official checkpoint
# needs to reproduce the official numbers: its absolute positions follow the token grid.
FITS = ("pad", "resize")
RESIZE_POLICIES = (None, "first")
# Alignment unless asked otherwise: docs/BENCHMARKS.md ("Registration") measures what auto does to
# registered pairs and what it costs.
DEFAULT_ALIGN = "off"
COLOURS = ("auto", "grey", "rgb")  # the colour rule, a forced grey result, or the official RGB path


def parse_route(text: str | None, routers: Sequence[str]) -> Route | None:
    """A router as text: empty -> None (the task's own), 'mff' -> 'mff', 'vif=0.7,mff=0.3' -> weights in router order.

    Names are matched in any case, as task names are; each router is weighted at most once.
    """
    text = (text or "").strip()
    if not text:
        return None
    known = f"this model has {', '.join(routers)}"
    by_name = {name.lower(): name for name in routers}
    if "=" not in text:
        if text.lower() not in by_name:
            raise ValueError(f"unknown router {text!r}; {known}")
        return by_name[text.lower()]
    weights = dict.fromkeys(routers, 0.0)
    given: list[str] = []
    for part in text.split(","):
        name, _, value = (x.strip() for x in part.partition("="))
        if name.lower() not in by_name:
            raise ValueError(f"unknown router {name!r}; {known}")
        router = by_name[name.lower()]
        if router in given:
            raise ValueError(f"router {router!r} is weighted twice in {text!r}")
        given.append(router)
        try:
            weights[router] = float(value)
        except ValueError:
            raise ValueError(f"router weight {value!r} is not a number") from None
    values = list(weights.values())
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise ValueError(f"router weights must be finite and non-negative, with a positive sum; got {text!r}")
    return values


@dataclass(frozen=True)
class FuseSettings:
    """What one fusion was asked for, validated and resolved for the model (Fuser.settings makes it)."""

    preset: Preset
    alpha: float  # in ALPHA_RANGE; the preset's default unless given
    beta: float  # in BETA_RANGE
    route: Route  # the router used: the preset's own on this model, or the one (or blend) asked for
    colour: str = "auto"  # one of COLOURS
    resize: str | None = None  # one of RESIZE_POLICIES
    # The token path's budget in pixels (tcmoa.fuse.runner; None: unbounded): the Fuser's unless asked
    # for (the app's slider previews ask for a smaller one).
    token_pixels: int | None = None
    align: str = DEFAULT_ALIGN  # one of tcmoa.align.ALIGN_MODES (tcmoa.fuse.prepare)
    reference: int | None = None  # 0-based source whose frame the output keeps; None: the preset's choice
    crop: bool = False  # crop to the area every aligned source covers
    deghost: bool = True  # exposure stacks, when aligning: moving content taken from the reference exposure
    check_alignment: bool = False  # align="off": look whether the sources seem misaligned (a note; ~0.1 s)


@dataclass
class FusionResult:
    """A fused image with what was decided on the way: readers take these, never recompute them."""

    image: np.ndarray  # float32 [0, 1]; (H, W) grey or (H, W, 3) RGB
    settings: FuseSettings
    sources: list[np.ndarray]  # as fused: read, size-matched or aligned, de-ghosted; in the given order
    order: list[int]  # indices into `sources` in the order they were fused (source A first)
    seconds: float
    device: str
    precision: str
    model_name: str
    maps: FusionMaps | None = None
    # The pair the maps describe, as the model saw it: (A, B) of the last pairwise step. With two
    # sources that is (sources[order[0]], sources[order[1]]) in the fused colour space; with N > 2, A
    # is the running result of the earlier steps.
    mapped_pair: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    runtime: str = "eager"  # how the token path ran (tcmoa.fuse.runtime): "eager" or "int8"
    alignment: Alignment | None = None  # every source's transform, confidence and note (align != "off")
    motion: list[np.ndarray] | None = None  # exposure stacks: per source, where moving content was replaced


def preparation_key(settings: FuseSettings) -> tuple:
    """What a `Prepared` depends on besides the sources: the settings that change reading and alignment."""
    return (settings.preset.key, settings.resize, settings.align, settings.reference, settings.crop, settings.deghost,
            settings.check_alignment)


def as_tensor(plane: np.ndarray | None) -> torch.Tensor | None:
    """A (H, W) float map as a (1, H, W) float32 tensor sharing its memory where it can; None stays None."""
    return None if plane is None else torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None]


def canonical_order(images: Sequence[np.ndarray], task: Preset) -> list[int]:
    """The fusion order: the user's for role-based tasks, content-defined for order-free ones.

    Exposure sets go brightest first (source A is the over-exposed role), focal stacks sharpest
    first, so shuffling the uploads gives the same result.
    """
    if not task.order_free:
        return list(range(len(images)))
    grey = [bt601_luma(im) if im.ndim == 3 else im for im in images]
    if task.key == "mef":
        keys = [-float(g.mean()) for g in grey]
    else:
        keys = [-float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()) for g in grey]
    return sorted(range(len(images)), key=lambda i: (keys[i], i))


def match_sizes(images: Sequence[np.ndarray], resize: str | None) -> tuple[list[np.ndarray], list[str]]:
    """The sources at source 1's size (resize='first') with a note per resized one; else SizeMismatchError."""
    mismatch = size_mismatch(images)
    if resize != "first" and mismatch is not None:
        raise mismatch
    out, notes = list(images), []
    h, w = out[0].shape[:2]
    for i, im in enumerate(out[1:], start=2):
        if im.shape[:2] != (h, w):
            note = f"source {i} resized from {im.shape[1]}x{im.shape[0]} to {w}x{h}"
            if abs(im.shape[1] * h - w * im.shape[0]) > 0.01 * w * im.shape[0]:  # another aspect ratio
                note += (f", stretched from {aspect(im.shape[1], im.shape[0])} to {aspect(w, h)}; if they come from "
                         "different cameras, align them instead (align='auto')")
            notes.append(note)
            out[i - 1] = resize_to(im, (h, w))
    return out, notes


def aspect(width: int, height: int) -> str:
    """An aspect ratio in words: '4:3', '16:9', else '1.33:1'."""
    for a, b in ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (5, 4), (4, 5), (7, 8), (8, 7)):
        if abs(width * b - height * a) <= 0.01 * height * a:
            return f"{a}:{b}"
    return f"{width / height:.2f}:1"


class Fuser:
    """Runs a TC-MoA model on real images; safe to share between threads (inference only)."""

    def __init__(self, model: TCMoA, device: str | torch.device | None = None, precision: str = "auto",
                 tile_size: int = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 tile_batch: int = DEFAULT_TILE_BATCH, max_pixels: int = DEFAULT_MAX_PIXELS, fit: str = "pad",
                 token_pixels: int | None = DEFAULT_TOKEN_PIXELS, runtime: str = "auto"):
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.fit = fit
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = pick_device(device)
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        if precision != "fp32" and self.device.type == "cpu":
            raise ValueError("reduced precision (bf16/fp16) is for GPUs; use precision='fp32' on the CPU")
        self.precision = precision
        self.model = model.to(self.device).eval()
        m = model.config.size_multiple
        if tile_size < m:
            raise ValueError(f"tile_size must be at least {m} px for this model")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0 px, got {tile_overlap}")
        # The memory budget: tiles (and each batch of tiles) hold at most tile_size² pixels.
        self.tile_size = tile_size // m * m
        patch = int(model.config.pixel_patch)
        # At most half a tile, so even the smallest tile advances by whole tokens (tiles of 64..128 px
        # with the default 128-px overlap could not advance at all).
        self.tile_overlap = min(int(tile_overlap) // patch, self.tile_size // 2 // patch) * patch
        if max_pixels < 1 or tile_batch < 1:
            raise ValueError(f"max_pixels and tile_batch must be at least 1, got {max_pixels} and {tile_batch}")
        self.tile_batch, self.max_pixels = tile_batch, max_pixels
        self.token_pixels: int | None = None
        self.token_pixels = self._token_budget(token_pixels)
        self.runtime = resolve(model, runtime, self.device)  # "auto" decided: what every fusion here runs
        self.runner = PairRunner(prepare(self.model, self.runtime, self.device), self.device, RunSettings(
            precision, fit, self.tile_size, self.tile_overlap, tile_batch))

    # ----------------------------------------------------------------------------- public
    def settings(self, task: str | Preset = "vif", *, alpha: float | None = None, beta: float | None = None,
                 route: Route | None = None, colour: str = "auto", resize: str | None = None,
                 token_pixels: int | None = None, align: str = DEFAULT_ALIGN, reference: int | None = None,
                 crop: bool = False, deghost: bool = True, check_alignment: bool = False) -> FuseSettings:
        """Validate a request and resolve it for this model: None takes the preset's α, β and router, and this
        Fuser's token budget."""
        preset = task if isinstance(task, Preset) else get_preset(task)
        if colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
        route = preset.route_for(self.model.config.routers) if route is None else route
        self.model.route_weights(route)  # validate before any work
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {', '.join(ALIGN_MODES)}, got {align!r}")
        if reference is not None and (isinstance(reference, bool) or not isinstance(reference, int) or reference < 0):
            raise ValueError(f"reference must be a source index (0 for the first), got {reference!r}")
        return FuseSettings(preset, ALPHA_RANGE.check(preset.alpha if alpha is None else alpha),
                            BETA_RANGE.check(preset.beta if beta is None else beta), route, colour, resize,
                            self._token_budget(token_pixels), align, reference, bool(crop), bool(deghost),
                            bool(check_alignment))

    def prepare(self, sources: Sequence[ImageSource], settings: FuseSettings) -> Prepared:
        """Read the sources and put them into one frame as `settings` asks (tcmoa.fuse.prepare).

        This is the part of a fusion that α, β and the router do not change: the app keeps it and fuses
        the same sources again at other knobs with `fuse(..., prepared=...)`.
        """
        images, notes = self._read_all(sources, settings.resize, match=settings.align == "off")
        if settings.reference is not None and settings.reference >= len(images):
            raise ValueError(f"reference {settings.reference} is not a source index: there are {len(images)} sources "
                             f"(0 to {len(images) - 1})")
        prepared = prepare_sources(images, settings.preset, settings.align, settings.reference, settings.crop,
                                   settings.deghost, settings.check_alignment)
        prepared.notes[:0] = notes
        prepared.key = preparation_key(settings)
        return prepared

    def fuse(self, sources: Sequence[ImageSource], task: str | Preset | FuseSettings = "vif", *,
             alpha: float | None = None, beta: float | None = None, route: Route | None = None,
             colour: str = "auto", resize: str | None = None, align: str = DEFAULT_ALIGN, reference: int | None = None,
             crop: bool = False, deghost: bool = True, check_alignment: bool = False, maps: bool = False,
             progress: Callable[[float], None] | None = None, prepared: Prepared | None = None) -> FusionResult:
        """Fuse N >= 2 sources (paths, bytes, PIL images or arrays) into one image.

        `task` is a preset name (any case) with the knobs as keywords, or settings made by `settings`.
        `align` puts the sources into one frame first (tcmoa.fuse.prepare). `progress`, when given, is
        called with the fraction done as the work proceeds; an exception it raises stops the fusion
        there (the app's cancel button). `prepared`: what `prepare` gave for these sources and settings,
        to skip reading and aligning them again.
        """
        start = time.perf_counter()
        if isinstance(task, FuseSettings):
            given = (alpha, beta, route, colour, resize, align, reference, crop, deghost, check_alignment)
            if given != (None, None, None, "auto", None, DEFAULT_ALIGN, None, False, True, False):
                raise ValueError("give the knobs either in FuseSettings or as keywords, not both")
            settings = task
        else:
            settings = self.settings(task, alpha=alpha, beta=beta, route=route, colour=colour, resize=resize,
                                     align=align, reference=reference, crop=crop, deghost=deghost,
                                     check_alignment=check_alignment)
        if prepared is None:
            prepared = self.prepare(sources, settings)
        elif prepared.key != preparation_key(settings):
            raise ValueError("prepared= was made for other sources' settings (task, resize, align, reference, crop or "
                             "deghost differ); prepare them again")
        image, order, captured = self._fuse_all(prepared, settings, maps, progress)
        notes = list(prepared.notes)
        if len(order) > 2:
            notes.append(f"{len(order)} sources fused pairwise in order {[i + 1 for i in order]}"
                         + ("; the maps show the last step" if maps else ""))
        return FusionResult(image=image, settings=settings, sources=prepared.images, order=order,
                            seconds=time.perf_counter() - start, device=str(self.device), precision=self.precision,
                            model_name=str(self.model.info.get("name", self.model.config.name)),
                            maps=captured[0] if captured else None, mapped_pair=captured[1] if captured else None,
                            notes=notes, runtime=self.runtime, alignment=prepared.alignment, motion=prepared.motion)

    def _fuse_all(self, prepared: Prepared, settings: FuseSettings, maps: bool,
                  progress: Callable[[float], None] | None
                  ) -> tuple[np.ndarray, list[int], tuple[FusionMaps, tuple[np.ndarray, np.ndarray]] | None]:
        """The prepared sources fused pairwise in their canonical order under the colour rule; the order and
        the last step's maps with the pair they describe."""
        order = canonical_order(prepared.images, settings.preset)
        trust = [prepared.trust[i] for i in order]
        control = PromptControl(settings.alpha, settings.beta)
        captured: list[tuple[FusionMaps, tuple[np.ndarray, np.ndarray]]] = []

        def fold(planes: list[np.ndarray]) -> np.ndarray:
            result, kept = planes[0], trust[0]
            for k, nxt in enumerate(planes[1:]):
                step = None if progress is None else (lambda done, k=k: progress((k + done) / (len(planes) - 1)))
                pair = (result, nxt)
                nxt_trust = trust[k + 1]
                result, step_maps = self._fuse_pair(result, nxt, settings, control, maps, step, (kept, nxt_trust))
                # the running result holds real pixels wherever either of its sources did
                kept = None if kept is None or nxt_trust is None else np.maximum(kept, nxt_trust)
                captured[:] = [(step_maps, pair)] if step_maps is not None else []
            return result

        ordered = [prepared.images[i] for i in order]
        if settings.colour == "rgb":  # the official path: every source as RGB (grey replicated), RGB out
            image = fold([im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=-1) for im in ordered])
        else:
            image = fuse_with_colour_rule(ordered, fold, fuse_rgb=fold,
                                          colour_mode="grey" if settings.colour == "grey" else "auto")
        return image, order, (captured[0] if captured else None)

    # ----------------------------------------------------------------------------- steps
    def _token_budget(self, token_pixels: int | None) -> int | None:
        """A token budget checked for this model (None: this Fuser's own)."""
        if token_pixels is None:
            return self.token_pixels
        m = self.model.config.size_multiple
        if isinstance(token_pixels, bool) or not isinstance(token_pixels, int) or token_pixels < m * m:
            raise ValueError(f"token_pixels must be a whole number of pixels holding one {m}x{m} window "
                             f"({m * m:,} px), got {token_pixels!r}")
        return token_pixels

    def _read_all(self, sources: Sequence[ImageSource], resize: str | None, match: bool = True
                  ) -> tuple[list[np.ndarray], list[str]]:
        """Every source read and checked; of one size (resize="first" resizes, else SizeMismatchError) when `match`
        (alignment puts sources of any size into one frame instead)."""
        check_source_count(sources)
        images: list[np.ndarray] = []
        read_notes: list[str] = []
        for i, src in enumerate(sources):
            try:
                images.append(read_image(src, max_pixels=self.max_pixels, notes=read_notes))
            except ImageError as exc:
                raise ImageError(f"source {i + 1}: {exc}") from None
        if not match:
            return images, read_notes
        matched, notes = match_sizes(images, resize)
        return matched, read_notes + notes

    def _fuse_pair(self, a: np.ndarray, b: np.ndarray, settings: FuseSettings, control: PromptControl,
                   want_maps: bool, progress: Callable[[float], None] | None = None,
                   trust: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
                   ) -> tuple[np.ndarray, FusionMaps | None]:
        """Two same-size float images, both grey or both RGB -> fused image of that kind, maps."""
        grey = a.ndim == 2
        ta, tb = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (a, b))
        ta, tb = (x[None] if grey else x.permute(2, 0, 1) for x in (ta, tb))  # (C, H, W)
        with torch.inference_mode():
            kept = (as_tensor(trust[0]), as_tensor(trust[1]))
            fused, maps = self.runner.fuse(ta, tb, settings.route, control, want_maps, progress, settings.token_pixels,
                                           kept)
        out = fused.permute(1, 2, 0).cpu().numpy()
        if grey:  # a head keeps one channel; the official decoder gives RGB
            out = out[..., 0] if out.shape[-1] == 1 else bt601_luma(out)
        return out, maps
