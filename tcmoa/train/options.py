"""The options of a training run, typed, and the errors a run reports instead of exiting.

The command line (tcmoa/train_cli.py) parses argv into `PretrainOptions` or `TrainOptions` and
passes them down; nothing below it sees argparse. The parser owns the defaults and the help; these
classes own the types. A run saves its options (`plain_options`) and a resumed run takes every
option outside RUNTIME_OPTIONS from there, so a chunk cannot silently change the run.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch

from .losses import LossVersion

# Options that may change between chunks; every other option is fixed by the first chunk.
RUNTIME_OPTIONS = frozenset({"pack", "out", "resume", "minutes", "chunk_steps", "device", "log_every",
                             "eval_every", "precision", "accumulate"})
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")


class TrainingError(ValueError):
    """The inputs of a run do not fit together (a model without the router, a folder of another stage)."""


class OptionError(TrainingError):
    """An option's value does not fit the run (e.g. --size against the model's windows): bad usage."""


@dataclass
class RunOptions:
    """What every training command takes (the --flags of `tcmoa pretrain` and `tcmoa train`)."""

    pack: Path  # the training pack (python -m tcmoa pack)
    out: Path  # folder for model, state, log and plot
    resume: Path | None  # a folder written by an earlier chunk of the same run
    minutes: float  # wall budget of this chunk, start-up included
    steps: int | None  # total (outer) steps of the whole run ...
    budget_minutes: float | None  # ... or total training minutes, steps from a timing probe
    chunk_steps: int | None  # stop this chunk after this many steps
    batch: int  # crops per micro-batch
    accumulate: int | None  # micro-batches per rank and optimiser step (None: 1, or what a resumed run had)
    size: int  # square crop side in px (whole attention windows)
    lr: float
    min_lr: float
    weight_decay: float
    clip: float  # max gradient norm (0: no clipping)
    seed: int
    holdout: float  # fraction of each image group kept out of training
    log_every: int
    eval_every: int  # 0: only at the start and the end of a chunk
    device: str
    precision: str  # one of TRAIN_PRECISIONS


@dataclass
class PretrainOptions(RunOptions):
    """`tcmoa pretrain`: the backbone as an autoencoder."""

    config: str  # preset name or config .json
    init: str | None  # start from this model folder's weights (fresh optimiser and schedule)
    warmup: float  # fraction of the steps spent warming up the lr
    min_scale: float  # smallest crop, as a fraction of the image area


@dataclass
class TrainOptions(RunOptions):
    """`tcmoa train`: TC-MoA on a frozen backbone, or one router alone."""

    backbone: str | None  # pre-trained backbone: a `tcmoa pretrain` folder or an MAE .pth
    init: str | None  # a full saved model to continue from
    config: str | None  # preset or config .json (None: the backbone folder's config.json)
    tasks: str  # comma-separated tasks trained in turn, e.g. "vif,mef,mff"
    router_only: str | None  # train only this task's router rows and source embeddings
    router_init: str  # router the new one starts from (a task name, or 'zero')
    epochs: int  # nominal epochs the steps are split into
    warmup_epochs: int
    zoom: tuple[float, float] | None  # crop side / size range (None: the tasks' area scales)
    fusion_output: str | None  # with init: a fresh output head of this kind
    coarse_levels: int | None  # with init: the pyramid head's coarse levels
    loss_version: LossVersion  # official "2024" / "2025" weights, or ours: "tcmoa"


def plain_options(opts: RunOptions) -> dict[str, Any]:
    """Options as JSON/weights_only-safe primitives (paths as text), as a run saves them."""
    return {f.name: str(v) if isinstance(v := getattr(opts, f.name), Path) else v for f in dataclasses.fields(opts)}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'bf16' or 'fp32': auto picks bf16 on CUDA and on CPUs with native bf16 kernels (oneDNN)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    try:  # a private oneDNN query: a torch build without it counts as "no native bf16"
        native = device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str = "auto") -> ContextManager:
    """bf16 autocast (no GradScaler needed, unlike the official fp16) or plain fp32.

    The TC-MoA modules and the losses switch autocast off inside, as the official code does, so
    only the backbone's matmuls run in bf16; parameters and optimiser state stay fp32.
    """
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
