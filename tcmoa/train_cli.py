"""The command lines of `tcmoa pack`, `tcmoa pretrain` and `tcmoa train`: argv -> typed options -> the library.

The library below (tcmoa.train) takes `PretrainOptions` / `TrainOptions` and raises
`TrainingError`; this module alone turns those into exit codes: a bad option value is one line
and exit 2, as argparse reports bad usage; inputs that do not fit together (a model without the
router, a folder of another stage, a model that does not load) end the command with their one
line (exit 1). Process-wide switches are set here, once per command, and nowhere in the library.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from .data_root import DATA_ROOT
from .device import pick_device
from .model.checkpoint import CheckpointError
from .train import data, fusion_stage, pretrain_stage
from .train.data import RECON_SCALE
from .train.loop import ChunkResult, read_state
from .train.options import (RUNTIME_OPTIONS, TRAIN_PRECISIONS, OptionError, PretrainOptions, RunOptions,
                            TrainingError, TrainOptions)

OptionsT = TypeVar("OptionsT", bound=RunOptions)


def add_run_arguments(ap: argparse.ArgumentParser, *, batch: int, size: int, lr: float, min_lr: float,
                      clip: float, eval_every: int) -> None:
    """The options both commands share (defaults differ per command)."""
    ap.add_argument("--pack", required=True, type=Path, help="training pack (python -m tcmoa pack)")
    ap.add_argument("--out", required=True, type=Path, help="folder for model, state, log and plot")
    ap.add_argument("--resume", type=Path, help="a folder written by an earlier chunk of the same run")
    ap.add_argument("--minutes", type=float, default=8.5, help="wall budget of this chunk, start-up included")
    ap.add_argument("--steps", type=int, help="total (outer) steps of the whole run")
    ap.add_argument("--budget-minutes", type=float,
                    help="instead of --steps: total training minutes; steps = budget / timed seconds per step")
    ap.add_argument("--chunk-steps", type=int, help="stop this chunk after this many steps")
    ap.add_argument("--batch", type=int, default=batch, help="crops per micro-batch (per rank, per --accumulate)")
    ap.add_argument("--accumulate", type=int,
                    help="micro-batches per rank and optimiser step (default 1; on --resume: what keeps the run's "
                         "global batch of ranks x accumulate micro-batches)")
    ap.add_argument("--size", type=int, default=size, help="square crop side in px (a multiple of one window)")
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--min-lr", type=float, default=min_lr)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=clip, help="max gradient norm (0: no clipping)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", type=float, default=0.02, help="fraction of each image group kept out of training")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=eval_every)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=TRAIN_PRECISIONS,
                    help="bf16 autocast (auto: on CUDA, and on CPUs with native bf16; ~1.9x faster on 2 Zen 4 cores)")


def _zoom_range(text: str) -> tuple[float, float]:
    """'1,2' -> (1.0, 2.0): a crop-side range relative to --size."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'LO,HI', got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI, got {text!r}")
    return lo, hi


def _levels(text: str) -> int:
    """'5' -> 5: a count of pyramid levels (0 or more)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def pretrain_parser() -> argparse.ArgumentParser:
    """The command line of `tcmoa pretrain`."""
    ap = argparse.ArgumentParser(prog="tcmoa pretrain", description=(pretrain_stage.__doc__ or "").split("\n")[0])
    ap.add_argument("--config", default="compact", help="preset name or a config .json")
    ap.add_argument("--init", help="start from this model folder's weights with a fresh optimiser and schedule "
                                   "(e.g. a short low-lr cool-down of a pre-trained backbone)")
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent warming up the lr")
    ap.add_argument("--min-scale", type=float, default=RECON_SCALE[0],
                    help="smallest crop, as a fraction of the image area (smaller: closer to native resolution)")
    add_run_arguments(ap, batch=64, size=192, lr=1e-3, min_lr=1e-5, clip=1.0, eval_every=2000)
    return ap


def train_parser() -> argparse.ArgumentParser:
    """The command line of `tcmoa train`."""
    ap = argparse.ArgumentParser(prog="tcmoa train", description=(fusion_stage.__doc__ or "").split("\n")[0])
    start = ap.add_mutually_exclusive_group()
    start.add_argument("--backbone", help="pre-trained backbone: a `tcmoa pretrain` folder or an MAE .pth")
    start.add_argument("--init", help="a full saved model to continue from (e.g. for --router-only)")
    ap.add_argument("--config", help="preset or config .json (default: the backbone folder's config.json)")
    ap.add_argument("--tasks", default="vif,mef,mff", help="tasks trained in turn, one optimiser step each")
    ap.add_argument("--router-only", help="train only this task's router rows and source embeddings")
    ap.add_argument("--router-init", default="vif", help="router the new one starts from (a task name, or 'zero')")
    ap.add_argument("--epochs", type=int, default=20, help="nominal epochs the steps are split into (official 20)")
    ap.add_argument("--warmup-epochs", type=int, default=2, help="warm-up epochs of the lr and the losses (official 2)")
    ap.add_argument("--zoom", type=_zoom_range, default=None,
                    help="crop side / --size in image pixels, e.g. 1,2 (native-scale crops; default: the tasks' area scales)")
    ap.add_argument("--fusion-output", choices=("source_weights", "pyramid"),
                    help="with --init: replace the model's output head by a fresh one of this kind (the rest is kept)")
    ap.add_argument("--coarse-levels", type=_levels, default=None,
                    help="with --init: give the pyramid head this many coarse levels (its other weights kept)")
    ap.add_argument("--loss-version", default="2025", choices=("2024", "2025", "tcmoa"),
                    help="official 2024/2025 weights, or ours: tcmoa (multi-scale, clip-aware; tcmoa/train/loss_weights.py)")
    add_run_arguments(ap, batch=16, size=192, lr=3e-4, min_lr=1e-5, clip=0.0, eval_every=1000)
    return ap


def parse_run_options(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; on --resume, every non-runtime option comes from the saved run (a differing one is noted)."""
    opts = ap.parse_args(argv)
    if not opts.pack.is_file():
        ap.error(f"--pack {opts.pack}: no such file (make one with `tcmoa pack --out FILE`)")
    if opts.accumulate is not None and opts.accumulate < 1:
        ap.error("--accumulate must be at least 1")
    try:
        pick_device(opts.device)
    except ValueError as exc:
        ap.error(f"--device: {exc}")
    if opts.resume is None:
        if (opts.steps is None) == (opts.budget_minutes is None):
            ap.error("give exactly one of --steps and --budget-minutes")
        return opts
    try:
        saved_args = read_state(opts.resume)["args"]
    except TrainingError as exc:
        ap.error(f"--resume: {exc}")
    for key, saved in saved_args.items():
        if key in RUNTIME_OPTIONS or not hasattr(opts, key):
            continue
        given = getattr(opts, key)
        given = str(given) if isinstance(given, Path) else given
        if given != saved and given != ap.get_default(key) and os.environ.get("RANK", "0") == "0":  # once per job
            print(f"note: --{key.replace('_', '-')} {given} ignored; the run was started with {saved}", file=sys.stderr)
        setattr(opts, key, saved)
    return opts


