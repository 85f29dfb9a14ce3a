"""The output heads: how decoded tokens and prompts become a fused image made of the sources themselves.

Every head has one interface (`OutputHead`): decoded tokens (B, N, C) on a token grid, both sources
in [0, 1] at the output's resolution (which may be finer than the token grid's image: the token path
can run on a smaller copy, tcmoa.fuse's token budget), the prompts' margin (`PromptMargin`, where α and
β arrive as they are) and the route's router weights. It returns the fused image in [0, 1] (unclipped)
and the weight of source A it chose, (B, 1, H, W).

- `PyramidHead` (config `fusion_output="pyramid"`, the shipped model): one weight of A per band of the
  sources' Laplacian pyramids (described at the class).
- `SourceWeightHead` (`fusion_output="source_weights"`): one weight of A per pixel plus a small
  residual, F = w A + (1 - w) B + r with w = sigmoid(head_logit + PROMPT_GAIN * up(p_A - p_B)). Kept so
  that models trained with it still load; a single weight per pixel cannot take a glare-white visible
  image's brightness and the infrared's edges at the same place, which per-band weights can.

Official checkpoints have no head (`fusion_output="decoder"`): stream A's tokens are decoded to pixels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ycbcr import BT601_WEIGHTS
from . import pyramid
from .backbone import unpatchify
from .normalization import IMAGENET_STD

PROMPT_GAIN = 4.0  # logit per unit of p_A - p_B: prompts of 0.75 / 0.25 give w = sigmoid(2) = 0.88
BETA_GAIN = 8.0  # pyramid head: logit per unit of the 2-beta shift, at every level (PyramidHead)
# Initial gains of the pyramid head's energy and clip terms. A band twice as strong in A (log ratio
# 0.69) gives logit 2.8, w = 0.94: a soft max-abs that still blends near-ties; a fully clipped source
# against an unclipped one gives logit 4, w = 0.98: it gives way almost entirely.
INITIAL_ENERGY_GAIN = 4.0
INITIAL_CLIP_GAIN = 4.0


@dataclass(frozen=True)
class PromptMargin:
    """How much source A dominates B per token, by the prompts of every TC-MoA module, with β kept apart.

    Eq. 8 gives p_A' - p_B' = alpha (p_A - p_B) + 2 beta in every module; `raw` is its mean over the
    modules. The heads use the two parts differently (the pyramid head gives β a gain of its own), so
    the split is made here, once.
    """

    raw: Tensor  # (B, 1, h, w) on the token grid: mean over modules of p_A' - p_B'
    beta: float  # as the user gave it

    @classmethod
    def from_prompts(cls, prompts: Sequence[tuple[Tensor, Tensor]], grid: tuple[int, int], beta: float) -> "PromptMargin":
        """From (p_A', p_B') (B, N, 1) of every module on a grid of (h, w) tokens."""
        mean = torch.stack([p_a - p_b for p_a, p_b in prompts]).mean(0)  # (B, N, 1)
        return cls(mean.float().transpose(1, 2).reshape(-1, 1, *grid), beta)

    @property
    def shift(self) -> float:
        """Eq. 8's uniform part, 2 beta: beta raises p_A and lowers p_B."""
        return 2 * self.beta

    @property
    def regional(self) -> Tensor:
        """The per-region part, alpha (p_A - p_B) averaged over modules: (B, 1, h, w)."""
        return self.raw - self.shift


class OutputHead(Protocol):
    """What every output head takes and gives (see the module docstring)."""

    def __call__(self, tokens: Tensor, grid: tuple[int, int], a: Tensor, b: Tensor, margin: PromptMargin,
                 route: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, N, C), sources (B, 3, H, W) in [0, 1], route (T,) -> fused (B, 3, H, W), weight of A (B, 1, H, W)."""
        ...


class SourceWeightHead(nn.Module):
    """Decoded tokens -> per-pixel weight of source A (1 channel) and residual (3 channels)."""

    def __init__(self, dim: int, patch: int, chans: int = 3):
        super().__init__()
        self.patch, self.chans = patch, chans
        self.proj = nn.Linear(dim, patch * patch * (1 + chans))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: Tensor, grid: tuple[int, int], a: Tensor, b: Tensor, margin: PromptMargin,
                route: Tensor) -> tuple[Tensor, Tensor]:
        """The `OutputHead` interface; the route is already in the tokens (this head has no per-router part)."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            out = unpatchify(self.proj(tokens.float()), grid, self.patch, 1 + self.chans)  # (B, 1+C, H, W)
            if out.shape[-2:] != a.shape[-2:]:
                out = F.interpolate(out, size=a.shape[-2:], mode="bilinear", align_corners=False)
            up = F.interpolate(margin.raw, size=out.shape[-2:], mode="bilinear", align_corners=False)
            weight = torch.sigmoid(out[:, :1] + PROMPT_GAIN * up)
            # The residual was trained in ImageNet-normalised units: scaled by the std back to [0, 1].
            std = out.new_tensor(IMAGENET_STD).view(1, -1, 1, 1)
            fused = weight * a.float() + (1 - weight) * b.float() + out[:, 1:] * std
        return fused, weight


