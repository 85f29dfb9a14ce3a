"""The output heads: how decoded tokens and prompts become a fused image made of the sources themselves.

Every head has one interface (`OutputHead`): decoded tokens (B, N, C) on a token grid, both sources
in [0, 1] at the output's resolution (which may be finer than the token grid's image: the token path
can run on a smaller copy, tcmoa.fuse's token budget), the prompts' margin (`PromptMargin`, where α and
β arrive as they are) and the route's router weights. It returns the fused image in [0, 1] (unclipped)
and the weight of source A it chose, (B, 1, H, W).

- `PyramidHead` (config `fusion_output="pyramid"`, the shipped model; tcmoa/model/pyramid_head.py): one
  weight of A per band of the sources' Laplacian pyramids.
- `SourceWeightHead` (`fusion_output="source_weights"`): one weight of A per pixel plus a small
  residual, F = w A + (1 - w) B + r with w = sigmoid(head_logit + PROMPT_GAIN * up(p_A - p_B)). Kept so
  that models trained with it still load; a single weight per pixel cannot take a glare-white visible
  image's brightness and the infrared's edges at the same place, which per-band weights can.

Official checkpoints have no head (`fusion_output="decoder"`): stream A's tokens are decoded to pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import unpatchify
from .normalization import IMAGENET_STD

PROMPT_GAIN = 4.0  # logit per unit of p_A - p_B: prompts of 0.75 / 0.25 give w = sigmoid(2) = 0.88
TRUST_FLOOR = 1e-6  # where neither source is trusted, the head's own weight stands (`honour`)
Trust = tuple["Tensor | None", "Tensor | None"]  # per source: None, or (B, 1, H, W) in [0, 1]


def honour(weight: Tensor, trust_a: Tensor | None, trust_b: Tensor | None) -> Tensor:
    """A's weight made to give way where A is untrusted (and B's where B is): w t_A / (w t_A + (1 - w) t_B).

    Fully trusted sources leave the weight as it is; where neither is trusted it stands too.
    """
    if trust_a is None and trust_b is None:
        return weight
    a = weight if trust_a is None else weight * trust_a
    b = (1 - weight) if trust_b is None else (1 - weight) * trust_b
    return (a + TRUST_FLOOR * weight) / (a + b + TRUST_FLOOR)


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
                 route: Tensor, span: Sequence[int] | None = None, trust: Trust = (None, None)) -> tuple[Tensor, Tensor]:
        """tokens (B, N, C), sources (B, C, H, W) in [0, 1], route (T,) -> fused (B, C, H, W), weight of A (B, 1, h, w).

        The token grid spans `span` (H', W') >= (H, W) pixels from the top-left (default (H, W)): the
        sources are mirrored past their bottom and right edges up to it, as tcmoa.fuse pads them.
        `trust`: where each source may be used (`honour`): 0 outside a warped source's pixels, or on
        moving content of an exposure that is not the reference.
        """
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
                route: Tensor, span: Sequence[int] | None = None, trust: Trust = (None, None)) -> tuple[Tensor, Tensor]:
        """The `OutputHead` interface; the weight is per pixel. The route is already in the tokens."""
        h, w = a.shape[-2:]
        if span is not None:
            a, b = (pad_to(x, int(span[0]) - h, int(span[1]) - w) for x in (a, b))
            trust = tuple(None if t is None else pad_to(t, int(span[0]) - h, int(span[1]) - w) for t in trust)  # type: ignore[assignment]
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            out = unpatchify(self.proj(tokens.float()), grid, self.patch, 1 + self.chans)  # (B, 1+C, H, W)
            if out.shape[-2:] != a.shape[-2:]:
                out = F.interpolate(out, size=a.shape[-2:], mode="bilinear", align_corners=False)
            up = F.interpolate(margin.raw, size=out.shape[-2:], mode="bilinear", align_corners=False)
            weight = honour(torch.sigmoid(out[:, :1] + PROMPT_GAIN * up), *trust)
            # The residual was trained in ImageNet-normalised units: scaled by the std back to [0, 1].
            std = out.new_tensor(IMAGENET_STD).view(1, -1, 1, 1)
            fused = weight * a.float() + (1 - weight) * b.float() + out[:, 1:] * std
        return fused[..., :h, :w], weight[..., :h, :w]


def pad_to(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right by mirroring (replicating where the image is too small to mirror)."""
    if not pad_h and not pad_w:
        return x
    mode = "reflect" if pad_h < x.shape[2] and pad_w < x.shape[3] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
