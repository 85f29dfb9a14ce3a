"""Checkpoints: the official .pth files, MAE backbones, and our own safetensors format.

Nothing here unpickles arbitrary objects: .pth files load with `weights_only=True`, ours are
safetensors plus a JSON config.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, cast

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .backbone import relative_position_index
from .config import CONFIGS, ModelConfig, get_config
from .network import TCMoA
from ..tasks import OBJECTIVES

# The shipped model: inside the package in an installed wheel (pyproject.toml copies checkpoints/ there),
# else checkpoints/ beside the package (a source checkout or an editable install).
_PACKAGE = Path(__file__).resolve().parents[1]  # tcmoa/
REPO_CHECKPOINTS = next((d for d in (_PACKAGE / "checkpoints", _PACKAGE.parent / "checkpoints") if d.is_dir()),
                        _PACKAGE.parent / "checkpoints")
CONFIG_FILE = "config.json"
BACKBONE_FILE = "backbone.safetensors"
TCMOA_FILE = "tcmoa.safetensors"
FORMAT_TAG = "tcmoa-1"

# Renames of the April-2024 checkpoints (main_predict_oldckp.py), applied before the mapping below.
LEGACY_RENAMES = (("blocks_SSF_rgb", "blocks_MoA"), ("en_projAdapter", "FusionLayer"),
                  ("de_projAdapter", "de_FusionLayer"))
LEGACY_MOA_RENAMES = ((".mlp.", ".MoA."), (".SE_en_linear.", ".dimReduction."), (".SSF_beta", ".modal_shifts"))

# Official key -> ours (regex, replacement). Backbone keys (blocks.*, norm, decoder_*) are shared.
OFFICIAL_KEY_MAP = (
    (r"^(de|en)_relative_position\.(\d+)\.relative_position_bias_table$", r"{part}_rel_pos.\2.table"),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.dimReduction\.", r"{part}_moa.\2.reduce."),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.norm1\.", r"{part}_moa.\2.pair_norm."),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.norm2\.", r"{part}_moa.\2.reduced_norm."),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.MoA\.w_gate$", r"{part}_moa.\2.router_bank.gate"),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.MoA\.w_noise$", r"{part}_moa.\2.router_bank.noise"),
    (r"^(decoder_)?blocks_MoA\.(\d+)\.MoA\.experts\.(\d+)\.", r"{part}_moa.\2.adapter_bank.\3."),
    (r"^(de_)?FusionLayer\.(\d+)\.", r"{part}_moa.\2.fusion."),
)
# Official keys with nothing to load: derived buffers (checked) and the unused normal's constants.
OFFICIAL_DERIVED = re.compile(r"(relative_position_index|MoA\.mean|MoA\.std|mask_token)$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model, with the offending keys named."""


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _part(prefix: str | None) -> str:
    return "decoder" if prefix in ("decoder_", "de", "de_") else "encoder"


def modernize_official_key(key: str) -> str:
    """Apply the April-2024 renames, so legacy and current official checkpoints read alike."""
    for old, new in LEGACY_RENAMES:
        key = key.replace(old, new)
    if "blocks_MoA" in key:
        for old, new in LEGACY_MOA_RENAMES:
            key = key.replace(old, new)
    return key


