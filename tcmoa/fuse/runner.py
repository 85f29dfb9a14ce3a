"""One pairwise fusion of two image tensors by the model, within a memory budget and a token budget.

Two ways to run a pair, chosen by its size:

- **Whole or tiled** (an image whose padded size fits the token budget, a model without an output
  head, or `token_pixels=None`): the model sees the image at its own resolution, in overlapping tiles
  of at most `tile_size`² pixels blended without seams (tcmoa.fuse.tiling).
- **Bounded token path** (a model with an output head, an image larger than the token budget): the
  token path (ViT blocks and TC-MoA modules, nearly all of the cost) runs once on a copy of the pair
  scaled down to at most `token_pixels`, and the output head mixes the full-resolution sources with the
  prompts and token logits it made. The head resamples every token-grid term smoothly to each band
  anyway (tcmoa/model/fusion_head.py), so nothing needs tokens at the output's resolution. Its cost is
  then nearly independent of the image's size, and the fusion's decisions (prompts, routing, the base
  band's tone) are those of a token path at the same scale as the app's working resolution, so a
  full-resolution result looks like the working-resolution one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..model.moa import PromptControl
from ..device import release_freed_memory
from ..imaging import resize_to
from ..model.fusion_head import pad_to
from ..model.network import FusionOutput, TCMoA, normalize
from ..tasks import Route
from .tiling import DEFAULT_TILE_BATCH, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, TileBlender, plan_tiles

# The token path's default budget: 1024² px, the app's working resolution, so the page's image is the
# model's whole computation and the full-resolution download, scaled down, matches it (mean 1.3 grey
# levels, p95 <= 7 at 12 MP; at 512² the p95 reached 11). Down to 512² every eval set's Qabf, VIF and
# MEF-SSIM stay within 0.0025 of the unbounded path's (docs/BENCHMARKS.md, "Token budget").
DEFAULT_TOKEN_PIXELS = 1024 * 1024
Progress = Callable[[float], None]
PixelTrust = tuple["torch.Tensor | None", "torch.Tensor | None"]  # per source: None, or (..., 1, H, W) in [0, 1]


def map_trust(trust: PixelTrust, fn: Callable[[torch.Tensor], torch.Tensor]) -> PixelTrust:
    """`fn` applied to each source's trust map that is given."""
    a, b = trust
    return (None if a is None else fn(a), None if b is None else fn(b))


@dataclass
class FusionMaps:
    """Prompt and routing maps of one pairwise fusion, on the token grid (one cell = pixel_patch px)."""

    module_names: list[str]  # "encoder 1", ..., "decoder 1"
    prompt_a: np.ndarray  # (M, h, w) dominant-intensity prompt of source A per module
    prompt_b: np.ndarray  # (M, h, w)
    gates: np.ndarray  # (M, E, h, w) routing weight of each expert
    image_size: tuple[int, int]  # (H, W) of the fused image
    pixel_patch: float  # image pixels per map cell along each side (more than a token when the path is bounded)
    # (H, W) weight of source A: the pyramid head's base-band weight (or the per-pixel weight of the
    # source-weight head); None for the official decoder, which has no such weight.
    source_weight: np.ndarray | None = None

    def expert_share(self) -> np.ndarray:
        """(M, E): each expert's share of the routing mass over all tokens (rows sum to 1)."""
        mass = self.gates.sum(axis=(2, 3))
        return mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)

    def source_a_share(self) -> np.ndarray:
        """(h, w): p_A / (p_A + p_B) averaged over modules; > 0.5 where source A dominates."""
        return (self.prompt_a / np.maximum(self.prompt_a + self.prompt_b, 1e-6)).mean(axis=0)

    def at_image_size(self, grid: np.ndarray) -> np.ndarray:
        """Upsample a (..., h, w) map to the image size: each cell becomes its block of pixels."""
        rows = np.minimum((np.arange(self.image_size[0]) / self.pixel_patch).astype(int), grid.shape[-2] - 1)
        cols = np.minimum((np.arange(self.image_size[1]) / self.pixel_patch).astype(int), grid.shape[-1] - 1)
        return grid[..., rows[:, None], cols[None, :]]


