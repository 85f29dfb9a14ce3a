"""From image files or arrays to a fused image of the sources' size (any size, mode and count).

Steps: read and validate every source -> put order-free sets (exposure brackets, focal stacks)
in a canonical order -> apply the colour rule (tcmoa.colour) -> fuse pairs with the model, in
overlapping tiles when the image exceeds the tile budget -> fold N > 2 sources pairwise.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..colour import check_source_count, fuse_with_colour_rule, size_mismatch
from ..device import pick_device
from ..imaging import DEFAULT_MAX_PIXELS, ImageError, ImageSource, read_image, resize_to, bt601_luma
from ..model.network import TCMoA, normalize
from ..model.moa import ALPHA_RANGE, BETA_RANGE, PromptControl
from ..tasks import Preset, Route, get_preset
from .tiling import DEFAULT_TILE_SIZE, TileBlender, plan_tiles

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# How an image is brought to whole attention windows: mirror-pad and crop back (ours), or the
# official resize path (bilinear to the next multiple, then back), which an official checkpoint
# needs to reproduce the official numbers: its absolute positions follow the token grid.
FITS = ("pad", "resize")
RESIZE_POLICIES = (None, "first")
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


@dataclass
class FusionMaps:
    """Prompt and routing maps of one pairwise fusion, on the token grid (one cell = pixel_patch px)."""

    module_names: list[str]  # "encoder 1", ..., "decoder 1"
    prompt_a: np.ndarray  # (M, h, w) dominant-intensity prompt of source A per module
    prompt_b: np.ndarray  # (M, h, w)
    gates: np.ndarray  # (M, E, h, w) routing weight of each expert
    image_size: tuple[int, int]  # (H, W) of the fused image
    pixel_patch: int  # image pixels per map cell along each side
    # (H, W) weight of source A per pixel, F = w A + (1 - w) B + r: models with the source-weight
    # head (compact, tcmoa.model.fusion_head); None for the official decoder, which has no such weight.
    source_weight: np.ndarray | None = None

    def expert_share(self) -> np.ndarray:
        """(M, E): each expert's share of the routing mass over all tokens (rows sum to 1)."""
        mass = self.gates.sum(axis=(2, 3))
        return mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)

    def source_a_share(self) -> np.ndarray:
        """(h, w): p_A / (p_A + p_B) averaged over modules; > 0.5 where source A dominates."""
        return (self.prompt_a / np.maximum(self.prompt_a + self.prompt_b, 1e-6)).mean(axis=0)

    def at_image_size(self, grid: np.ndarray) -> np.ndarray:
        """Upsample a (..., h, w) map to the image size: each token becomes its pixel block."""
        up = np.repeat(np.repeat(grid, self.pixel_patch, axis=-2), self.pixel_patch, axis=-1)
        return up[..., :self.image_size[0], :self.image_size[1]]


@dataclass(frozen=True)
class FuseSettings:
    """What one fusion was asked for, validated and resolved for the model (Fuser.settings makes it)."""

    preset: Preset
    alpha: float  # in ALPHA_RANGE; the preset's default unless given
    beta: float  # in BETA_RANGE
    route: Route  # the router used: the preset's own on this model, or the one (or blend) asked for
    colour: str = "auto"  # one of COLOURS
    resize: str | None = None  # one of RESIZE_POLICIES


@dataclass
class FusionResult:
    """A fused image with what was decided on the way: readers take these, never recompute them."""

    image: np.ndarray  # float32 [0, 1]; (H, W) grey or (H, W, 3) RGB
    settings: FuseSettings
    sources: list[np.ndarray]  # as read and size-matched (resize='first'), in the given order
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
            notes.append(f"source {i} resized from {im.shape[1]}x{im.shape[0]} to {w}x{h}")
            out[i - 1] = resize_to(im, (h, w))
    return out, notes