def official_to_tcmoa(state: Mapping[str, torch.Tensor], model: TCMoA) -> dict[str, torch.Tensor]:
    """Rename an official state_dict (current or legacy names) to ours and check derived buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = modernize_official_key(key)
        if OFFICIAL_DERIVED.search(key):
            if key.endswith("relative_position_index"):
                _check_index(key, value, model)
            continue
        if key in ("Alpha_encoder", "Alpha_decoder"):
            part = "encoder" if key == "Alpha_encoder" else "decoder"
            for j, v in enumerate(value.flatten()):
                out[f"{part}_moa.{j}.mix"] = v.clone()
            continue
        shifts = re.match(r"^(decoder_)?blocks_MoA\.(\d+)\.modal_shifts(?:\.(\d+))?$", key)
        if shifts:  # legacy checkpoints stored the source embeddings; ours are (tasks, 2, C)
            _merge_source_embed(out, f"{_part(shifts[1])}_moa.{shifts[2]}.source_embed", shifts[3], value, model)
            continue
        for pattern, repl in OFFICIAL_KEY_MAP:
            m = re.match(pattern, key)
            if m:
                key = m.expand(repl.replace("{part}", _part(m[1]))) + key[m.end():]
                break
        out[key] = value
    return out


def _check_index(key: str, value: torch.Tensor, model: TCMoA) -> None:
    expected = relative_position_index(model.config.window_size)
    if value.shape != expected.shape or not torch.equal(value.to("cpu", expected.dtype), expected):
        raise CheckpointError(f"{key}: relative-position index differs from the {model.config.window_size}x"
                              f"{model.config.window_size} window this model uses")


def _merge_source_embed(out: dict[str, torch.Tensor], name: str, index: str | None, value: torch.Tensor,
                        model: TCMoA) -> None:
    target = cast(torch.Tensor, model.get_submodule(name.rsplit(".", 1)[0]).source_embed)
    current = out.setdefault(name, torch.zeros_like(target))
    if index is None:
        out[name] = value.reshape(target.shape).clone()
    else:
        current.view(-1, target.shape[-1])[int(index)] = value.reshape(-1)


def infer_official_config(state: Mapping[str, torch.Tensor], version: str = "2025") -> ModelConfig:
    """Read the architecture of an official (MAE-shaped) state_dict from its tensor shapes."""
    try:
        proj = state["patch_embed.proj.weight"]
        depth = len({k.split(".")[1] for k in state if re.match(r"^blocks\.\d+\.", k)})
        dec_depth = len({k.split(".")[1] for k in state if re.match(r"^decoder_blocks\.\d+\.", k)})
        heads = state["en_relative_position.0.relative_position_bias_table"].shape[1]
        dec_heads = state["de_relative_position.0.relative_position_bias_table"].shape[1]
        gate = state["blocks_MoA.0.MoA.w_gate"]
        dec_dim = state["decoder_embed.weight"].shape[0]
    except KeyError as missing:
        raise CheckpointError(f"not an official TC-MoA state_dict: key {missing} is missing") from None
    by_shape = {(c.embed_dim, c.depth): n for n, c in CONFIGS.items() if n.startswith("official")}
    name = by_shape.get((proj.shape[0], depth), "official-custom")
    return ModelConfig(name=name, patch_size=proj.shape[2], embed_dim=proj.shape[0], depth=depth, num_heads=heads,
                       decoder_embed_dim=dec_dim, decoder_depth=dec_depth, decoder_num_heads=dec_heads,
                       num_routers=gate.shape[0], num_experts=gate.shape[2],
                       routers=tuple(f"task{i}" for i in range(gate.shape[0])) if gate.shape[0] != 3
                       else OBJECTIVES,
                       decoder_restandardize=_restandardize_for(version))


def _restandardize_for(version: str) -> bool:
    if version not in ("2024", "2025"):
        raise ValueError(f"official code version must be '2024' or '2025', got {version!r}")
    return version == "2025"


def load_state_strict(model: TCMoA, state: Mapping[str, torch.Tensor], what: str,
                      allow_missing: tuple[str, ...] = ()) -> None:
    """Load weights, failing with the names of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_describe(mismatched)}")
    if problems:
        raise CheckpointError(f"{what} does not fit a {model.config.name} model: " + "; ".join(problems))
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)


def read_torch_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .pth state_dict (plain or under 'model') without unpickling arbitrary objects."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (weights_only refuses pickled code; a torn file fails to unzip)
        raise CheckpointError(f"{path}: not a readable weights-only PyTorch checkpoint ({exc})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors (optionally under 'model')")
    return obj


def load_official(source: str | Path | Mapping[str, torch.Tensor], version: str = "2025") -> TCMoA:
    """Build a model from an official TC-MoA checkpoint (.pth path or state_dict)."""
    state = read_torch_state(source) if isinstance(source, (str, Path)) else dict(source)
    model = TCMoA(infer_official_config({modernize_official_key(k): v for k, v in state.items()}, version))
    ours = official_to_tcmoa(state, model)
    # Checkpoints without source embeddings (all current ones) get zeros, their expected value.
    load_state_strict(model, ours, f"official checkpoint {source if isinstance(source, (str, Path)) else ''}".strip(),
                      allow_missing=tuple(n for n, _ in model.named_parameters() if n.endswith("source_embed")))
    model.info.update(source=str(source) if isinstance(source, (str, Path)) else "state_dict", trained=True)
    return model


