"""Training commands on the CPU with a tiny model: losses fall, the right parameters move, resume is exact."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tcmoa.model.checkpoint import backbone_keys, load_backbone, load_model, save_model
from tcmoa.model.config import get_config
from tcmoa.train.data import pack
from tcmoa.train.loop import Schedule, read_state, split_holdout, stream_seed
from tcmoa.cli import main as cli_main
from tcmoa.train import fusion_stage
from tcmoa.train.options import TrainingError
from tcmoa.train_cli import parse_train, pretrain_main, train_main

# 32-wide, 2+2 blocks, 4x4-token windows of 8-px patches: sizes in multiples of 32 px.
TINY = dataclasses.replace(get_config("compact"), name="tiny", embed_dim=32, depth=2, num_heads=2,
                           decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2, window_size=4,
                           shift_size=2, adapter_ratio=4)
COMMON = ["--batch", "4", "--size", "32", "--log-every", "1", "--eval-every", "0", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("single_thread")


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """A (h, w[, c]) uint8 image with structure at a few scales."""
    img = F.interpolate(torch.from_numpy(rng.random((1, c, 5, 5), dtype=np.float32)), size=(h, w),
                        mode="bicubic", align_corners=False)[0].clamp(0, 1)
    img = 0.8 * img + 0.2 * torch.from_numpy(rng.random((c, h, w), dtype=np.float32))
    a = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return a[..., 0] if c == 1 else a


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny pack (natural images; vif, mef and medical pairs) and the tiny config as JSON."""
    root = tmp_path_factory.mktemp("training")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(smooth_image(rng, 64 + 8 * (i % 3), 72, 3)).save(root / f"n{i}.png")
    layout = {"vif/a": ("vi", 3, "ir", 1), "mef/b": ("over", 3, "under", 3), "medical/c_ct": ("mri", 1, "ct", 1)}
    for d, (ra, ca, rb, cb) in layout.items():
        for i in range(5):
            for role, c in ((ra, ca), (rb, cb)):
                (root / "train" / d / role).mkdir(parents=True, exist_ok=True)
                Image.fromarray(smooth_image(rng, 64, 64 + 8 * i, c)).save(root / "train" / d / role / f"p{i}.png")
    (root / "natural").mkdir()
    for f in root.glob("n*.png"):
        f.rename(root / "natural" / f.name)
    pack(root / "pack.safetensors", root / "natural", root / "train", max_side=1000, codec="png", workers=1,
         verbose=False)
    (root / "tiny.json").write_text(TINY.to_json())
    return root


def run_pretrain(root, out, *extra: str):
    """A chunk of tiny pre-training."""
    return pretrain_main(["--pack", str(root / "pack.safetensors"), "--out", str(out), "--config",
                          str(root / "tiny.json"), "--lr", "3e-3", *COMMON, *extra])


def run_train(root, out, *extra: str):
    """A chunk of tiny TC-MoA (or router-only) training."""
    return train_main(["--pack", str(root / "pack.safetensors"), "--out", str(out), "--lr", "2e-3", *COMMON, *extra])


@pytest.fixture(scope="module")
def backbone(workdir):
    """A pre-trained tiny backbone (30 steps), shared by the tests below."""
    result = run_pretrain(workdir, workdir / "pre", "--steps", "30", "--eval-every", "15")
    return workdir / "pre", result


def losses(out, key: str = "loss") -> list[float]:
    """The per-step values of `key` in a run's log."""
    return [r[key] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "lr" in r]


def state_equal(a: dict, b: dict, keys=None) -> bool:
    """Bit-identical tensors for `keys` (default all)."""
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


def test_schedule_and_seeds():
    s = Schedule(100, 10, 1e-3, 1e-5, epochs=20)
    assert s.lr(0) == 0 and s.lr(10) == pytest.approx(1e-3) and s.lr(100) == pytest.approx(1e-5)
    assert all(s.lr(i) >= s.lr(i + 1) for i in range(10, 100))
    assert [s.epoch(i) for i in (0, 9, 10, 99)] == [0, 1, 2, 19]  # warm-up losses for the first 10%
    assert len({stream_seed(0, st, k) for st in range(50) for k in range(4)}) == 200


