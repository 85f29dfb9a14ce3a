"""Pre-train the backbone (encoder + decoder, no TC-MoA) as an autoencoder on crops of the training pack.

    tcmoa pretrain --pack .carry/train_pack.safetensors --out runs/pretrain --budget-minutes 7.5
    tcmoa pretrain --pack .carry/train_pack.safetensors --out runs/pretrain2 --resume runs/pretrain

Why a plain (unmasked) autoencoder rather than MAE's masked one: the fusion model only ever runs
the backbone on complete images and decodes pixels through the frozen head, so what the backbone
must do well is reproduce every visible detail; MAE's loss covers only masked patches (the official
code needed a GAN-finetuned MAE for sharp visible patches) and our model has no mask token. The
task is not a trivial identity: an 8x8x3 = 192-value patch passes through 128-wide tokens, and the
windowed attention must share context across tokens to fill that gap. Loss: L1 + (1 - SSIM) on
[0, 1] pixels, the same SSIM the fusion losses use, so the backbone is good at what they reward.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from timm.optim import param_groups_weight_decay
from torch import Tensor

from ..model.checkpoint import load_model
from ..model.config import resolve_config
from .data import ImageBank, load_pack, reconstruction_batch
from ..device import pick_device
from .losses import official_ssim
from ..metrics.vifb import reference_psnr
from ..model.network import TCMoA, denormalize, normalize, unnormalize
from ..distributed import MicroBatches, SyncedModel, process_group
from .loop import ChunkResult, Schedule, run_stage, split_holdout, stream_seed
from .options import PretrainOptions, autocast

MAX_EVAL_IMAGES = 16  # per image group: bounds the evaluation time


def backbone_named_parameters(model: TCMoA) -> list[tuple[str, torch.nn.Parameter]]:
    """Everything `reconstruct` uses: the backbone and the relative-position tables (no TC-MoA modules, no fusion head).

    Nothing else: under DDP a trainable parameter without a gradient is an error (no find_unused_parameters).
    """
    return [(n, p) for n, p in model.named_parameters()
            if not n.startswith(("encoder_moa.", "decoder_moa.", "fusion_head."))
            and n not in ("pos_embed", "decoder_pos_embed")]


def reconstruction_loss(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """L1 + (1 - SSIM) between the unclipped pixels of a prediction and [0, 1] targets."""
    pixels = unnormalize(pred.float())
    l1 = (pixels - target).abs().mean()
    s = official_ssim(pixels, target)
    return {"loss": l1 + (1 - s), "l1": l1, "ssim": s}


def whole_image(img: Tensor, multiple: int) -> Tensor | None:
    """Centre crop (C, h, w) to the largest multiple of the window in each side (None if too small)."""
    h, w = (img.shape[1] // multiple) * multiple, (img.shape[2] // multiple) * multiple
    if h == 0 or w == 0:
        return None
    top, left = (img.shape[1] - h) // 2, (img.shape[2] - w) // 2
    return img[:, top:top + h, left:left + w]


class PretrainStage:
    """Stage for `run_stage`: backbone autoencoder on reconstruction_batch crops."""

    name = "pretrain"
    plot_series: tuple[str, ...] = ("loss", "l1")

    def __init__(self, opts: PretrainOptions, banks: dict[str, ImageBank], held: dict[str, ImageBank]):
        self.opts, self.banks, self.held = opts, banks, held
        self.config = resolve_config(opts.config)
        self.device = pick_device(opts.device)

    def build_model(self, device: torch.device) -> TCMoA:
        """A fresh model of the configured preset, or --init's weights (a new schedule on a trained backbone)."""
        if self.opts.init:
            return load_model(self.opts.init, device)
        return TCMoA(self.config).to(device)

    def param_groups(self, model: TCMoA) -> list[dict[str, Any]]:
        """Backbone + rel-pos tables train; the (unused) TC-MoA modules stay as initialised."""
        named = backbone_named_parameters(model)
        keep = {id(p) for _, p in named}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        return param_groups_weight_decay(model, self.opts.weight_decay)

    def train_step(self, model: TCMoA | SyncedModel, optimizer: torch.optim.Optimizer, step: int, epoch: int,
                   micro: MicroBatches) -> dict[str, Tensor]:
        """Batches of crops (one per micro-batch): reconstruct, L1 + (1 - SSIM), one optimiser step."""
        o = self.opts

        def terms(part: int) -> dict[str, Tensor]:
            images = reconstruction_batch(self.banks, o.batch, o.size, generator=stream_seed(o.seed, step, 1, part),
                                          scale=(o.min_scale, 1.0))
            with autocast(self.device, o.precision):
                pred = model.reconstruct(normalize(images))
            return reconstruction_loss(pred, images)

        return micro.step(terms, optimizer, o.clip)

    def evaluate(self, model: TCMoA) -> dict[str, float]:
        """PSNR of whole held-out training frames (both frames of a pair), per group and overall."""
        out, every = {}, []
        for name, bank in sorted(self.held.items()):
            scores = []
            for i in range(min(len(bank), MAX_EVAL_IMAGES)):
                img = bank.image(i).float().div(255)
                for frame in img.split(3):
                    frame = whole_image(frame, self.config.size_multiple)
                    if frame is None:
                        continue
                    with autocast(self.device, "fp32"):  # the precision the shipped model runs at on a CPU
                        pred = model.reconstruct(normalize(frame[None]))
                    scores.append(reference_psnr(denormalize(pred.float())[0], frame))
            if scores:
                out[f"psnr_{name}"] = sum(scores) / len(scores)
                every += scores
        if every:
            out["psnr"] = sum(every) / len(every)
        return out


def pretrain(opts: PretrainOptions, started: float | None = None) -> ChunkResult:
    """Load the pack and run one chunk of backbone pre-training; `started`: the command's start time."""
    started = time.monotonic() if started is None else started
    with process_group(opts.device):  # under torchrun: data-parallel over its ranks
        device = pick_device(opts.device)
        banks, held = split_holdout(load_pack(opts.pack, device), opts.holdout)
        stage = PretrainStage(opts, banks, held)
        return run_stage(stage, opts, lambda total: Schedule(total, round(opts.warmup * total), opts.lr, opts.min_lr),
                         info={"trained": False}, started=started)
