"""TC-MoA: a frozen ViT autoencoder carrying two sources, mixed by TC-MoA modules.

Shapes follow the official computation (checked on its outputs: tests/test_official_fixture.py): both
sources run through the same encoder and decoder (one batch, two streams); after the blocks the
tau rule picks, a TC-MoA module mixes the streams; only stream A is decoded to pixels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import nn

from .backbone import (Block, RelativePositionBias, interpolate_pos_embed, shifted_window_mask,
                       sincos_pos_embed, unpatchify)
from .config import ModelConfig
from .fusion_head import PromptMargin, SourceWeightHead, Trust
from .moa import ModuleTrace, PromptControl, TCMoAModule
from .normalization import denormalize, normalize, unnormalize
from .pyramid_head import PyramidHead
from ..tasks import ROUTERS, Route, Router


# normalize/denormalize live in .normalization; they are part of this module's public names too.
__all__ = ["TCMoA", "FusionOutput", "router_table", "normalize", "unnormalize", "denormalize"]


def router_table(names: tuple[str, ...]) -> list[Router]:
    """The ROUTERS entries of a model's routers, in its order; an unknown name is an error, not a default."""
    unknown = [n for n in names if n not in ROUTERS]
    if unknown:
        raise ValueError(f"router {unknown[0]!r} has no entry in tcmoa.tasks.ROUTERS (known: {', '.join(ROUTERS)})")
    return [ROUTERS[n] for n in names]