def test_holdout_is_kept_out(workdir):
    from tcmoa.train.data import load_pack
    banks = load_pack(workdir / "pack.safetensors", "cpu", workers=1)
    train_banks, held = split_holdout(banks, 0.02)
    for name, bank in banks.items():
        assert len(train_banks[name]) + len(held[name]) == len(bank) and len(held[name]) == 1
        assert torch.equal(held[name].image(0), bank.image(len(bank) - 1))  # the last image, pixels intact
        assert torch.equal(train_banks[name].image(0), bank.image(0))


def test_pretrain_reduces_loss_and_saves(backbone):
    out, result = backbone
    curve = losses(out)
    assert len(curve) == 30 and np.mean(curve[-5:]) < 0.85 * np.mean(curve[:5])
    evals = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "eval"]
    assert [e["step"] for e in evals] == [0, 15, 30] and evals[2]["psnr"] > evals[1]["psnr"] > evals[0]["psnr"]
    for f in ("config.json", "backbone.safetensors", "tcmoa.safetensors", "state.pt", "log.jsonl", "loss.png", "run.json"):
        assert (out / f).is_file(), f
    # (e) the saved folder loads with load_model and round-trips bit-exactly.
    loaded = load_model(out)
    assert state_equal(result.model.state_dict(), loaded.state_dict())
    save_model(loaded, out.parent / "pre_copy")
    assert state_equal(loaded.state_dict(), load_model(out.parent / "pre_copy").state_dict())
    state = read_state(out)
    assert state["step"] == 30 and state["stage"] == "pretrain" and result.summary["done"]


def test_tcmoa_training_moves_only_tcmoa(backbone, workdir):
    pre, _ = backbone
    result = run_train(workdir, workdir / "tc", "--backbone", str(pre), "--steps", "24", "--warmup-epochs", "0")
    start = load_model(pre).state_dict()
    end = result.model.state_dict()
    keys = backbone_keys(result.model)
    assert keys and state_equal(start, end, keys)  # frozen backbone: bit-identical
    # The pre-trained rel-pos tables were loaded (then trained as TC-MoA parameters, as officially).
    fresh = fusion_stage.TCMoA(TINY)
    load_backbone(fresh, pre)
    assert state_equal(start, fresh.state_dict(), [k for k in start if "_rel_pos." in k])
    moved = [k for k in end if k not in keys and not torch.equal(start[k], end[k])]
    assert any(".adapter_bank." in k for k in moved) and any(".fusion." in k for k in moved)
    for task in ("vif", "mef", "mff"):
        curve = losses(workdir / "tc", task)
        assert len(curve) == 24 and np.isfinite(curve).all()
    # The held-out losses (fixed crops, main-phase weights) fall from their step-0 values. MFF is the
    # exception allowed a small rise: the fusion head starts at the sources' prompt-weighted average,
    # which on this pack's smooth synthetic images is already near MFF's best, and the VIF and MEF
    # steps of each outer step pull the shared adapters first (measured: 4.367 -> 4.397 here).
    evals = [r for r in map(json.loads, (workdir / "tc" / "log.jsonl").read_text().splitlines())
             if r.get("event") == "eval"]
    assert [e["step"] for e in evals] == [0, 24]
    start, end = evals
    for task in ("vif", "mef"):
        assert end[f"val_{task}"] < start[f"val_{task}"], task
    assert end["val_mff"] < 1.02 * start["val_mff"]
    assert sum(end[f"val_{t}"] for t in ("vif", "mef", "mff")) < sum(start[f"val_{t}"] for t in ("vif", "mef", "mff"))
    # The medical router (not trained here) is untouched.
    assert all(torch.equal(start[k][3], end[k][3]) for k in end if k.endswith(fusion_stage.ROUTER_ROWS))