def scaled_copy(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1, C, H, W) CPU image shrunk to `size` by area averaging, as tcmoa.imaging.resize_to shrinks the app's
    working image (so a full-resolution fusion's token path sees what the working resolution's does)."""
    pixels = x[0].permute(1, 2, 0).cpu().numpy()  # (H, W, C): the source's own layout, no copy
    small = resize_to(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, size)
    return torch.from_numpy(small).reshape(*size, -1).permute(2, 0, 1)[None]


def round_up(side: int, multiple: int) -> int:
    """`side` rounded up to a whole `multiple`."""
    return -(-side // multiple) * multiple


def token_path_size(height: int, width: int, budget: int, multiple: int) -> tuple[int, int]:
    """The largest size of the image's aspect whose sides, padded to `multiple`, hold at most `budget` px."""
    scale = min(1.0, math.sqrt(budget / (height * width)))
    while True:
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        if round_up(size[0], multiple) * round_up(size[1], multiple) <= budget or size == (1, 1):
            return size
        scale *= 0.99


@dataclass(frozen=True)
class RunSettings:
    """How the runner fits a pair to the model: precision, padding and tiles (the token budget comes per call)."""

    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast dtype of the token path)
    fit: str = "pad"  # "pad" (mirror-pad, crop back) or "resize" (the official path)
    tile_size: int = DEFAULT_TILE_SIZE  # tiles hold at most tile_size² px
    tile_overlap: int = DEFAULT_TILE_OVERLAP  # px between neighbouring tiles, blended by a raised-cosine ramp
    tile_batch: int = DEFAULT_TILE_BATCH  # tiles per model call, within the same pixel budget


