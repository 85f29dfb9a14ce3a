"""Seconds per training step on this machine, per stage and setting (the CPU recipe's evidence).

    python -m benchmarks.train_speed                        # needs the pack (python -m tcmoa pack)
    python -m benchmarks.train_speed --pack PACK --timed 10

Each row builds the real stage (tcmoa.train.pretrain_stage / tcmoa.train.fusion_stage) and times `--timed` steps after 3
warm-up steps with `training.probe_seconds_per_step`, on a throw-away model: precision fp32 vs bf16
autocast, 2 vs 1 intra-op threads. Rows run in one process, one after another, so they compare
under the same load; absolute times on a shared machine are noise, the ratios are the result.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tcmoa.train import fusion_stage, pretrain_stage
from tcmoa.train_cli import parse_pretrain, parse_train
from tcmoa.model.config import get_config
from tcmoa.model.network import TCMoA
from tcmoa.train.data import load_pack
from tcmoa.train.loop import probe_seconds_per_step, split_holdout

SETTINGS = (("fp32", 2), ("bf16", 2), ("fp32", 1), ("bf16", 1))


def stage_for(name: str, pack: Path, precision: str, batch: int, size: int):
    """A pretrain or TC-MoA stage with the recipe's options, and a fresh model for it."""
    banks, held = split_holdout(load_pack(pack), 0.02)
    common = ["--pack", str(pack), "--out", "/tmp/unused", "--steps", "1", "--batch", str(batch),
              "--size", str(size), "--precision", precision, "--device", "cpu"]
    stage: pretrain_stage.PretrainStage | fusion_stage.FusionStage
    if name == "pretrain":
        stage = pretrain_stage.PretrainStage(parse_pretrain(common), banks, held)
    else:  # a fresh compact model stands in for the pre-trained backbone: same cost per step
        stage = fusion_stage.FusionStage(parse_train(common + ["--config", "compact", "--backbone", "unused"]), banks, held)
    torch.manual_seed(0)
    model = stage.build_model(torch.device("cpu")) if name == "pretrain" else TCMoA(get_config("compact"))
    return stage, model, stage.opts


def main() -> None:
    """Time every (stage, precision, threads) row and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, default=Path(".carry/train_pack.safetensors"))
    ap.add_argument("--timed", type=int, default=10)
    args = ap.parse_args()
    rows = [("pretrain", 16, 128), ("tcmoa (vif+mef+mff)", 4, 128)]
    print("| stage | batch x crop | precision | threads | s/step | vs fp32, 2 threads |")
    print("|---|---|---|---:|---:|---:|")
    for name, batch, size in rows:
        base = None
        for precision, threads in SETTINGS:
            torch.set_num_threads(threads)
            stage, model, opts = stage_for(name.split()[0], args.pack, precision, batch, size)
            sec = probe_seconds_per_step(stage, model, opts.lr, torch.device("cpu"), timed=args.timed)
            base = base or sec
            print(f"| {name} | {batch} x {size} | {precision} | {threads} | {sec:.3f} | {base / sec:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
