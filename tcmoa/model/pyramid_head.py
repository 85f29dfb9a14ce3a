"""The shipped output head: one weight of source A per Laplacian band, computed in strips of rows.

`PyramidHead` (config `fusion_output="pyramid"`) mixes the sources' Laplacian pyramids band by band
(the formula is at the class). It follows the `OutputHead` interface of tcmoa/model/fusion_head.py.

Large images are computed in horizontal strips, so memory stays bounded and every intermediate stays
small enough to be reused rather than freshly mapped (fresh 50 MB tensors cost more in page faults
than in arithmetic). Only the two finest levels (full and half resolution, 15/16 of the pixels) are
local: they are computed per strip, each strip with a halo of rows wider than their reach, so a strip's
core rows equal the whole image's exactly. Everything from the quarter resolution down (the coarser
bands, the base, the base's own pyramid) is computed once for the whole image from the strips'
quarter-resolution Gaussian levels (tcmoa/model/strips.py). An image of at most STRIP_PIXELS is one
strip: the plain formula.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import release_freed_memory
from ..ycbcr import BT601_WEIGHTS
from . import pyramid
from .fusion_head import PROMPT_GAIN, PromptMargin, Trust, honour
from .pyramid import level_sizes
from .strips import FINE_LEVELS, STRIP_PIXELS, Strip, plan_strips, span_rows

BETA_GAIN = 8.0  # logit per unit of the 2-beta shift, at every level
# Initial gains of the energy and clip terms. A band twice as strong in A (log ratio 0.69) gives
# logit 2.8, w = 0.94: a soft max-abs that still blends near-ties; a fully clipped source against an
# unclipped one gives logit 4, w = 0.98: it gives way almost entirely.
INITIAL_ENERGY_GAIN = 4.0
INITIAL_CLIP_GAIN = 4.0
LUMA = BT601_WEIGHTS  # the weights are chosen on luminance and applied to every channel
ENERGY_FLOOR = 2e-3  # keeps log(energy) finite in flat regions (about half a grey level of band-pass)
CLIP_HIGH, CLIP_LOW, CLIP_SOFTNESS = 0.95, 0.02, 0.01  # "clipped" luma: >= ~242/255 or <= ~5/255
def luma(img: Tensor) -> Tensor:
    """BT.601 luma (B, 1, H, W) of an RGB batch (B, 3, H, W), in float32; a grey batch (B, 1, H, W) is its own."""
    if img.shape[1] == 1:
        return img.float()
    return (img.float() * img.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1, keepdim=True)


def clipped(y: Tensor) -> Tensor:
    """Soft indicator (B, 1, H, W) in [0, 1] of saturated (white) or crushed (black) luma y."""
    # In place on the fresh differences (fewer full-size allocations; autograd keeps each sigmoid's output)
    return (y - CLIP_HIGH).div_(CLIP_SOFTNESS).sigmoid_() + (CLIP_LOW - y).div_(CLIP_SOFTNESS / 2).sigmoid_()


def band_energy(band_luma: Tensor) -> Tensor:
    """Local band-pass energy: the blurred magnitude of one pyramid level's luma, (B, 1, h, w)."""
    return pyramid.blur(band_luma.abs())


def to_level(grid_map: Tensor, size: Sequence[int]) -> Tensor:
    """A token-grid map (B, K, h, w) resampled smoothly to a pyramid level's size (B, K, *size).

    Bilinear (antialiased when shrinking), so no token edge becomes a step in the image.
    """
    if tuple(grid_map.shape[-2:]) == tuple(size):
        return grid_map
    return F.interpolate(grid_map, size=size, mode="bilinear", align_corners=False, antialias=True)


