"""The ViT pieces of the backbone: window attention, blocks, positions, patch (un)embedding.

Built from timm's layers where they compute exactly what the official model (MAE's timm ViT plus
windowed attention) does: `Mlp`, `PatchEmbed` (tcmoa.model.network) and Swin's relative-position index.
What timm has no exact piece for is ours, each with the reason beside it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp, gen_relative_position_index, resample_abs_pos_embed
from torch import nn


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's (w^2, w^2) index into a (2w-1)^2 relative-position table, for a square window."""
    return gen_relative_position_index((window, window))


class RelativePositionBias(nn.Module):
    """A trainable per-head bias for each relative offset inside a window (one per block pair).

    Not timm's RelPosBias: the official model shares one table between two consecutive blocks
    (`encoder_rel_pos.{i}` serves blocks 2i and 2i + 1), where timm keeps one inside each block's
    attention, and the official key names follow this layout.
    """

    index: torch.Tensor  # (w^2 * w^2,) buffer: the table row of each (query, key) pair

    def __init__(self, window: int, num_heads: int):
        super().__init__()
        self.window = window
        self.table = nn.Parameter(torch.empty((2 * window - 1) ** 2, num_heads))
        # torch's, not timm's trunc_normal_: the same distribution, but since torch 2.14 a different
        # draw for the same seed (rejection sampling), and the seeded untrained presets keep theirs.
        nn.init.trunc_normal_(self.table, std=0.02)
        # Derived from the window size, so not saved; official checkpoints carry it and are checked.
        self.register_buffer("index", relative_position_index(window), persistent=False)

    def forward(self) -> torch.Tensor:
        """The bias, shaped (heads, w^2, w^2)."""
        n = self.window**2
        return self.table[self.index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)


# timm's window_partition (timm.models.swin_transformer) is the same view/permute, exactly; importing
# it loads timm's whole model registry (+2 s at start-up, measured), so these four lines stay.
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w^2, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, w^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Swin's additive mask (nW, w^2, w^2) that stops shifted windows attending across borders."""
    region = torch.zeros(h, w, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[rows, cols] = label
            label += 1
    ids = window_partition(region[None, :, :, None], window).squeeze(-1)  # (nW, w^2)
    different = ids[:, :, None] != ids[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, float("-inf"))


class Attention(nn.Module):
    """Multi-head self-attention over the tokens of each window, with an additive bias.

    Not timm's Attention (same qkv/proj keys): a masked shifted-window bias is shared by every
    sample here instead of being copied per window and sample, and timm switches between its fused
    and explicit kernels by a global setting (TIMM_FUSED_ATTN), which would change the numbers.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B*nW, n, C) windows -> (B*nW, n, C).

        bias is (heads, n, n), the same for every window, or (nW, heads, n, n) when shifted
        windows are masked; then windows and heads share one axis so that the per-window bias
        broadcasts over the batch instead of being copied for every sample.
        """
        bw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(bw, n, 3, heads, c // heads)
        if bias.dim() == 3:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B*nW, heads, n, d) each
            mask = bias[None]
        else:
            n_win = bias.shape[0]
            q, k, v = qkv.reshape(bw // n_win, n_win, n, 3, heads, -1).permute(3, 0, 1, 4, 2, 5) \
                .reshape(3, bw // n_win, n_win * heads, n, -1)  # (B, nW*heads, n, d) each
            mask = bias.reshape(1, n_win * heads, n, n)
        # Fused attention kernel; the bias (and mask) enter as an additive float mask.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        out = out.reshape(bw, heads, n, -1)  # back to one row per window
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Block(nn.Module):
    """A pre-norm transformer block whose attention runs in (optionally shifted) windows.

    timm's Block's layout and keys (norm1, attn, norm2, mlp with timm's Mlp: fc1, exact GELU, fc2);
    not timm's Block itself, whose forward has no window partition, shift or bias. No DropPath or
    LayerScale: the official model has neither (drop_path 0, no init_values).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, window: int, shift: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int], rel_bias: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, C) on an (H, W) token grid -> (B, N, C); mask is (nW, n, n) or None."""
        b, n, c = x.shape
        h, w = grid
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(y, self.window)  # (B*nW, w^2, C)
        bias = rel_bias  # (heads, n, n)
        if self.shift and mask is not None:
            bias = rel_bias[None] + mask[:, None]  # (nW, heads, n, n)
        y = window_reverse(self.attn(windows, bias), self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table, (1 + grid^2, dim) with a zero row for the cls token."""
    # Not timm's build_sincos2d_pos_embed: none of its layouts is MAE's (sin|cos of x, then of y).
    def one_axis(d: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    # MAE embeds the width coordinate in the first half of the channels.
    table = torch.cat([one_axis(dim // 2, xs), one_axis(dim // 2, ys)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


def interpolate_pos_embed(table: torch.Tensor, grid: tuple[int, int], swap_hw: bool) -> torch.Tensor:
    """Resize a (1, 1 + g^2, C) table (cls row dropped) to a token grid -> (1, H*W, C).

    The official code passes the target as (W, H); with swap_hw that quirk is reproduced, which
    scrambles positions on non-square grids exactly as the released model saw them.
    """
    size = [grid[1], grid[0]] if swap_hw else list(grid)
    return resample_abs_pos_embed(table, size, num_prefix_tokens=1, interpolation="bilinear", antialias=False)[:, 1:]


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], patch: int, chans: int = 3) -> torch.Tensor:
    """(B, H*W, p*p*C) in MAE's (p, q, c) order -> (B, C, H*p, W*p)."""
    b = tokens.shape[0]
    h, w = grid
    x = tokens.reshape(b, h, w, patch, patch, chans)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, chans, h * patch, w * patch)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p*p*C), the inverse of unpatchify."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)
