"""Model configuration: one small dataclass and the named presets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import ROUTER_NAMES  # the router order, part of the checkpoint format

FUSION_OUTPUTS = ("decoder", "source_weights", "pyramid")


@dataclass(frozen=True)
class ModelConfig:
    """Every architectural choice of a TC-MoA model: backbone, windows, positions and adapters."""

    name: str = "custom"
    # Backbone (MAE-style ViT autoencoder, shared by both source streams).
    patch_size: int = 16
    in_chans: int = 3
    upsample: bool = True  # official: x2 bilinear before patch embedding, nearest x2 down after
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    # Attention: every block attends inside window_size^2-token windows; odd blocks shift.
    window_size: int = 14
    shift_size: int = 7
    shift_mask: bool = False  # official: no Swin mask, so shifted windows wrap across borders
    # Positions: MAE's fixed 14x14 sin-cos table, interpolated to the token grid (official).
    # Without it the model sees only relative positions, so it is resolution-agnostic.
    absolute_pos: bool = True
    pos_grid: int = 14
    pos_swap_hw: bool = True  # official quirk: interpolates to (W, H), scrambling non-square grids
    # TC-MoA modules: after block i whenever (i + tau_shift) % tau == tau - 1.
    tau: int = 4
    tau_shift: int = 2
    num_routers: int = 3
    num_experts: int = 4
    top_k: int = 2
    reduce_ratio: int = 4  # dimension reduction C -> C / 4
    adapter_ratio: int = 8  # adapters C/4 -> C/32 -> C/4
    router_noise_floor: float = 0.1  # the official +0.1 inside the noise std (not in the paper)
    gate_threshold: float = 1e-4  # gates at or below this are dropped
    decoder_restandardize: bool = True  # the 2025 code's decoder re-standardisation
    # How the fused image is made: decoded from stream A's tokens (official); a weight per Laplacian
    # band of the sources ("pyramid", the shipped compact model; tcmoa/model/fusion_head.py); or
    # per-pixel source weights + residual ("source_weights", kept so checkpoints with that head load).
    fusion_output: str = "decoder"
    pyramid_levels: int = 5  # fusion_output="pyramid": 4 band-pass levels and a base at 1/16
    # fusion_output="pyramid": the base's own band-pass levels (1/16 ... 1/256 for 5), chosen by energy like
    # the finer ones; 0 blends the base as one band (as checkpoints saved without these levels do).
    pyramid_coarse_levels: int = 0
    routers: tuple[str, ...] = field(default=ROUTER_NAMES[:3])

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads or self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"{self.name}: embedding widths must be divisible by the head counts")
        if len(self.routers) != self.num_routers:
            raise ValueError(f"{self.name}: routers has {len(self.routers)} entries, num_routers is {self.num_routers}")
        if self.fusion_output not in FUSION_OUTPUTS:
            raise ValueError(f"{self.name}: fusion_output must be one of {FUSION_OUTPUTS}, got {self.fusion_output!r}")
        if self.pyramid_coarse_levels < 0:
            raise ValueError(f"{self.name}: pyramid_coarse_levels must be >= 0, got {self.pyramid_coarse_levels}")
        for dim in (self.embed_dim, self.decoder_embed_dim):
            if dim % (self.reduce_ratio * self.adapter_ratio * 2):
                raise ValueError(f"{self.name}: width {dim} is not divisible by reduce_ratio*adapter_ratio*2")

    @property
    def pixel_patch(self) -> float:
        """Side of one token in input pixels (8 for the official x2-upsampled 16-px patches)."""
        return self.patch_size / 2 if self.upsample else self.patch_size

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this: one attention window in input pixels."""
        return int(self.window_size * self.pixel_patch)

    def moa_blocks(self, depth: int) -> tuple[int, ...]:
        """Indices of the blocks followed by a TC-MoA module (the official tau rule)."""
        return tuple(i for i in range(depth) if (i + self.tau_shift) % self.tau == self.tau - 1)

    def to_json(self) -> str:
        """Serialise to JSON (saved beside a checkpoint)."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a parsed JSON dict, naming any unknown field (older field names are read too)."""
        data = {RENAMED_FIELDS.get(k, k): v for k, v in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        if "routers" in data:
            data["routers"] = tuple(data["routers"])
        return cls(**data)


# Field names of config.json files saved before the rename (checkpoints need no migration).
RENAMED_FIELDS = {"task_names": "routers", "num_tasks": "num_routers"}

CONFIGS: dict[str, ModelConfig] = {
    # The released model: MAE ViT-Large (mae_visualize_vit_large_ganloss) + 8 TC-MoA modules.
    "official-large": ModelConfig(name="official-large"),
    # The Base variant (mae_visualize_vit_base): 12 blocks, 768 wide, 3 + 2 modules.
    "official-base": ModelConfig(name="official-base", embed_dim=768, depth=12, num_heads=12),
    # The shape of the conformance fixture (tests/fixtures/official_tiny).
    "official-tiny": ModelConfig(
        name="official-tiny", embed_dim=128, depth=8, num_heads=4,
        decoder_embed_dim=64, decoder_depth=4, decoder_num_heads=4,
    ),
    # Ours: fast on a CPU, resolution-agnostic (relative positions only, masked shifted windows),
    # native 8-px patches instead of x2 upsampling + 16-px patches (the same token grid, 4x
    # cheaper patch embedding), 8x8-token windows (sizes in multiples of 64 px, so 640x480 needs
    # no padding, and 3x cheaper attention), a fourth router for medical fusion, and a fused image
    # made of per-band weights of the sources' Laplacian pyramids, so it keeps the sources' full detail.
    "compact": ModelConfig(
        name="compact", patch_size=8, upsample=False, embed_dim=128, depth=6, num_heads=4,
        decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
        window_size=8, shift_size=4, shift_mask=True, absolute_pos=False, pos_swap_hw=False,
        num_routers=4, routers=ROUTER_NAMES, fusion_output="pyramid", pyramid_coarse_levels=5,
    ),
}


def get_config(name: str) -> ModelConfig:
    """Look up a preset by name, listing the valid names when it is unknown."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(CONFIGS)}") from None


def resolve_config(name_or_path: str) -> ModelConfig:
    """A preset name or a JSON file written by ModelConfig.to_json."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return ModelConfig.from_dict(json.loads(path.read_text()))
    return get_config(name_or_path)