def test_router_only_moves_only_its_router(backbone, workdir):
    pre, _ = backbone
    base = run_train(workdir, workdir / "tc_short", "--backbone", str(pre), "--steps", "3").model.state_dict()
    med = ["--init", str(workdir / "tc_short"), "--router-only", "medical", "--steps", "6"]
    init = run_train(workdir, workdir / "med0", *med, "--chunk-steps", "0").model.state_dict()
    end = run_train(workdir, workdir / "med", *med).model.state_dict()
    rows = [k for k in end if k.endswith(fusion_stage.ROUTER_ROWS)]
    # gate, noise, source_embed of one encoder and one decoder module, and the pyramid head's 4 gains
    assert len(rows) == 3 * 2 + 4
    assert state_equal(base, end, [k for k in end if k not in rows])  # adapters, fusion, backbone: untouched
    for k in rows:
        assert torch.equal(base[k][:3], end[k][:3]), k  # vif / mef / mff rows bit-identical
        assert torch.equal(init[k][3], base[k][0]), k  # the medical router starts as a copy of VIF's
    # Medical's coarse levels are switched off (a fixed switch, not copied with the rows), so their gain
    # gets no gradient; everything else the router owns moves.
    assert end["fusion_head.coarse_mix"].tolist() == [1.0, 1.0, 0.0, 0.0]
    for kind in fusion_stage.ROUTER_ROWS:  # ... and then learns: gate, noise and source embeddings all move
        moved = any(not torch.equal(end[k][3], init[k][3]) for k in rows if k.endswith(kind))
        assert moved == (kind != "fusion_head.coarse_gain"), kind
    assert read_state(workdir / "med")["stage"] == "router-medical"


@pytest.mark.parametrize("stage", ["pretrain", "tcmoa"])
def test_resume_is_bit_exact(backbone, workdir, stage):
    pre, _ = backbone
    if stage == "pretrain":
        go = lambda out, *a: run_pretrain(workdir, out, *a)  # noqa: E731
        first: tuple[str, ...] = ()
    else:
        go = lambda out, *a: run_train(workdir, out, *a)  # noqa: E731
        first = ("--backbone", str(pre))
    whole = go(workdir / f"{stage}_whole", *first, "--steps", "6").model.state_dict()
    part = go(workdir / f"{stage}_a", *first, "--steps", "6", "--chunk-steps", "3")
    assert not part.summary["done"] and part.summary["step"] == 3
    # A changed hyper-parameter on resume is ignored: the run keeps its own.
    rest = go(workdir / f"{stage}_b", "--resume", str(workdir / f"{stage}_a"), "--lr", "0.5", "--steps", "99")
    assert rest.summary["done"] and rest.summary["step"] == 6 and len(rest.summary["chunks"]) == 2
    assert state_equal(whole, rest.model.state_dict())
    assert state_equal(whole, load_model(workdir / f"{stage}_b").state_dict())
    assert losses(workdir / f"{stage}_b") == losses(workdir / f"{stage}_whole")  # the log carries over too


def test_budget_mode_fixes_steps_from_a_probe(backbone, workdir):
    pre, _ = backbone
    result = run_train(workdir, workdir / "budget", "--backbone", str(pre), "--budget-minutes", "0.02",
                       "--chunk-steps", "1")
    probe = [r for r in map(json.loads, (workdir / "budget" / "log.jsonl").read_text().splitlines())
             if r.get("event") == "probe"]
    assert len(probe) == 1 and probe[0]["total_steps"] == result.summary["total_steps"] >= 1