LUMA = BT601_WEIGHTS  # the weights are chosen on luminance and applied to every channel
ENERGY_FLOOR = 2e-3  # keeps log(energy) finite in flat regions (about half a grey level of band-pass)
CLIP_HIGH, CLIP_LOW, CLIP_SOFTNESS = 0.95, 0.02, 0.01  # "clipped" luma: >= ~242/255 or <= ~5/255


def luma(img: Tensor) -> Tensor:
    """BT.601 luma (B, 1, H, W) of an RGB batch (B, 3, H, W), in float32."""
    return (img.float() * img.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1, keepdim=True)


def clipped(y: Tensor) -> Tensor:
    """Soft indicator (B, 1, H, W) in [0, 1] of saturated (white) or crushed (black) luma y."""
    return torch.sigmoid((y - CLIP_HIGH) / CLIP_SOFTNESS) + torch.sigmoid((CLIP_LOW - y) / (CLIP_SOFTNESS / 2))


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
    initialisation (token logits zero) this is
    a classical fusion: details chosen by local energy (a soft max-abs), base averaged except where
    a source is clipped, dominance set by the prompts. A single per-pixel weight cannot take a glare-
    white visible image's brightness and the infrared's edges at the same place; per-band weights
    can. The prompt gains are kept positive, so alpha spreads the prompts' per-region preference across
    every band; beta, which shifts every prompt margin by 2 beta, moves every band's logit by the same
    16 beta (at the learned gains alone it would barely move the band-pass levels, whose weights the
    energy term dominates, and SSIM towards A would not rise at every step).

    Coarse levels (`coarse_levels` > 0, config `pyramid_coarse_levels`; 5 in the shipped model). One
    per-pixel blend of the 1/16 base, with a weight that moves at the token scale, mixes the sources'
    large-scale tones and flattens them (exposure fusions then have less large-scale contrast than
    Mertens' and the Laplacian pyramid's, which decide every scale). So the base gets its own pyramid (band-pass
    levels at 1/16 ... 1/256 and a base), blended level by level with the base's logit resampled to each
    (smooth at coarse scales), plus `coarse_gain * trust * log(E_A / E_B)` on its band-pass levels,
    trust = (1 - max(C_A, C_B))^2: where a source is clipped the energy term fades, because a blown-out
    region's rim is the strongest coarse structure and the other source's large-scale contrast laid on
    the base overflows [0, 1] there. `coarse_mix`, a fixed per-router switch saved with the model, lerps
    between the single blend (0) and this (1), per router as tcmoa.tasks.ROUTERS sets it.
    """

    def __init__(self, dim: int, routers: int, levels: int = 5, base_clip_gain: Sequence[float] | None = None,
                 coarse_levels: int = 0, coarse_on: Sequence[bool] | None = None):
        super().__init__()
        self.levels, self.coarse_levels = levels, coarse_levels
        self.token_logits = nn.Linear(dim, levels)
        nn.init.zeros_(self.token_logits.weight)
        nn.init.zeros_(self.token_logits.bias)
        # The gains are per router (rows), blended by the route weights like the routers themselves:
        # what a clipped source means differs by task (glare in VIF; highlights MEF-SSIM wants kept).
        # Their initial values per router are in tcmoa.tasks.ROUTERS.
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

    def weights(self, tokens: Tensor, grid: tuple[int, int], pyr_a: list[Tensor], pyr_b: list[Tensor],
                clip_a: list[Tensor], clip_b: list[Tensor], margin: PromptMargin, route: Tensor
                ) -> tuple[list[Tensor], list[Tensor]]:
        """The weight of A per learned level and per coarse level, (B, 1, h_l, w_l) each.

        `pyr_a`, `pyr_b`: the `levels` bands, then the base's own pyramid (`coarse_levels` band-pass
        levels and its base), from `forward`; the clip maps likewise. The last learned weight is the
        base's, steered by the prompts, beta and clipping (the dominance the app shows).
        """
        route = route.float()  # (T,) normalised router weights
        detail_gain, clip_gain = route @ self.detail_gain, route @ self.clip_gain  # (L-1,), (L,)
        gains = route @ self.log_prompt_gain.exp()  # (L,): positive, as every row is
        energy_gain = detail_gain if self.coarse_gain is None else torch.cat([detail_gain, route @ self.coarse_gain])
        logits = self.token_logits(tokens.float()).transpose(1, 2).reshape(-1, self.levels, *grid)  # (B, L, h, w)
        # The per-region part of the margin keeps the learned gains; beta's uniform shift gets BETA_GAIN at
        # every level, so beta moves every band alike.
        regional, beta_logit = margin.regional, BETA_GAIN * margin.shift  # (B, 1, h, w), float
        weights: list[Tensor] = []
        coarse: list[Tensor] = []
        for lvl, (band_a, band_b) in enumerate(zip(pyr_a, pyr_b)):
            size = tuple(band_a.shape[-2:])
            k = min(lvl, self.levels - 1)  # the base's coarse levels share its token logit and gains
            z = to_level(logits[:, k: k + 1], size) + gains[k] * to_level(regional, size) + beta_logit
            z = z + clip_gain[k] * (clip_b[lvl] - clip_a[lvl])
            if lvl == self.levels - 1 or lvl == len(pyr_a) - 1:  # a low-pass (the base, or the base's base)
                (weights if lvl < self.levels else coarse).append(torch.sigmoid(z))
                continue
            energy = band_energy(luma(band_a)).add(ENERGY_FLOOR).log() - band_energy(luma(band_b)).add(ENERGY_FLOOR).log()
            if lvl < self.levels - 1:  # the larger local energy wins
                weights.append(torch.sigmoid(z + energy_gain[lvl] * energy))
                continue
            # A coarse level (the base's own band-pass, 1/16 and coarser). There a clipped region's rim
            # is the strongest structure, and the other source's large-scale contrast laid on the base
            # overflows [0, 1]: where either source is clipped the energy term fades to the base's weight.
            trust = (1 - torch.maximum(clip_a[lvl], clip_b[lvl]).clamp(max=1)) ** 2
            coarse.append(torch.sigmoid(z + energy_gain[lvl - 1] * trust * energy))
        return weights, coarse

    def forward(self, tokens: Tensor, grid: tuple[int, int], a: Tensor, b: Tensor, margin: PromptMargin,
                route: Tensor) -> tuple[Tensor, Tensor]:
        """The `OutputHead` interface. The weight returned is the base band's weight of A resampled to the
        image size: the coarse dominance the prompts steer."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            pyr_a, pyr_b, clip_a, clip_b = self.decompose(a.float(), b.float())
            ws, coarse = self.weights(tokens, grid, pyr_a, pyr_b, clip_a, clip_b, margin, route)
            sub_a, sub_b = pyr_a[self.levels:], pyr_b[self.levels:]
            bands = [w * la + (1 - w) * lb for w, la, lb in zip(ws, pyr_a[:self.levels], pyr_b[:self.levels])]
            if coarse and self.coarse_mix is not None:
                # Per router, `coarse_mix` chooses between the single blend of the base (0) and the base
                # blended band by band on its own pyramid (1); routes blend it.
                mix = route.float() @ self.coarse_mix
                multiscale = pyramid.collapse([w * la + (1 - w) * lb for w, la, lb in zip(coarse, sub_a, sub_b)])
                bands[-1] = torch.lerp(bands[-1], multiscale, mix)
            fused = pyramid.collapse(bands)
            base = F.interpolate(ws[-1], size=a.shape[-2:], mode="bilinear", align_corners=False)
        return fused, base

    def decompose(self, a: Tensor, b: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Both sources' pyramids and clip maps, as `weights` takes them: the `levels` bands, then the base's
        own pyramid (`coarse_levels` band-pass levels from 1/16 down, and its base). Always the whole
        of it (at 1/16 of the image it is cheap): the route's `coarse_mix` lerps it in or out."""
        deep = self.coarse_levels
        pyr_a, pyr_b = pyramid.laplacian(a, self.levels), pyramid.laplacian(b, self.levels)
        if deep:
            pyr_a, pyr_b = (p + pyramid.laplacian(p[-1], deep + 1) for p in (pyr_a, pyr_b))
        # Clip maps at every level's size; the base's own pyramid starts at the base's size (1/16).
        clip_a, clip_b = (pyramid.gaussian(clipped(luma(x)), self.levels + deep) for x in (a, b))
        clip_a, clip_b = (c[:self.levels] + (c[self.levels - 1:] if deep else []) for c in (clip_a, clip_b))
        return pyr_a, pyr_b, clip_a, clip_b