class Fuser:
    """Runs a TC-MoA model on real images; safe to share between threads (inference only)."""

    def __init__(self, model: TCMoA, device: str | torch.device | None = None, precision: str = "auto",
                 tile_size: int = DEFAULT_TILE_SIZE, tile_overlap: int = 128, tile_batch: int = 4,
                 max_pixels: int = DEFAULT_MAX_PIXELS, fit: str = "pad"):
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

    # ----------------------------------------------------------------------------- public
    def settings(self, task: str | Preset = "vif", *, alpha: float | None = None, beta: float | None = None,
                 route: Route | None = None, colour: str = "auto", resize: str | None = None) -> FuseSettings:
        """Validate a request and resolve it for this model: None takes the preset's α, β and router."""
        preset = task if isinstance(task, Preset) else get_preset(task)
        if colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
        route = preset.route_for(self.model.config.routers) if route is None else route
        self.model.route_weights(route)  # validate before any work
        return FuseSettings(preset, ALPHA_RANGE.check(preset.alpha if alpha is None else alpha),
                            BETA_RANGE.check(preset.beta if beta is None else beta), route, colour, resize)

    def fuse(self, sources: Sequence[ImageSource], task: str | Preset | FuseSettings = "vif", *,
             alpha: float | None = None, beta: float | None = None, route: Route | None = None,
             colour: str = "auto", resize: str | None = None, maps: bool = False,
             progress: Callable[[float], None] | None = None) -> FusionResult:
        """Fuse N >= 2 sources (paths, bytes, PIL images or arrays) into one image.

        `task` is a preset name (any case) with the knobs as keywords, or settings made by `settings`.
        `progress`, when given, is called with the fraction done after every batch of tiles; an
        exception it raises stops the fusion there (the app's cancel button).
        """
        start = time.perf_counter()
        if isinstance(task, FuseSettings):
            if (alpha, beta, route, colour, resize) != (None, None, None, "auto", None):
                raise ValueError("give the knobs either in FuseSettings or as keywords, not both")
            settings = task
        else:
            settings = self.settings(task, alpha=alpha, beta=beta, route=route, colour=colour, resize=resize)
        images, notes = self._read_all(sources, settings.resize)
        order = canonical_order(images, settings.preset)
        control = PromptControl(settings.alpha, settings.beta)
        captured: list[tuple[FusionMaps, tuple[np.ndarray, np.ndarray]]] = []

        def fold(planes: list[np.ndarray]) -> np.ndarray:
            result = planes[0]
            for k, nxt in enumerate(planes[1:]):
                step = None if progress is None else (lambda done, k=k: progress((k + done) / (len(planes) - 1)))
                pair = (result, nxt)
                result, step_maps = self._fuse_pair(result, nxt, settings.route, control, maps, step)
                captured[:] = [(step_maps, pair)] if step_maps is not None else []
            return result

        ordered = [images[i] for i in order]
        if settings.colour == "rgb":  # the official path: every source as RGB (grey replicated), RGB out
            image = fold([im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=-1) for im in ordered])
        else:
            image = fuse_with_colour_rule(ordered, fold, fuse_rgb=fold,
                                          colour_mode="grey" if settings.colour == "grey" else "auto")
        if len(images) > 2:
            notes.append(f"{len(images)} sources fused pairwise in order {[i + 1 for i in order]}"
                         + ("; the maps show the last step" if maps else ""))
        return FusionResult(image=image, settings=settings, sources=images, order=order,
                            seconds=time.perf_counter() - start, device=str(self.device), precision=self.precision,
                            model_name=str(self.model.info.get("name", self.model.config.name)),
                            maps=captured[0][0] if captured else None,
                            mapped_pair=captured[0][1] if captured else None, notes=notes)

    # ----------------------------------------------------------------------------- steps
    def _read_all(self, sources: Sequence[ImageSource], resize: str | None) -> tuple[list[np.ndarray], list[str]]:
        check_source_count(sources)
        images: list[np.ndarray] = []
        read_notes: list[str] = []
        for i, src in enumerate(sources):
            try:
                images.append(read_image(src, max_pixels=self.max_pixels, notes=read_notes))
            except ImageError as exc:
                raise ImageError(f"source {i + 1}: {exc}") from None
        matched, notes = match_sizes(images, resize)
        return matched, read_notes + notes

    def _fuse_pair(self, a: np.ndarray, b: np.ndarray, route: Route, control: PromptControl,
                   want_maps: bool, progress: Callable[[float], None] | None = None
                   ) -> tuple[np.ndarray, FusionMaps | None]:
        """Two same-size float images, both grey or both RGB -> fused image of that kind, maps."""
        grey = a.ndim == 2
        ta, tb = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (a, b))
        if grey:  # the model sees grey sources as replicated RGB, like PIL convert('RGB')
            ta, tb = ta[None].expand(3, -1, -1), tb[None].expand(3, -1, -1)
        else:
            ta, tb = ta.permute(2, 0, 1), tb.permute(2, 0, 1)
        fused, maps = self.fuse_tensors(ta, tb, route, control, want_maps, progress)
        out = fused.permute(1, 2, 0).cpu().numpy()
        return (bt601_luma(out) if grey else out), maps

    @torch.inference_mode()
    def fuse_tensors(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl,
                     want_maps: bool = False, progress: Callable[[float], None] | None = None
                     ) -> tuple[torch.Tensor, FusionMaps | None]:
        """[0, 1] RGB (3, H, W) pair of any size -> fused (3, H, W), tiled within the budget.

        `progress(fraction)` is called after each batch of tiles (it may raise to stop).
        """
        _, h, w = a.shape
        cfg = self.model.config
        budget = self.tile_size ** 2
        tiles = plan_tiles(h, w, budget, self.tile_overlap, int(cfg.pixel_patch), cfg.size_multiple)
        per_call = max(1, min(self.tile_batch, budget // tiles[0].padded_area(cfg.size_multiple)))  # within budget
        image = TileBlender(3, h, w, 1.0, self.tile_overlap, self.device)
        n_mod = len(self.model.encoder_moa) + len(self.model.decoder_moa)
        token_scale = 1.0 / cfg.pixel_patch
        prompts = TileBlender(2 * n_mod, h, w, token_scale, self.tile_overlap, self.device) if want_maps else None
        gates = TileBlender(n_mod * cfg.num_experts, h, w, token_scale, self.tile_overlap, self.device) \
            if want_maps else None
        weight: TileBlender | None = None  # created with the first tile that has a source weight
        for i in range(0, len(tiles), per_call):
            batch = tiles[i:i + per_call]
            # Crops of the sources, not a copy of the whole pair: only the tiles of one call are in memory.
            crop_a, crop_b = (torch.stack([x[:, t.top:t.top + t.height, t.left:t.left + t.width] for t in batch])
                              .to(self.device) for x in (a, b))
            fused, p, g, wa = self._run_model(crop_a, crop_b, route, control, want_maps)
            for k, tile in enumerate(batch):
                image.add(tile, fused[k])
                if prompts is not None and gates is not None and p is not None and g is not None:  # want_maps
                    prompts.add(tile, p[k])
                    gates.add(tile, g[k])
                if wa is not None:
                    weight = weight or TileBlender(1, h, w, 1.0, self.tile_overlap, self.device)
                    weight.add(tile, wa[k])
            if progress is not None:
                progress(min(i + per_call, len(tiles)) / len(tiles))
        fused = image.result().clamp(0, 1)
        if not torch.isfinite(fused).all():
            raise RuntimeError("the model produced NaN/inf values; the checkpoint may be corrupt")
        maps = None
        if prompts is not None and gates is not None:  # want_maps
            pm = prompts.result().cpu().numpy()
            names = [f"encoder {j + 1}" for j in range(len(self.model.encoder_moa))] + \
                    [f"decoder {j + 1}" for j in range(len(self.model.decoder_moa))]
            maps = FusionMaps(names, pm[0::2], pm[1::2],
                              gates.result().cpu().numpy().reshape(n_mod, cfg.num_experts, *pm.shape[-2:]), (h, w),
                              int(cfg.pixel_patch), None if weight is None else weight.result()[0].cpu().numpy())
        return fused, maps

    def _run_model(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl,
                   want_maps: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """A batch of equal tiles (B, 3, h, w) -> fused (B, 3, h, w), prompts (B, 2M, th, tw), gates, weight of A.

        Without maps the last three are None; the weight (B, 1, h, w) is None for models without one.
        """
        _, _, h, w = a.shape
        m = self.model.config.size_multiple
        pad_h, pad_w = -h % m, -w % m
        if self.fit == "resize":
            size = (h + pad_h, w + pad_w)
            a, b = (F.interpolate(normalize(x), size=size, mode="bilinear", align_corners=False) for x in (a, b))
        else:
            a, b = (pad_to(normalize(x), pad_h, pad_w) for x in (a, b))
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.model(a, b, route, control)
        def to_tile(x: torch.Tensor) -> torch.Tensor:  # a pixel field of the padded/resized input -> the tile's
            if self.fit == "resize":
                return F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            return x[:, :, :h, :w].float()

        fused = to_tile(out.fused)
        if not want_maps:
            return fused, None, None, None
        weight = None if out.source_weight is None else to_tile(out.source_weight)
        gh, gw = out.token_grid
        cell = self.model.config.pixel_patch
        cells = (-(-h // int(cell)), -(-w // int(cell)))  # token cells covering the tile
        bsz = a.shape[0]
        p = torch.cat([torch.cat([t.prompt_a, t.prompt_b], -1) for t in out.traces], -1)  # (B, N, 2M)
        g = torch.cat([t.gates.reshape(bsz, gh * gw, -1) for t in out.traces], -1)  # (B, N, M*E)
        grids = [x.transpose(1, 2).reshape(bsz, -1, gh, gw).float() for x in (p, g)]
        if self.fit == "resize":  # the grid spans the stretched tile: resample it onto the tile's cells
            grids = [F.interpolate(x, size=cells, mode="nearest") for x in grids]
        else:
            grids = [x[:, :, :cells[0], :cells[1]] for x in grids]
        return fused, grids[0], grids[1], weight


def pad_to(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad (B, C, H, W) at the bottom/right by mirroring (replicating where the image is too small)."""
    if not pad_h and not pad_w:
        return x
    mode = "reflect" if pad_h < x.shape[2] and pad_w < x.shape[3] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