def backbone_keys(model: TCMoA) -> list[str]:
    """State-dict keys of the backbone (everything that is not a TC-MoA parameter)."""
    tcmoa = {id(p) for p in model.tcmoa_parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in tcmoa]


def load_backbone(model: TCMoA, source: str | Path) -> None:
    """Load backbone weights (an MAE .pth, or our pre-trained model folder); TC-MoA stays fresh.

    A pre-trained folder of ours also carries the relative-position tables (in tcmoa.safetensors):
    for a model without absolute positions they are the backbone's only positional information,
    so they are loaded too. MAE checkpoints have none; the tables then stay freshly initialised.
    """
    path = Path(source)
    tables: dict[str, torch.Tensor] = {}
    if path.is_dir():
        if (path / TCMOA_FILE).is_file():
            tables = {k: v for k, v in read_safetensors(path / TCMOA_FILE)[0].items() if "_rel_pos." in k}
        path = path / BACKBONE_FILE
    state = read_safetensors(path)[0] if path.suffix == ".safetensors" else read_torch_state(path)
    state = {k: v for k, v in state.items() if k != "mask_token"} | tables  # mask_token: MAE's, unused
    wanted = set(backbone_keys(model)) | set(tables)
    load_state_strict(model, state, f"backbone {path}",
                      allow_missing=tuple(k for k in model.state_dict() if k not in wanted))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of one safetensors file, with a clear error for a bad file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (a corrupt header or a torn file, each its own type)
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def save_model(model: TCMoA, directory: str | Path, info: Mapping[str, object] | None = None) -> Path:
    """Save as <dir>/config.json + backbone.safetensors + tcmoa.safetensors (bit-exact)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    backbone = set(backbone_keys(model))
    meta = {"format": FORMAT_TAG, "info": json.dumps({**model.info, **(info or {})})}
    save_file({k: v for k, v in state.items() if k in backbone}, str(directory / BACKBONE_FILE), metadata=meta)
    save_file({k: v for k, v in state.items() if k not in backbone}, str(directory / TCMOA_FILE), metadata=meta)
    (directory / CONFIG_FILE).write_text(model.config.to_json() + "\n")
    return directory


def load_saved(directory: str | Path) -> TCMoA:
    """Load a model saved by `save_model`."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}; not a tcmoa model folder")
    try:
        config = ModelConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: invalid model config ({exc})") from None
    state: dict[str, torch.Tensor] = {}
    info: dict[str, object] = {}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no .safetensors weights next to {CONFIG_FILE}")
    for f in files:
        tensors, meta = read_safetensors(f)
        if overlap := sorted(set(tensors) & set(state)):
            raise CheckpointError(f"{f}: keys also found in another file: {_describe(overlap)}")
        state.update(tensors)
        info.update(json.loads(meta.get("info", "{}")))
    model = TCMoA(config)
    load_state_strict(model, state, f"model folder {directory}")
    model.info.update(info)
    model.info["source"] = str(directory)
    return model


def load_model(name_or_path: str | Path | None = None, device: str | torch.device = "cpu",
               version: str = "2025") -> TCMoA:
    """Load the shipped model (no argument), a saved folder, an official .pth, or an untrained preset."""
    if name_or_path is None:
        if not any(REPO_CHECKPOINTS.glob("*.safetensors")):
            raise FileNotFoundError(
                f"no trained model is shipped in {REPO_CHECKPOINTS} yet; pass a model folder, an official "
                "TC-MoA .pth, or a preset name (e.g. 'compact') for an untrained model")
        model = load_saved(REPO_CHECKPOINTS)
    elif isinstance(name_or_path, str) and name_or_path in CONFIGS:
        with torch.random.fork_rng(devices=[]):  # built on the CPU: only its stream is seeded, and restored after
            torch.manual_seed(0)  # an untrained preset is reproducible: the same weights every time
            model = TCMoA(get_config(name_or_path))
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model file or folder (presets: {', '.join(CONFIGS)})")
        if path.is_dir():
            model = load_saved(path)
        elif path.suffix in (".pth", ".pt", ".bin"):
            model = load_official(path, version)
        elif path.suffix == ".safetensors":
            model = load_saved(path.parent)
        else:
            raise CheckpointError(f"{path}: unknown checkpoint type (expected a folder, .pth or .safetensors)")
    return model.to(device).eval()