def to_level_rows(grid_map: Tensor, size: Sequence[int], top: int, rows: int) -> Tensor:
    """Rows [top, top + rows) of `to_level(grid_map, size)` for a level at least as large as the grid,
    computed without the rest (upsampling: bilinear, which antialiasing leaves as it is)."""
    gh = grid_map.shape[-2]
    y = (torch.arange(top, top + rows, dtype=torch.float64) + 0.5) * (gh / size[0]) - 0.5
    y = y.clamp(min=0)
    y0 = y.floor().long().clamp(max=gh - 1)
    y1 = (y0 + 1).clamp(max=gh - 1)
    wy = (y - y0).float().view(-1, 1).to(grid_map.device)
    band = grid_map.index_select(-2, y0.to(grid_map.device)) * (1 - wy) + grid_map.index_select(-2, y1.to(grid_map.device)) * wy
    if band.shape[-1] == size[1]:
        return band
    return F.interpolate(band, size=(rows, int(size[1])), mode="bilinear", align_corners=False)


Sources = tuple[tuple[Tensor, "Tensor | None"], tuple[Tensor, "Tensor | None"]]  # (pixels, trust) of A and of B


def side_maps(rows: Tensor, trust: Tensor | None, strip: "Strip", span: Sequence[int], with_trust: bool) -> Tensor:
    """A strip's per-pixel side information (B, 1 or 2, h, w): channel 0 the `clipped` share of its luma,
    channel 1 (`with_trust`: when either source has a trust map) its trust, 1 where none is given."""
    clip = clipped(luma(rows))
    if not with_trust:
        return clip
    kept = torch.ones_like(clip) if trust is None else span_rows(trust.float(), strip.top, strip.bottom, span)
    return torch.cat([clip, kept], dim=1)


def trust_of(side: Tensor) -> Tensor | None:
    """The trust channel of side maps, or None (trusted everywhere) when they carry none."""
    return side[:, 1:] if side.shape[1] > 1 else None


@dataclass(frozen=True)
class LevelPlan:
    """The head's levels for one image: `count` pyramid levels (band-pass ones and the base), the first
    `extra` of them finer than the learned ones, then the base's own pyramid."""

    count: int
    extra: int
    sizes: list[tuple[int, int]]  # every level's (h, w), the base's own pyramid's from index count - 1

    def learned(self, level: int) -> int:
        """The learned level whose parameters level `level` uses (the extra fine levels use level 0's)."""
        return max(0, level - self.extra)


@dataclass(frozen=True)
class RouteGains:
    """The head's per-level gains for one route (its routers' rows blended by the route weights)."""

    detail: Tensor  # (L-1,) energy gain of the band-pass levels
    clip: Tensor  # (L,)
    prompt: Tensor  # (L,) positive
    coarse: Tensor | None  # (coarse_levels,) energy gain of the base's own band-pass levels
    mix: Tensor  # () 0: the base is one blend, 1: blended band by band on its own pyramid


@dataclass(frozen=True)
class TokenMaps:
    """The token-grid part of each level's logit: token logit + prompt gain * alpha (p_A - p_B) + BETA_GAIN * 2 beta.

    The per-region part of the margin keeps the learned prompt gains; beta's uniform shift gets
    BETA_GAIN at every level, so beta moves every band alike.
    """

    logits: Tensor  # (B, L, h, w) learned, one per learned level
    regional: Tensor  # (B, 1, h, w) alpha (p_A - p_B), averaged over the modules
    beta_logit: float  # BETA_GAIN * 2 beta
    prompt_gain: Tensor  # (L,)
    levels: int

    def term(self, lvl: int, size: Sequence[int], rows: tuple[int, int] | None = None) -> Tensor:
        """Level `lvl`'s term at its `size` (B, 1, *size), or only rows (top, count) of it; levels past the
        learned ones (the base's own pyramid) share the base's logit and gain."""
        k = min(lvl, self.levels - 1)
        maps = torch.cat([self.logits[:, k: k + 1], self.regional.float()], dim=1)  # (B, 2, h, w)
        maps = to_level(maps, size) if rows is None else to_level_rows(maps, size, *rows)
        return maps[:, :1] + self.prompt_gain[k] * maps[:, 1:] + self.beta_logit