def test_a_crop_size_off_the_window_multiple_is_one_line_and_exit_2(workdir, backbone, tmp_path, capsys):
    # The tiny model's windows are 4 tokens of 8 px: --size must be a multiple of 32. Checked once, against
    # the model the run uses (fresh, --backbone, --init or --resume), before any step; exit 2 as argparse.
    pack = str(workdir / "pack.safetensors")
    runs = {"pretrain": ["pretrain", "--config", str(workdir / "tiny.json")],
            "train": ["train", "--backbone", str(backbone[0])]}
    for name, command in runs.items():
        with pytest.raises(SystemExit) as stop:
            cli_main([*command, "--pack", pack, "--out", str(tmp_path / name), *COMMON, "--size", "40", "--steps", "1"])
        assert stop.value.code == 2, name
        err = capsys.readouterr().err
        assert "--size 40 is not a multiple of 32 px" in err and "try --size 32 or 64" in err, err
        assert "Traceback" not in err and "pad or resize" not in err  # not the inference advice


def test_coarse_levels_option_is_checked_before_any_step(workdir, backbone, tmp_path, capsys):
    # A negative count is an argparse error; coarse levels on another kind of head say so in one line.
    pack = str(workdir / "pack.safetensors")
    with pytest.raises(SystemExit) as stop:
        cli_main(["train", "--init", str(backbone[0]), "--pack", pack, "--out", str(tmp_path / "neg"), *COMMON,
                  "--coarse-levels", "-1", "--steps", "1"])
    assert stop.value.code == 2 and "must be 0 or more, got -1" in capsys.readouterr().err
    base = run_train(workdir, tmp_path / "tc", "--backbone", str(backbone[0]), "--steps", "1")
    assert base.model.config.fusion_output == "pyramid"
    with pytest.raises(SystemExit, match="--coarse-levels applies to the pyramid head"):
        run_train(workdir, tmp_path / "sw", "--init", str(tmp_path / "tc"), "--fusion-output", "source_weights",
                  "--coarse-levels", "2", "--steps", "1")
    with pytest.raises(ValueError, match="pyramid_coarse_levels must be >= 0"):
        dataclasses.replace(TINY, pyramid_coarse_levels=-1)


def test_a_chunk_leaves_the_callers_random_stream_as_it_was(workdir, backbone, tmp_path):
    # The run seeds the global RNG (a fresh model, router noise) inside a fork of it.
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    run_train(workdir, tmp_path / "tc", "--backbone", str(backbone[0]), "--steps", "1")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_the_library_raises_domain_errors_the_command_turns_into_one_line(workdir, backbone, tmp_path, capsys):
    opts = parse_train(["--pack", str(workdir / "pack.safetensors"), "--out", str(tmp_path / "x"), *COMMON,
                        "--backbone", str(backbone[0]), "--steps", "1", "--tasks", "vif,sonar"])
    with pytest.raises(TrainingError, match="unknown router 'sonar'"):
        fusion_stage.FusionStage(opts, {}, {})
    with pytest.raises(SystemExit) as stop:  # the command: the message alone, no traceback
        run_train(workdir, tmp_path / "x", "--backbone", str(backbone[0]), "--steps", "1", "--tasks", "vif,sonar")
    assert "unknown router 'sonar'" in str(stop.value.code)
    pre = ["--pack", str(workdir / "pack.safetensors"), "--out", str(tmp_path / "y"), *COMMON, "--steps", "1"]
    with pytest.raises(SystemExit) as stop:  # a chunk folder of another stage: refused before any step
        train_main([*pre, "--resume", str(backbone[0])])
    assert "holds a 'pretrain' run, not 'tcmoa'" in str(stop.value.code)
    with pytest.raises(SystemExit) as stop:  # not a chunk folder at all: argparse's one line, exit 2
        train_main([*pre, "--resume", str(tmp_path)])
    assert stop.value.code == 2 and "--resume: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a model that is not there
        train_main([*pre, "--init", str(tmp_path / "nothing")])
    assert "no such model file or folder" in str(stop.value.code)
    with pytest.raises(SystemExit) as stop:  # no pack: said before anything loads
        pretrain_main(["--pack", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "z"), "--steps", "1"])
    assert stop.value.code == 2 and "--pack" in capsys.readouterr().err and not (tmp_path / "z").exists()