class PairRunner:
    """Runs the model on one pair of [0, 1] tensors (C, H, W), C = 3 (RGB) or 1 (grey), of any size.

    A model with an output head mixes the sources as they are (grey stays one channel, a third of the
    work at full resolution); the token path always sees RGB (grey replicated, like PIL convert('RGB')).
    """

    def __init__(self, model: TCMoA, device: torch.device, settings: RunSettings):
        self.model, self.device, self.settings = model, device, settings

    def token_size(self, height: int, width: int, token_pixels: int | None) -> tuple[int, int] | None:
        """The size the token path sees the whole image at under the budget `token_pixels` (the image's own
        when it fits); None when the image runs whole or tiled at its own resolution instead."""
        s, m = self.settings, self.model.config.size_multiple
        if self.model.fusion_head is None:
            return None
        if token_pixels is None:  # unbounded: whole while it fits one tile
            fits = round_up(height, m) * round_up(width, m) <= s.tile_size ** 2
            return (height, width) if fits else None
        return token_path_size(height, width, token_pixels, m)

    def fuse(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl, want_maps: bool = False,
             progress: Progress | None = None, token_pixels: int | None = DEFAULT_TOKEN_PIXELS,
             trust: PixelTrust = (None, None)) -> tuple[torch.Tensor, FusionMaps | None]:
        """A pair (C, H, W) -> fused (C', H, W) in [0, 1] (C' = C with an output head, else 3), and the maps.

        `progress(fraction)` is called as the work proceeds (it may raise to stop); `token_pixels` is the
        token path's budget (None: unbounded); `trust` per source None or (1, H, W) in [0, 1], where it may
        be used (the output head honours it; a model without one cannot, and fuses what it is given).
        """
        release_freed_memory(a.shape[1] * a.shape[2])  # what reading and ordering the sources freed, before this pair's peak
        small = self.token_size(a.shape[1], a.shape[2], token_pixels)
        if small is not None:
            fused, maps = self._fuse_whole(a, b, small, route, control, want_maps, trust)
        else:
            fused, maps = self._fuse_tiled(a, b, route, control, want_maps, progress, trust)
        if progress is not None:
            progress(1.0)
        fused = fused.clamp_(0, 1)  # in place: at 24 MP a copy is 288 MB
        # clamp_ has made every inf 0 or 1 and left NaN, which the sum carries: no full-size temporaries
        # (torch.isfinite makes several, 0.4 GB at 24 MP), and a sum of values in [0, 1] cannot overflow.
        if not torch.isfinite(fused.sum()):
            raise RuntimeError("the model produced NaN values; the checkpoint may be corrupt")
        release_freed_memory(a.shape[1] * a.shape[2])  # the head's strips, before the caller's next steps
        return fused, maps

    # ----------------------------------------------------------------------------- whole, token path bounded
    def _fuse_whole(self, a: torch.Tensor, b: torch.Tensor, small: tuple[int, int], route: Route,
                    control: PromptControl, want_maps: bool, trust: PixelTrust) -> tuple[torch.Tensor, FusionMaps | None]:
        """The token path on the pair at `small` (its own size, or scaled down to the budget), the head on
        the pair at full resolution."""
        _, h, w = a.shape
        m = self.model.config.size_multiple
        padded = (round_up(small[0], m), round_up(small[1], m))
        full_a, full_b = a[None].to(self.device), b[None].to(self.device)  # views on the CPU: no copy
        token_pair = torch.cat([x if small == (h, w) else scaled_copy(x, small).to(self.device) for x in (a[None], b[None])])
        token_pair = pad_to(normalize(token_pair.expand(-1, 3, -1, -1)), padded[0] - small[0], padded[1] - small[1])
        small_a, small_b = token_pair[:1], token_pair[1:]
        # The token grid spans the full-resolution sources padded by the same share of their size; the
        # head mirrors them up to that span itself, strip by strip, rather than padding a copy here.
        span = (max(h, round(padded[0] * h / small[0])), max(w, round(padded[1] * w / small[1])))
        with self._precision():
            weights = self.model.route_weights(route, self.device)
            tokens, grid, enc, dec = self.model.token_path(small_a, small_b, weights, control)
            del small_a, small_b, token_pair
            release_freed_memory(h * w)  # the token path's activations, before the full-resolution head
            kept = map_trust(trust, lambda t: t[None].to(self.device))
            out = self.model.apply_head(tokens, grid, enc, dec, weights, control, (full_a, full_b), span, kept)
        fused = out.fused[0]
        if not want_maps:
            return fused, None
        cell = self.model.config.pixel_patch
        cells = (-(-small[0] // int(cell)), -(-small[1] // int(cell)))  # token cells covering the image
        prompts, gates = (x[0, :, :cells[0], :cells[1]] for x in self._token_maps(out))
        weight = None if out.source_weight is None else self._at_span(out.source_weight, span)[0, 0, :h, :w]
        return fused, self._maps(prompts, gates, (h, w), cell * h / small[0], weight)

    # ----------------------------------------------------------------------------- tiled
    def _fuse_tiled(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl,
                    want_maps: bool, progress: Progress | None, trust: PixelTrust = (None, None)
                    ) -> tuple[torch.Tensor, FusionMaps | None]:
        """Overlapping tiles at the image's own resolution: official models, and unbounded large images."""
        _, h, w = a.shape
        s, cfg = self.settings, self.model.config
        budget = s.tile_size ** 2
        tiles = plan_tiles(h, w, budget, s.tile_overlap, int(cfg.pixel_patch), cfg.size_multiple)
        per_call = max(1, min(s.tile_batch, budget // tiles[0].padded_area(cfg.size_multiple)))  # within budget
        n_mod = len(self.model.encoder_moa) + len(self.model.decoder_moa)
        token_scale = 1.0 / cfg.pixel_patch
        channels = a.shape[0] if self.model.fusion_head is not None else 3
        image = TileBlender(channels, h, w, 1.0, s.tile_overlap, self.device)
        prompts = TileBlender(2 * n_mod, h, w, token_scale, s.tile_overlap, self.device) if want_maps else None
        gates = TileBlender(n_mod * cfg.num_experts, h, w, token_scale, s.tile_overlap, self.device) \
            if want_maps else None
        weight: TileBlender | None = None  # created with the first tile that has a source weight
        for i in range(0, len(tiles), per_call):
            batch = tiles[i:i + per_call]
            # Crops of the sources, not a copy of the whole pair: only the tiles of one call are in memory.
            crop_a, crop_b = (torch.stack([x[:, t.top:t.top + t.height, t.left:t.left + t.width] for t in batch])
                              .to(self.device) for x in (a, b))
            kept = map_trust(trust, lambda x: torch.stack([x[:, t.top:t.top + t.height, t.left:t.left + t.width]
                                                           for t in batch]).to(self.device))  # noqa: B023
            fused, p, g, wa = self._run_tile(crop_a, crop_b, route, control, want_maps, kept)
            for k, tile in enumerate(batch):
                image.add(tile, fused[k])
                if prompts is not None and gates is not None and p is not None and g is not None:  # want_maps
                    prompts.add(tile, p[k])
                    gates.add(tile, g[k])
                if wa is not None:
                    weight = weight or TileBlender(1, h, w, 1.0, s.tile_overlap, self.device)
                    weight.add(tile, wa[k])
            if progress is not None:
                progress(min(i + per_call, len(tiles)) / len(tiles))
        if prompts is None or gates is None:  # no maps wanted
            return image.result(), None
        return image.result(), self._maps(prompts.result(), gates.result(), (h, w), cfg.pixel_patch,
                                          None if weight is None else weight.result()[0])

    def _run_tile(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl, want_maps: bool,
                  trust: PixelTrust = (None, None)
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """A batch of equal tiles (B, C, h, w) -> fused (B, C', h, w), prompts (B, 2M, th, tw), gates, weight of A.

        Without maps the last three are None; the weight (B, 1, h, w) is None for models without one.
        """
        _, _, h, w = a.shape
        m = self.model.config.size_multiple
        pad_h, pad_w = -h % m, -w % m
        resize = self.settings.fit == "resize"
        rgb_a, rgb_b = (normalize(x.expand(-1, 3, -1, -1)) for x in (a, b))
        if resize:
            size = (h + pad_h, w + pad_w)
            rgb_a, rgb_b = (F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (rgb_a, rgb_b))
            fit = partial(F.interpolate, size=size, mode="bilinear", align_corners=False)
        else:
            rgb_a, rgb_b = pad_to(rgb_a, pad_h, pad_w), pad_to(rgb_b, pad_h, pad_w)
            fit = partial(pad_to, pad_h=pad_h, pad_w=pad_w)
        pixels = None if self.model.fusion_head is None else (fit(a), fit(b))
        kept = map_trust(trust, fit)
        out = self._forward(rgb_a, rgb_b, route, control, pixels, kept)

        def to_tile(x: torch.Tensor) -> torch.Tensor:  # a pixel field of the padded/resized input -> the tile's
            if resize:
                return F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            return x[:, :, :h, :w].float()

        fused = to_tile(out.fused)
        if not want_maps:
            return fused, None, None, None
        weight = None if out.source_weight is None else to_tile(self._at_span(out.source_weight, a.shape[-2:]))
        cell = self.model.config.pixel_patch
        cells = (-(-h // int(cell)), -(-w // int(cell)))  # token cells covering the tile
        prompts, gates = self._token_maps(out)
        if resize:  # the grid spans the stretched tile: resample it onto the tile's cells
            return fused, F.interpolate(prompts, size=cells, mode="nearest"), F.interpolate(gates, size=cells,
                                                                                            mode="nearest"), weight
        return fused, prompts[:, :, :cells[0], :cells[1]], gates[:, :, :cells[0], :cells[1]], weight

    # ----------------------------------------------------------------------------- shared steps
    def _precision(self) -> torch.autocast:
        """Autocast to the configured precision (a no-op for fp32)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.settings.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _forward(self, a: torch.Tensor, b: torch.Tensor, route: Route, control: PromptControl,
                 pixels: tuple[torch.Tensor, torch.Tensor] | None = None, trust: PixelTrust = (None, None)
                 ) -> FusionOutput:
        """The model on normalised inputs, under the configured precision."""
        with self._precision():
            return self.model(a, b, route, control, pixels=pixels, trust=trust if pixels is not None else (None, None))

    @staticmethod
    def _at_span(weight: torch.Tensor, span: Sequence[int]) -> torch.Tensor:
        """The head's weight of A (B, 1, h, w), at its own resolution, resampled over the span it covers."""
        if tuple(weight.shape[-2:]) == tuple(span):
            return weight.float()
        return F.interpolate(weight.float(), size=tuple(span), mode="bilinear", align_corners=False)

    @staticmethod
    def _token_maps(out: FusionOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (B, 2M, gh, gw), p_A and p_B of each module interleaved, and gates (B, M*E, gh, gw)."""
        gh, gw = out.token_grid
        bsz = out.fused.shape[0]
        p = torch.cat([torch.cat([t.prompt_a, t.prompt_b], -1) for t in out.traces], -1)  # (B, N, 2M)
        g = torch.cat([t.gates.reshape(bsz, gh * gw, -1) for t in out.traces], -1)  # (B, N, M*E)
        return p.transpose(1, 2).reshape(bsz, -1, gh, gw).float(), g.transpose(1, 2).reshape(bsz, -1, gh, gw).float()

    def _maps(self, prompts: torch.Tensor, gates: torch.Tensor, size: tuple[int, int], cell: float,
              weight: torch.Tensor | None) -> FusionMaps:
        """FusionMaps from prompt (2M, h, w) and gate (M*E, h, w) fields on the token grid."""
        n_enc, n_dec = len(self.model.encoder_moa), len(self.model.decoder_moa)
        names = [f"encoder {j + 1}" for j in range(n_enc)] + [f"decoder {j + 1}" for j in range(n_dec)]
        pm = prompts.cpu().numpy()
        gm = gates.cpu().numpy().reshape(n_enc + n_dec, self.model.config.num_experts, *pm.shape[-2:])
        return FusionMaps(names, pm[0::2], pm[1::2], gm, size, cell,
                          None if weight is None else weight.cpu().numpy())