class PyramidHead(nn.Module):
    """Decoded tokens -> one weight of source A per Laplacian band, applied to the sources' pyramids.

    Both sources (in [0, 1]) are split into `levels` bands: `levels - 1` band-pass levels and a
    low-pass base (tcmoa/model/pyramid.py). Level l of the result is w_l * A_l + (1 - w_l) * B_l, with

        w_l = sigmoid(detail_gain_l * log(E_A / E_B)          # larger local band energy wins (band-pass levels)
                      + clip_gain_l * (C_B - C_A)             # a clipped source gives way to the other
                      + prompt_gain_l * alpha * margin_l      # the TC-MoA prompts: mean p_A - p_B
                      + BETA_GAIN * 2 * beta                  # beta (Eq. 8's shift): 16 beta at every level
                      + token_logit_l)                        # learned, from the decoded tokens

    E is `band_energy`, C the fraction of `clipped` pixels at that level, and the token-grid terms are
    resampled bilinearly to each level (`to_level`). The three gains are per router, blended by the
    route weights; each router's initial base clip gain and coarse switch are in tcmoa.tasks.ROUTERS,
    with the reasons (glare must not hide the infrared; an exposure's highlights are wanted). At
    initialisation (token logits zero) this is a classical fusion: details chosen by local energy (a soft
    max-abs), base averaged except where a source is clipped, dominance set by the prompts. The prompt
    gains are kept positive, so alpha spreads the prompts' per-region preference across every band;
    beta, which shifts every prompt margin by 2 beta, moves every band's logit by the same 16 beta (at
    the learned gains alone it would barely move the band-pass levels, whose weights the energy term
    dominates, and SSIM towards A would not rise at every step).

    Coarse levels (`coarse_levels` > 0, config `pyramid_coarse_levels`; 5 in the shipped model). One
    per-pixel blend of the 1/16 base, with a weight that moves at the token scale, mixes the sources'
    large-scale tones and flattens them (exposure fusions then have less large-scale contrast than
    Mertens' and the Laplacian pyramid's, which decide every scale). So the base gets its own pyramid
    (band-pass levels at 1/16 ... 1/256 and a base), blended level by level with the base's logit
    resampled to each (smooth at coarse scales), plus `coarse_gain * trust * log(E_A / E_B)` on its
    band-pass levels, trust = (1 - max(C_A, C_B))^2: where a source is clipped the energy term fades,
    because a blown-out region's rim is the strongest coarse structure and the other source's
    large-scale contrast laid on the base overflows [0, 1] there. `coarse_mix`, a fixed per-router switch
    saved with the model, lerps between the single blend (0) and this (1), per router as
    tcmoa.tasks.ROUTERS sets it.
    """

    def __init__(self, dim: int, routers: int, levels: int = 5, base_clip_gain: Sequence[float] | None = None,
                 coarse_levels: int = 0, coarse_on: Sequence[bool] | None = None, patch: float = 8.0):
        super().__init__()
        if levels <= FINE_LEVELS:
            raise ValueError(f"the pyramid head needs more than {FINE_LEVELS} levels, got {levels}")
        self.levels, self.coarse_levels = levels, coarse_levels
        self.patch = patch  # pixels per token at the token path's resolution
        self.strip_pixels = STRIP_PIXELS  # not saved: how the computation is split, not what it computes
        self.token_logits = nn.Linear(dim, levels)
        nn.init.zeros_(self.token_logits.weight)
        nn.init.zeros_(self.token_logits.bias)
        # The gains are per router (rows), blended by the route weights like the routers themselves:
        # what a clipped source means differs by task (glare in VIF; highlights MEF-SSIM wants kept).
        self.detail_gain = nn.Parameter(torch.full((routers, levels - 1), INITIAL_ENERGY_GAIN))
        clip = torch.full((routers, levels), INITIAL_CLIP_GAIN)
        if base_clip_gain is not None:
            clip[:, -1] = torch.tensor(list(base_clip_gain), dtype=torch.float32)
        self.clip_gain = nn.Parameter(clip)
        # log of the prompt gains: PROMPT_GAIN on the base, 1 on the band-pass levels.
        self.log_prompt_gain = nn.Parameter(
            torch.tensor([0.0] * (levels - 1) + [math.log(PROMPT_GAIN)]).repeat(routers, 1))
        # Energy gain of the base's own band-pass levels (1/16, 1/32, ... of the image); none when 0 levels,
        # so models saved without them load unchanged.
        self.coarse_gain: nn.Parameter | None = None
        self.coarse_mix: Tensor | None
        self.register_buffer("coarse_mix", None)
        if coarse_levels:
            on = torch.tensor([bool(x) for x in coarse_on] if coarse_on is not None else [True] * routers).float()
            self.coarse_gain = nn.Parameter((on * INITIAL_ENERGY_GAIN).view(routers, 1).repeat(1, coarse_levels))
            # Per router, a fixed switch saved with the model (not learned: a clamped lerp weight would
            # sit at 0 or 1 with no gradient): 1 where the coarse levels are on, 0 where the base stays
            # one blend.
            self.register_buffer("coarse_mix", on)

    # ----------------------------------------------------------------------------- the formula
    def extra_levels(self, span: Sequence[int], grid: tuple[int, int]) -> int:
        """Finest levels added when the head's image is larger than the token path's (2^k times: k levels).

        They keep the base and everything the tokens decide at the same scale of the scene as a fusion
        at the token path's resolution (the app's working image), so a full-resolution result, scaled
        down, looks like the working one; the added levels are finer detail, chosen like level 0.
        """
        scale = span[0] / (grid[0] * self.patch)
        return max(0, round(math.log2(scale))) if scale > 1 else 0

    def gains(self, route: Tensor) -> RouteGains:
        """The per-level gains of a route (T,) of normalised router weights."""
        route = route.float()
        return RouteGains(route @ self.detail_gain, route @ self.clip_gain, route @ self.log_prompt_gain.exp(),
                          None if self.coarse_gain is None else route @ self.coarse_gain,
                          route @ self.coarse_mix if self.coarse_mix is not None else route.new_zeros(()))

    def token_maps(self, tokens: Tensor, grid: tuple[int, int], margin: PromptMargin, gains: RouteGains) -> "TokenMaps":
        """The token-grid terms of every level's logit, to be resampled to each level (`TokenMaps.term`)."""
        logits = self.token_logits(tokens.float()).transpose(1, 2).reshape(-1, self.levels, *grid)  # (B, L, h, w)
        return TokenMaps(logits, margin.regional, BETA_GAIN * margin.shift, gains.prompt, self.levels)

    def level_weight(self, lvl: int, token_term: Tensor, band_a: Tensor, band_b: Tensor, clip_a: Tensor,
                     clip_b: Tensor, gains: RouteGains, low_pass: bool) -> Tensor:
        """The weight of A (B, 1, h, w) at learned level `lvl` (>= levels: the base's own pyramid) from its terms."""
        k = min(lvl, self.levels - 1)
        z = token_term + gains.clip[k] * (clip_b - clip_a)
        if low_pass:  # the base, or the base's own base
            return torch.sigmoid(z)
        energy = band_energy(luma(band_a)).add(ENERGY_FLOOR).log() - band_energy(luma(band_b)).add(ENERGY_FLOOR).log()
        if lvl < self.levels - 1:  # the larger local energy wins
            return torch.sigmoid(z + gains.detail[lvl] * energy)
        # A coarse level (the base's own band-pass, 1/16 and coarser). There a clipped region's rim is the
        # strongest structure, and the other source's large-scale contrast laid on the base overflows
        # [0, 1]: where either source is clipped the energy term fades to the base's weight.
        assert gains.coarse is not None
        trust = (1 - torch.maximum(clip_a, clip_b).clamp(max=1)) ** 2
        return torch.sigmoid(z + gains.coarse[lvl - self.levels] * trust * energy)

    # ----------------------------------------------------------------------------- whole image
    def forward(self, tokens: Tensor, grid: tuple[int, int], a: Tensor, b: Tensor, margin: PromptMargin,
                route: Tensor, span: Sequence[int] | None = None, trust: Trust = (None, None)) -> tuple[Tensor, Tensor]:
        """The `OutputHead` interface; the weight returned is the base band's weight of A at the base's
        resolution (1/16): the coarse dominance the prompts steer.

        `trust`: per source, None or a (B, 1, H, W) map in [0, 1] of where it may be used: 0 where it
        holds no pixels of its own (outside a warped source) or disagrees with the reference (moving
        content in an exposure stack). At every band the weights give way to the trusted source
        (`honour`), so nothing there comes from an untrusted one.
        """
        h, w = a.shape[-2:]
        span = (h, w) if span is None else (int(span[0]), int(span[1]))
        gains = self.gains(route)
        extra = self.extra_levels(span, grid)
        plan = LevelPlan(self.levels + extra, extra, level_sizes(span, self.levels + extra + self.coarse_levels))
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            maps = self.token_maps(tokens, grid, margin, gains)
            strips = plan_strips(span[0], span[1], pixels=self.strip_pixels)
            sources = ((a.float(), trust[0]), (b.float(), trust[1]))
            with_trust = trust != (None, None)
            quarter = [self._quarter_levels(sources, s, span, with_trust) for s in strips]
            g_a, g_b, k_a, k_b = (torch.cat(parts, dim=-2) for parts in zip(*quarter))
            coarse, base_weight = self._coarse_fusion(g_a, g_b, k_a, k_b, maps, plan, gains)
            del quarter, g_a, g_b, k_a, k_b
            release_freed_memory(span[0] * span[1])  # the strips' peak should not stack on the coarse levels' leftovers
            fused = a.new_empty(*a.shape[:-2], h, w, dtype=torch.float32)
            for strip in strips:
                rows = self._fine_strip(sources, strip, span, coarse, maps, plan, gains, with_trust)
                fused[..., strip.core_top:min(h, strip.core_bottom), :] = rows[..., :max(0, h - strip.core_top), :w]
        return fused, base_weight

    # ----------------------------------------------------------------------------- the three steps
    def _quarter_levels(self, sources: Sources, strip: Strip, span: Sequence[int], with_trust: bool
                        ) -> tuple[Tensor, ...]:
        """A strip's core rows of both sources' Gaussian level FINE_LEVELS and of their side maps' (4 tensors)."""
        out = []
        for x, trust in sources:
            g = span_rows(x, strip.top, strip.bottom, span)
            side = side_maps(g, trust, strip, span, with_trust)
            for _ in range(FINE_LEVELS):
                g, side = pyramid.down(g), pyramid.down(side)
            out += [g, side]
        shift = FINE_LEVELS
        first = (strip.core_top - strip.top) >> shift
        count = -(-strip.core_bottom // (1 << shift)) - (strip.core_top >> shift)
        g_a, k_a, g_b, k_b = (t[..., first:first + count, :] for t in out)
        return g_a, g_b, k_a, k_b

    def _coarse_fusion(self, g_a: Tensor, g_b: Tensor, k_a: Tensor, k_b: Tensor, maps: TokenMaps, plan: "LevelPlan",
                       gains: RouteGains) -> tuple[Tensor, Tensor]:
        """The levels from FINE_LEVELS down, fused and collapsed to level FINE_LEVELS's size, for the whole
        image; and the base's weight of A."""
        levels = plan.count - FINE_LEVELS  # levels left: band-pass ones and the base
        pyr_a, pyr_b = pyramid.laplacian(g_a, levels), pyramid.laplacian(g_b, levels)
        deep = self.coarse_levels
        side_a, side_b = pyramid.gaussian(k_a, levels + deep), pyramid.gaussian(k_b, levels + deep)
        fused, base_weight = [], g_a.new_zeros(())
        for i in range(levels):
            lvl = i + FINE_LEVELS
            weight = self.level_weight(plan.learned(lvl), maps.term(plan.learned(lvl), plan.sizes[lvl]), pyr_a[i],
                                       pyr_b[i], side_a[i][:, :1], side_b[i][:, :1], gains, low_pass=i == levels - 1)
            weight = honour(weight, trust_of(side_a[i]), trust_of(side_b[i]))
            fused.append(torch.lerp(pyr_b[i], pyr_a[i], weight))  # w A + (1 - w) B
            base_weight = weight
        if deep:
            # The base blended band by band on its own pyramid; the route's `coarse_mix` lerps it in.
            sub_a, sub_b = pyramid.laplacian(pyr_a[-1], deep + 1), pyramid.laplacian(pyr_b[-1], deep + 1)
            bands = []
            for j, (band_a, band_b) in enumerate(zip(sub_a, sub_b)):
                c = levels - 1 + j  # the base's own pyramid starts at the base's size
                term = maps.term(self.levels + j, plan.sizes[plan.count - 1 + j])
                weight = self.level_weight(self.levels + j, term, band_a, band_b, side_a[c][:, :1], side_b[c][:, :1],
                                           gains, low_pass=j == deep)
                weight = honour(weight, trust_of(side_a[c]), trust_of(side_b[c]))
                bands.append(torch.lerp(band_b, band_a, weight))
            fused[-1] = torch.lerp(fused[-1], pyramid.collapse(bands), gains.mix)
        return pyramid.collapse(fused), base_weight

    def _fine_strip(self, sources: Sources, strip: Strip, span: Sequence[int], coarse: Tensor,
                    maps: TokenMaps, plan: "LevelPlan", gains: RouteGains, with_trust: bool) -> Tensor:
        """A strip's core rows of the fused image: its FINE_LEVELS finest bands fused, collapsed onto `coarse`."""
        (pyr_a, side_a), (pyr_b, side_b) = (self._strip_pyramid(x, trust, strip, span, with_trust) for x, trust in sources)
        bands = []
        for lvl in range(FINE_LEVELS):
            top, rows = strip.top >> lvl, pyr_a[lvl].shape[-2]
            learned = plan.learned(lvl)
            weight = self.level_weight(learned, maps.term(learned, plan.sizes[lvl], (top, rows)), pyr_a[lvl],
                                       pyr_b[lvl], side_a[lvl][:, :1], side_b[lvl][:, :1], gains, low_pass=False)
            weight = honour(weight, trust_of(side_a[lvl]), trust_of(side_b[lvl]))
            bands.append(torch.lerp(pyr_b[lvl], pyr_a[lvl], weight))
        top = strip.top >> FINE_LEVELS
        bands.append(coarse[..., top:top + pyr_a[FINE_LEVELS].shape[-2], :])
        return pyramid.collapse(bands)[..., strip.core_top - strip.top:strip.core_bottom - strip.top, :]

    @staticmethod
    def _strip_pyramid(x: Tensor, trust: Tensor | None, strip: Strip, span: Sequence[int], with_trust: bool
                       ) -> tuple[list[Tensor], list[Tensor]]:
        """A strip's Laplacian pyramid down to level FINE_LEVELS and its side maps at the finer levels."""
        rows = span_rows(x, strip.top, strip.bottom, span)
        sides = side_maps(rows, trust, strip, span, with_trust)
        return pyramid.laplacian(rows, FINE_LEVELS + 1), pyramid.gaussian(sides, FINE_LEVELS)
