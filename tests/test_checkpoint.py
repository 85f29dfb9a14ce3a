"""Checkpoints: our safetensors format round-trips bit-exactly; official and MAE files load; bad files fail clearly."""
from __future__ import annotations

import json

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tcmoa.model import checkpoint
from tcmoa.model.checkpoint import (CheckpointError, load_backbone, load_model, load_official, save_model)
from tcmoa.model.config import get_config
from tcmoa.model.network import TCMoA

from .conftest import OFFICIAL_FIXTURE, fixture_file


@pytest.fixture(scope="module")
def official_state():
    weights = np.load(fixture_file(OFFICIAL_FIXTURE, "official_tiny_weights.npz"))
    return {k: torch.from_numpy(weights[k]) for k in weights.files}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("preset", ["compact", "official-tiny"])
def test_safetensors_round_trip_is_bit_exact(tmp_path, preset):
    model = load_model(preset)
    with torch.no_grad():  # make every parameter distinctive, including the zero-initialised ones
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    folder = save_model(model, tmp_path / "m", info={"trained": True, "steps": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["backbone.safetensors", "config.json", "tcmoa.safetensors"]
    loaded = load_model(folder)
    assert loaded.config == model.config and same_weights(model, loaded)
    assert loaded.info["trained"] is True and loaded.info["steps"] == 3
    side = model.config.size_multiple
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        assert torch.equal(model(x, x.flip(-1)).fused, loaded(x, x.flip(-1)).fused)


def test_config_json_from_before_the_router_rename_loads(tmp_path):
    # Checkpoints saved before "task_names"/"num_tasks" became "routers"/"num_routers" need no migration.
    folder = save_model(load_model("compact"), tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())
    assert "routers" in saved and "task_names" not in saved
    old = {("task_names" if k == "routers" else "num_tasks" if k == "num_routers" else k): v for k, v in saved.items()}
    (folder / "config.json").write_text(json.dumps(old))
    loaded = load_model(folder)
    assert loaded.config.routers == ("vif", "mef", "mff", "medical") and loaded.config.num_routers == 4


def test_official_pth_loads_plain_or_under_model(tmp_path, official_state):
    reference = load_official(official_state)
    for name, payload in (("plain.pth", official_state), ("wrapped.pth", {"model": official_state})):
        torch.save(payload, tmp_path / name)
        model = load_model(tmp_path / name)
        assert same_weights(model, reference) and model.info["trained"] is True


def to_legacy_name(key: str) -> str:
    """The April-2024 name of an official key (the inverse of main_predict_oldckp.py's renames)."""
    for new, old in (("de_FusionLayer", "de_projAdapter"), ("FusionLayer", "en_projAdapter")):
        if key.startswith(new):
            return old + key[len(new):]
    if "blocks_MoA" in key:
        key = key.replace("blocks_MoA", "blocks_SSF_rgb").replace(".MoA.", ".mlp.")
        key = key.replace(".dimReduction.", ".SE_en_linear.")
    return key


def test_legacy_names_and_source_embeddings_load(official_state):
    legacy = {to_legacy_name(k): v for k, v in official_state.items()}
    assert any(k.startswith("de_projAdapter") for k in legacy) and any(".mlp.w_gate" in k for k in legacy)
    shifts = torch.randn(6, 128)
    for i in range(6):  # old checkpoints stored the per-task, per-source embeddings
        legacy[f"blocks_SSF_rgb.0.SSF_beta.{i}"] = shifts[i]
    model = load_official(legacy)
    assert same_weights(load_official(official_state).encoder_moa[1], model.encoder_moa[1])
    torch.testing.assert_close(model.encoder_moa[0].source_embed, shifts.reshape(3, 2, 128))


def test_official_2024_version_switches_restandardisation(official_state):
    assert load_official(official_state, version="2025").decoder_moa[0].restandardize
    assert not load_official(official_state, version="2024").decoder_moa[0].restandardize
    with pytest.raises(ValueError, match="'2024' or '2025'"):
        load_official(official_state, version="2023")


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("blocks.3.mlp.fc1.weight"), "missing keys: blocks.3.mlp.fc1.weight"),
    (lambda s: s.__setitem__("blocks.9.norm1.weight", torch.ones(128)), "unexpected keys: blocks.9.norm1.weight"),
    (lambda s: s.__setitem__("blocks.0.mlp.fc1.bias", torch.ones(7)),
     r"shape mismatches: blocks.0.mlp.fc1.bias \(7,\) vs model \(512,\)"),
    (lambda s: s.__setitem__("en_relative_position.0.relative_position_index", torch.zeros(196, 196, dtype=torch.long)),
     "relative-position index differs"),
    (lambda s: s.pop("patch_embed.proj.weight"), "not an official TC-MoA state_dict"),
])
def test_bad_official_checkpoints_name_the_problem(official_state, damage, message):
    state = dict(official_state)
    damage(state)
    with pytest.raises(CheckpointError, match=message):
        load_official(state)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 torn zip"])
def test_corrupt_files_fail_clearly(tmp_path, content):
    for suffix in (".pth", ".safetensors"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        if suffix == ".safetensors":
            (tmp_path / "config.json").write_text(get_config("compact").to_json())
        with pytest.raises(CheckpointError):
            load_model(path)


def test_saved_folder_problems(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_model(tmp_path)
    save_model(load_model("compact"), tmp_path)
    save_file({"norm.weight": torch.ones(128)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match="keys also found in another file: norm.weight"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "nowhere")


def test_default_model_needs_a_shipped_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "REPO_CHECKPOINTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="no trained model is shipped"):
        load_model()
    save_model(load_model("compact"), tmp_path, info={"trained": True})
    assert load_model().info["trained"] is True


def test_backbone_alone_loads_and_leaves_tcmoa_fresh(tmp_path):
    source = load_model("compact")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    save_model(source, tmp_path)
    target = TCMoA(get_config("compact"))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    load_backbone(target, tmp_path)
    # Our pre-trained folders also give the relative-position tables (compact's only positions).
    backbone = set(checkpoint.backbone_keys(target)) | {k for k in target.state_dict() if "_rel_pos." in k}
    for key, value in target.state_dict().items():
        expected = source.state_dict()[key] if key in backbone else before[key]
        assert torch.equal(value, expected), key
    # An MAE .pth (with its unused mask_token) works too.
    mae = {k: v for k, v in source.state_dict().items() if k in checkpoint.backbone_keys(target)}
    mae["mask_token"] = torch.zeros(1, 1, 128)
    torch.save({"model": mae}, tmp_path / "mae.pth")
    load_backbone(TCMoA(get_config("compact")), tmp_path / "mae.pth")


def test_an_untrained_preset_is_reproducible_and_leaves_the_random_stream_alone():
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    first = load_model("official-tiny")
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream goes on where it was
    torch.rand(3)  # whatever the caller draws in between
    assert same_weights(first, load_model("official-tiny"))