@dataclass
class FusionOutput:
    """Everything one forward pass produces."""

    fused: torch.Tensor  # (B, C, H, W) in [0, 1]; C is the sources' channels (3, or 1 for grey pixels=)
    pred: torch.Tensor | None  # (B, 3, H, W) the decoder's prediction, ImageNet-normalised; None with a head
    token_grid: tuple[int, int]  # (h, w) of the token grid the prompts and gates live on
    encoder_traces: list[ModuleTrace] = field(default_factory=list)
    decoder_traces: list[ModuleTrace] = field(default_factory=list)
    # (B, 1, h, w) the weight of source A the head chose, at the head's own resolution for it: per pixel
    # ("source_weights"), or of the base band at 1/16 ("pyramid"); resample it to show it over the image
    source_weight: torch.Tensor | None = None

    @property
    def traces(self) -> list[ModuleTrace]:
        """All module traces, encoder first."""
        return self.encoder_traces + self.decoder_traces

    @property
    def aux_loss(self) -> torch.Tensor:
        """The summed load-balancing losses of every module."""
        return torch.stack([t.aux_loss for t in self.traces]).sum()

    def prompts(self, part: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(p_A, p_B) per module of the 'encoder' or 'decoder'."""
        traces = self.encoder_traces if part == "encoder" else self.decoder_traces
        return [(t.prompt_a, t.prompt_b) for t in traces]


class TCMoA(nn.Module):
    """The whole model; see the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.patch_embed = PatchEmbed(None, c.patch_size, c.in_chans, c.embed_dim)  # any size: the windows check it
        if c.absolute_pos:
            # Kept with MAE's shapes (cls row included) so MAE/official weights load as they are.
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
            self.pos_embed = nn.Parameter(sincos_pos_embed(c.embed_dim, c.pos_grid)[None], requires_grad=False)
            self.decoder_pos_embed = nn.Parameter(
                sincos_pos_embed(c.decoder_embed_dim, c.pos_grid)[None], requires_grad=False)
        self.blocks = self._blocks(c.embed_dim, c.depth, c.num_heads)
        self.encoder_rel_pos = self._rel_pos(c.depth, c.num_heads)
        self.encoder_moa = self._moa(c.embed_dim, c.moa_blocks(c.depth), restandardize=False)
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.decoder_blocks = self._blocks(c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads)
        self.decoder_rel_pos = self._rel_pos(c.decoder_depth, c.decoder_num_heads)
        self.decoder_moa = self._moa(c.decoder_embed_dim, c.moa_blocks(c.decoder_depth),
                                     restandardize=c.decoder_restandardize)
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=c.norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size**2 * c.in_chans)
        self._init_backbone()
        # Trained with the TC-MoA modules (it is not part of the autoencoder); zero-initialised.
        self.fusion_head: SourceWeightHead | PyramidHead | None = None
        if c.fusion_output == "source_weights":
            self.fusion_head = SourceWeightHead(c.decoder_embed_dim, c.patch_size, c.in_chans)
        elif c.fusion_output == "pyramid":
            routers = router_table(c.routers)  # the per-router initial gains live beside each router
            self.fusion_head = PyramidHead(c.decoder_embed_dim, c.num_routers, c.pyramid_levels,
                                           [r.base_clip_gain for r in routers], c.pyramid_coarse_levels,
                                           [r.coarse_levels for r in routers], c.pixel_patch)
        # Where the weights came from; checkpoint loaders fill it in, the app shows it.
        self.info: dict[str, object] = {"name": config.name, "source": "random init", "trained": False}
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    # ----------------------------------------------------------------------------- construction
    def _blocks(self, dim: int, depth: int, heads: int) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            Block(dim, heads, c.mlp_ratio, c.norm_eps, c.window_size, c.shift_size if i % 2 else 0)
            for i in range(depth))

    def _rel_pos(self, depth: int, heads: int) -> nn.ModuleList:
        # One table per pair of consecutive blocks (block i uses table i // 2).
        return nn.ModuleList(RelativePositionBias(self.config.window_size, heads) for _ in range((depth + 1) // 2))

    def _moa(self, dim: int, after: tuple[int, ...], restandardize: bool) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            TCMoAModule(dim, c.num_routers, c.num_experts, c.top_k, c.reduce_ratio, c.adapter_ratio,
                        c.router_noise_floor, c.gate_threshold, restandardize)
            for _ in after)

    def _init_backbone(self) -> None:
        """MAE's initialisation for the backbone's linear layers, norms and patch embedding."""
        moa = set(self.encoder_moa.modules()) | set(self.decoder_moa.modules())
        for m in self.modules():
            if m in moa:
                continue
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.config.absolute_pos:
            nn.init.normal_(self.cls_token, std=0.02)

    # ----------------------------------------------------------------------------- parameter groups
    def tcmoa_parameters(self) -> list[nn.Parameter]:
        """What TC-MoA training updates: modules, fusion layers, mixing scalars, rel-pos tables, fusion head."""
        groups = (self.encoder_moa, self.decoder_moa, self.encoder_rel_pos, self.decoder_rel_pos, self.fusion_head)
        return [p for g in groups if g is not None for p in g.parameters()]

    def freeze_backbone(self) -> None:
        """Freeze everything but the TC-MoA parameters (the official training setting)."""
        trainable = {id(p) for p in self.tcmoa_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in trainable)

    # ----------------------------------------------------------------------------- forward
    def route_weights(self, route: Route, device: torch.device | None = None) -> torch.Tensor:
        """Turn a router index, router name or weighting over the routers into normalised weights (T,)."""
        c = self.config
        if isinstance(route, str):
            if route not in c.routers:
                raise ValueError(f"unknown router {route!r}; this model has routers {', '.join(c.routers)}")
            route = c.routers.index(route)
        if isinstance(route, int):
            if not 0 <= route < c.num_routers:
                raise ValueError(f"router index {route} out of range 0..{c.num_routers - 1}")
            return F.one_hot(torch.tensor(route, device=device), c.num_routers).float()
        if isinstance(route, Mapping):  # torch would say "must be real number, not dict"
            raise ValueError(f"a route is a router name, an index or weights in router order ({', '.join(c.routers)});"
                             " tcmoa.fuse.pipeline.parse_route('vif=0.7,mff=0.3', routers) makes weights from names")
        w = torch.as_tensor(route, dtype=torch.float32, device=device).flatten()
        values = w.tolist()  # checked as numbers: no branch on a tensor's value
        if len(values) != c.num_routers or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise ValueError(f"a router weighting needs {c.num_routers} finite non-negative weights "
                             f"with a positive sum, got {values}")
        return w / w.sum()

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The token grid for an input size, with a clear error for sizes the windows cannot tile."""
        m = self.config.size_multiple
        if height % m or width % m or height <= 0 or width <= 0:
            raise ValueError(f"input size {height}x{width} must be a positive multiple of {m} px "
                             "(one attention window); pad or resize first (tcmoa.fuse.pipeline does)")
        p = self.config.pixel_patch
        return int(height / p), int(width / p)

    def forward(self, a: torch.Tensor, b: torch.Tensor, route: Route = 0, control: PromptControl = PromptControl(),
                pixels: tuple[torch.Tensor, torch.Tensor] | None = None, span: Sequence[int] | None = None,
                trust: Trust = (None, None)) -> FusionOutput:
        """Fuse normalised sources a, b (B, 3, H, W) (A is the stream that is decoded).

        `pixels`: for a model with an output head, the sources in [0, 1] (B, C, H', W') at the output's
        resolution, C = 3, or 1 for grey sources; by default a and b (tcmoa.fuse.runner passes a finer
        copy when its token path runs on a smaller one). `span`: the size the token grid spans in those
        pixels, when they are not padded to it (the head mirrors them as tcmoa.fuse pads). `trust`: where each
        source may be used, at the pixels' size (tcmoa.model.fusion_head.honour).
        """
        if a.shape != b.shape or a.dim() != 4:
            raise ValueError(f"sources must both be (B, 3, H, W) of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        weights = self.route_weights(route, a.device)
        tokens, grid, enc, dec = self.token_path(a, b, weights, control)
        if self.fusion_head is None:
            if pixels is not None:
                raise ValueError("a model without an output head decodes at the token path's resolution; pixels= needs a head")
            pred = self._to_pixels(tokens, grid)
            return FusionOutput(denormalize(pred), pred, grid, enc, dec)
        src_a, src_b = pixels if pixels is not None else (unnormalize(a), unnormalize(b))
        return self.apply_head(tokens, grid, enc, dec, weights, control, (src_a, src_b), span, trust)

    def apply_head(self, tokens: torch.Tensor, grid: tuple[int, int], enc: list[ModuleTrace], dec: list[ModuleTrace],
                   route: torch.Tensor, control: PromptControl, pixels: tuple[torch.Tensor, torch.Tensor],
                   span: Sequence[int] | None = None, trust: Trust = (None, None)) -> FusionOutput:
        """The output head on what `token_path` gave, over the sources `pixels` in [0, 1] (see `forward`)."""
        assert self.fusion_head is not None, "apply_head needs a model with an output head"
        margin = PromptMargin.from_prompts([(t.prompt_a, t.prompt_b) for t in enc + dec], grid, control.beta)
        fused, weight = self.fusion_head(tokens, grid, pixels[0], pixels[1], margin, route, span, trust)
        # In place where no gradient flows (inference): the head's output is a fresh tensor, and at 24 MP a copy
        # is 288 MB.
        return FusionOutput(fused.clamp(0, 1) if fused.requires_grad else fused.clamp_(0, 1), None, grid, enc, dec,
                            weight)

    def token_path(self, a: torch.Tensor, b: torch.Tensor, route: torch.Tensor, control: PromptControl
                   ) -> tuple[torch.Tensor, tuple[int, int], list[ModuleTrace], list[ModuleTrace]]:
        """Both streams through the encoder and decoder with the TC-MoA modules: the decoded, normed tokens
        of stream A (B, N, C), the token grid, and the encoder's and decoder's module traces."""
        batch = a.shape[0]
        grid = self.token_grid(a.shape[2], a.shape[3])
        # Both streams share every backbone weight, so they run as one batch of 2B.
        x = self._embed(torch.cat([a, b]), grid)
        x, enc = self._run(x, grid, self.blocks, self.encoder_rel_pos, self.encoder_moa, route, control)
        x = self._to_decoder(x, grid)
        x, dec = self._run(x, grid, self.decoder_blocks, self.decoder_rel_pos, self.decoder_moa, route, control,
                           decode_a_only=True)
        return self.decoder_norm(x[:batch]), grid, enc, dec

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone alone as an autoencoder: normalised (B, 3, H, W) -> normalised prediction."""
        grid = self.token_grid(images.shape[2], images.shape[3])
        x = self._embed(images, grid)
        x, _ = self._run(x, grid, self.blocks, self.encoder_rel_pos, None, None, None)
        x = self._to_decoder(x, grid)
        x, _ = self._run(x, grid, self.decoder_blocks, self.decoder_rel_pos, None, None, None)
        return self._to_pixels(self.decoder_norm(x), grid)

    def encode(self, a: torch.Tensor, b: torch.Tensor, route: Route = 0,
               control: PromptControl = PromptControl()) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder outputs (after the final norm) of both streams, (B, N, C) each."""
        grid = self.token_grid(a.shape[2], a.shape[3])
        x = self._embed(torch.cat([a, b]), grid)
        x, _ = self._run(x, grid, self.blocks, self.encoder_rel_pos, self.encoder_moa,
                         self.route_weights(route, a.device), control)
        return self.norm(x).chunk(2)

    def _embed(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) -> tokens (B, N, C), with absolute positions when configured."""
        if self.config.upsample:
            images = F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.patch_embed(images)
        if self.config.absolute_pos:
            x = x + interpolate_pos_embed(self.pos_embed, grid, self.config.pos_swap_hw)
        return x

    def _to_decoder(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Encoder tokens (B, N, C) -> decoder tokens (B, N, C'): final norm, projection, positions."""
        x = self.decoder_embed(self.norm(x))
        if self.config.absolute_pos:
            x = x + interpolate_pos_embed(self.decoder_pos_embed, grid, self.config.pos_swap_hw)
        return x

    def _to_pixels(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Decoded, normed tokens (B, N, C) -> normalised pixels (B, 3, H, W) at the input size."""
        c = self.config
        pred = unpatchify(self.decoder_pred(tokens), grid, c.patch_size, c.in_chans)
        if c.upsample:
            pred = pred[:, :, ::2, ::2]  # = F.interpolate(..., scale_factor=0.5, mode="nearest")
        return pred

    def _mask(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        c = self.config
        if not c.shift_mask or c.shift_size == 0:
            return None
        key = (*grid, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(*grid, c.window_size, c.shift_size, device)
        return self._masks[key]

    def _run(self, x: torch.Tensor, grid: tuple[int, int], blocks: nn.ModuleList, rel_pos: nn.ModuleList,
             modules: nn.ModuleList | None, route: torch.Tensor | None, control: PromptControl | None,
             decode_a_only: bool = False) -> tuple[torch.Tensor, list[ModuleTrace]]:
        """Blocks with TC-MoA modules after the configured ones; x holds [A; B] stacked on batch."""
        mask = self._mask(grid, x.device)
        after = self.config.moa_blocks(len(blocks)) if modules is not None else ()
        traces: list[ModuleTrace] = []
        for i, block in enumerate(blocks):
            x = block(x, grid, rel_pos[i // 2](), mask)
            if modules is not None and i in after:
                a, b = x.chunk(2)
                a, b, trace = modules[after.index(i)](a, b, grid, route, control)
                traces.append(trace)
                if decode_a_only and i == after[-1]:
                    x = a  # only stream A reaches the pixels; skip B's remaining blocks
                else:
                    x = torch.cat([a, b])
        return x, traces
