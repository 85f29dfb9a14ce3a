"""The compact model's detail-preserving output: per-pixel source weights plus a residual.

The official model decodes the fused image from stream A's tokens, so the result can be no sharper
than the autoencoder's reconstruction (an 8x8x3 patch squeezed through a 128-wide token). For the
`compact` preset (config `fusion_output="source_weights"`) the decoded tokens instead predict, for
every pixel, the weight w of source A and a small residual r, applied to the sources themselves:

    F = w * A + (1 - w) * B + r,    w = sigmoid(head_logit + gain * up(mean_m(p_A - p_B)))

where p_A, p_B are the prompts of every TC-MoA module (after alpha/beta), averaged over modules and
upsampled bilinearly from the token grid. The prompts therefore *are* the per-region dominance the
paper describes, and alpha/beta act on the fused image directly: beta shifts every logit by
2 * gain * beta (towards A for beta > 0), alpha scales the prompt part of it. The head is zero-
initialised, so an untrained head starts at the sources' average steered by the prompts alone.
Official checkpoints keep `fusion_output="decoder"` (the official path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import unpatchify

PROMPT_GAIN = 4.0  # logit per unit of p_A - p_B: prompts of 0.75 / 0.25 give w = sigmoid(2) = 0.88


class SourceWeightHead(nn.Module):
    """Decoded tokens -> per-pixel weight of source A (1 channel) and residual (3 channels)."""

    def __init__(self, dim: int, patch: int, chans: int = 3):
        super().__init__()
        self.patch, self.chans = patch, chans
        self.proj = nn.Linear(dim, patch * patch * (1 + chans))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], a: torch.Tensor, b: torch.Tensor,
                prompt_margin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, C), sources (B, 3, H, W) normalised, prompt_margin (B, N, 1) = mean p_A - p_B.

        Returns the fused prediction (B, 3, H, W), normalised, and the weight of A (B, 1, H, W).
        """
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            out = unpatchify(self.proj(tokens.float()), grid, self.patch, 1 + self.chans)  # (B, 1+C, H, W)
            margin = prompt_margin.float().transpose(1, 2).reshape(-1, 1, *grid)  # (B, 1, h, w)
            margin = F.interpolate(margin, size=out.shape[-2:], mode="bilinear", align_corners=False)
            weight = torch.sigmoid(out[:, :1] + PROMPT_GAIN * margin)
            fused = weight * a.float() + (1 - weight) * b.float() + out[:, 1:]
        return fused, weight