def parse_pretrain(argv: Sequence[str] | None = None) -> PretrainOptions:
    """`tcmoa pretrain`'s argv as typed options (a resumed run's own options)."""
    return PretrainOptions(**vars(parse_run_options(pretrain_parser(), argv)))


def parse_train(argv: Sequence[str] | None = None) -> TrainOptions:
    """`tcmoa train`'s argv as typed options (a resumed run's own options)."""
    ap = train_parser()
    opts = parse_run_options(ap, argv)
    if not opts.resume and not (opts.init if opts.router_only else opts.backbone or opts.init):
        ap.error("a new run needs --backbone (TC-MoA training) or --init (a trained model; needed by --router-only)")
    return TrainOptions(**vars(opts))


def run_chunk(run: Callable[[OptionsT, float], ChunkResult], opts: OptionsT, started: float) -> ChunkResult:
    """One chunk of a run with the process-wide switches set; training's errors end the command in one line."""
    # TF32 tensor cores for the fp32 work (TC-MoA modules and losses run outside bf16 autocast) on
    # Ampere and later GPUs: a 10-bit mantissa in the products, fp32 accumulation. No effect on a CPU.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        return run(opts, started)
    except OptionError as exc:  # bad usage: one line and exit 2, as argparse
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (TrainingError, CheckpointError, FileNotFoundError) as exc:  # the message alone, exit 1
        raise SystemExit(str(exc)) from None


def pretrain_main(argv: Sequence[str] | None = None) -> ChunkResult:
    """`tcmoa pretrain`: parse, load the pack, run one chunk."""
    started = time.monotonic()  # the chunk's budget includes loading the pack
    return run_chunk(pretrain_stage.pretrain, parse_pretrain(argv), started)


def train_main(argv: Sequence[str] | None = None) -> ChunkResult:
    """`tcmoa train`: parse, load the pack, run one chunk."""
    started = time.monotonic()
    return run_chunk(fusion_stage.train, parse_train(argv), started)


def pack_main(argv: Sequence[str] | None = None) -> None:
    """`tcmoa pack` (the training pack), and `bench` (time loading a pack and drawing batches)."""
    ap = argparse.ArgumentParser(prog="tcmoa", description=(data.__doc__ or "").split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack the training images into one safetensors file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--root", type=Path, default=DATA_ROOT,
                   help="data root holding pretrain/natural and train/ (default: $TCMOA_DATA, else ../shared/data)")
    p.add_argument("--max-side", type=int, default=1280, help="longest side kept (1280: every training set at its native size)")
    p.add_argument("--mef-max-side", type=int, default=1280)
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--codec", choices=("jpeg", "png"), default="jpeg")
    b = sub.add_parser("bench", help="time loading a pack and drawing batches")
    b.add_argument("pack", type=Path)
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--batches", type=int, default=100)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--size", type=int, default=224)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        data.pack(a.out, a.root / "pretrain" / "natural", a.root / "train", a.max_side, a.mef_max_side, a.quality, a.codec)
    else:
        data.bench(a.pack, a.device, a.batches, a.batch, a.size)
