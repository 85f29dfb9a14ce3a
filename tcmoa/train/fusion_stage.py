"""Train TC-MoA on a frozen, pre-trained backbone: the official recipe on our data.

    tcmoa train --pack PACK --backbone runs/pretrain --out runs/tcmoa --budget-minutes 15
    tcmoa train --pack PACK --out runs/tcmoa2 --resume runs/tcmoa
    tcmoa train --pack PACK --init runs/tcmoa --router-only medical --out runs/medical --budget-minutes 4

Official recipe: the backbone is frozen; each outer step makes one optimiser
step per task in turn (VIF, MEF, MFF), each with its own batch, forward and backward, under the
official per-task loss (2025 weights); AdamW (0.9, 0.95), weight decay 0.05 except 1-D parameters
and biases, linear warm-up then half-cycle cosine (3e-4 -> 1e-5), no gradient clipping. The
official run is 20 epochs with 2 of warm-up; ours splits its step budget into the same 20 nominal
epochs, so the loss switches from its warm-up form, and aux is divided by (epoch + 1), at the same
relative points (the first 10% of the steps are warm-up).

`--router-only TASK` trains a further router (e.g. 'medical', index 3 of the compact model) with
everything shared frozen: only the router bank's gate/noise rows and the source embeddings of that
task change. The loss is the VIF loss: the official zero-shot medical route is the VIF router, and
the VIF objective (keep each source's strongest intensity and gradient, stay structurally close
to both) is what MRI + CT/PET/SPECT fusion asks for. The new router starts as a copy of the VIF
router (`--router-init vif`), i.e. from the official zero-shot behaviour.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from timm.optim import param_groups_weight_decay
from torch import Tensor

from ..model.checkpoint import CONFIG_FILE, load_backbone, load_model
from ..model.config import ModelConfig, resolve_config
from .data import TASK_SCALE, ImageBank, load_pack, training_batch
from ..device import pick_device
from .losses import task_loss
from ..metrics.vifb import reference_psnr
from ..model.network import TCMoA, normalize
from .synthesis import synthesize_focus_pair
from ..tasks import ROUTERS
from ..distributed import MicroBatches, SyncedModel, process_group
from .loop import ChunkResult, Schedule, run_stage, split_holdout, stream_seed
from .options import OptionError, TrainingError, TrainOptions, autocast

# Which official loss trains which router: the three official tasks, and VIF's for medical (see above).
LOSS_TASK = {t.name: t.objective for t in ROUTERS.values()}
# Per-router rows (routers, ...): of every TC-MoA module, and the pyramid head's per-router gains.
ROUTER_ROWS = ("router_bank.gate", "router_bank.noise", "source_embed",
               "fusion_head.detail_gain", "fusion_head.clip_gain", "fusion_head.log_prompt_gain",
               "fusion_head.coarse_gain")
VAL_BATCH = 8
NO_START = "a new TC-MoA run needs a pre-trained backbone (--backbone) or a saved model (--init)"


def backbone_config(opts: TrainOptions) -> ModelConfig:
    """The model config: opts.config if given, else the backbone folder's config.json."""
    if opts.config:
        return resolve_config(opts.config)
    if not opts.backbone:
        raise OptionError(NO_START)
    path = Path(opts.backbone)
    if not (path.is_dir() and (path / CONFIG_FILE).is_file()):
        raise TrainingError(f"{path}: not a model folder with {CONFIG_FILE}; pass --config for a .pth backbone")
    return ModelConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))


def with_head(model: TCMoA, fusion_output: str, coarse_levels: int | None = None) -> TCMoA:
    """The same model with its output head changed (backbone and TC-MoA kept).

    Another kind of head starts fresh. The same pyramid head with another `coarse_levels` keeps its
    learned weights; only its coarse energy gains start at their initial values.
    """
    config = dataclasses.replace(model.config, fusion_output=fusion_output)
    if coarse_levels is not None:
        config = dataclasses.replace(config, pyramid_coarse_levels=coarse_levels)
    fresh = TCMoA(config).to(next(model.parameters()).device)
    same_kind = fusion_output == model.config.fusion_output
    kept = {k: v for k, v in model.state_dict().items()
            if not k.startswith("fusion_head.") or (same_kind and not k.startswith("fusion_head.coarse_"))}
    missing, unexpected = fresh.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith("fusion_head.") for k in missing), (missing, unexpected)
    fresh.info.update(model.info)
    return fresh


class FusionStage:
    """Stage for `run_stage`: TC-MoA training (all tasks in turn) or one router alone."""

    plot_series: tuple[str, ...]

    def __init__(self, opts: TrainOptions, banks: dict[str, ImageBank], held: dict[str, ImageBank]):
        self.opts, self.banks, self.held = opts, banks, held
        self.device = pick_device(opts.device)
        self.router_only = opts.router_only
        self.tasks = [opts.router_only] if opts.router_only else opts.tasks.split(",")
        self.name = f"router-{opts.router_only}" if opts.router_only else "tcmoa"
        self.plot_series = ("loss", *self.tasks) if len(self.tasks) > 1 else ("loss",)
        for t in self.tasks:
            if t not in LOSS_TASK:
                raise TrainingError(f"unknown router {t!r}; choose from {', '.join(LOSS_TASK)}")
        self.val = self._validation_set()

    # --- model and parameters ---------------------------------------------------------------
    def build_model(self, device: torch.device) -> TCMoA:
        """From a full model (--init) or a fresh TC-MoA on a pre-trained backbone (--backbone)."""
        o = self.opts
        if o.init:
            model = load_model(o.init, device)
            kind = o.fusion_output or model.config.fusion_output
            if o.coarse_levels is not None and kind != "pyramid":
                raise TrainingError(f"--coarse-levels applies to the pyramid head; this model's head is {kind!r}")
            if kind != model.config.fusion_output or o.coarse_levels is not None:
                model = with_head(model, kind, o.coarse_levels)
        elif not o.backbone:
            raise OptionError(NO_START)
        else:
            model = TCMoA(backbone_config(o)).to(device)
            load_backbone(model, o.backbone)
        missing = [t for t in self.tasks if t not in model.config.routers]
        if missing:
            raise TrainingError(f"the model has no router for {missing}; its routers: {model.config.routers}")
        if self.router_only and o.router_init != "zero":
            src, dst = (model.config.routers.index(t) for t in (o.router_init, self.router_only))
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith(ROUTER_ROWS):
                        p[dst] = p[src]
        return model

    def param_groups(self, model: TCMoA) -> list[dict[str, Any]]:
        """All TC-MoA parameters (official), or only the router rows of one task (--router-only)."""
        model.freeze_backbone()
        if not self.router_only:
            return param_groups_weight_decay(model, self.opts.weight_decay)
        row = model.config.routers.index(self.router_only)
        params = []
        for name, p in model.named_parameters():
            train = name.endswith(ROUTER_ROWS)
            p.requires_grad_(train)
            if train:
                mask = torch.zeros(p.shape[0], *[1] * (p.dim() - 1), device=p.device)
                mask[row] = 1
                p.register_hook(lambda g, m=mask: g * m)  # the other tasks' rows get no gradient
                params.append(p)
        # No weight decay: it would shrink the other tasks' rows of the same tensors. With zero
        # gradient and no decay, AdamW leaves those rows bit-identical.
        return [{"params": params, "weight_decay": 0.0}]

    # --- training ---------------------------------------------------------------------------
    def loss(self, model: TCMoA | SyncedModel, task: str, a: Tensor, b: Tensor, epoch: int) -> tuple[dict[str, Tensor], Tensor]:
        """Forward on [0, 1] sources: the official loss terms of `task` (LOSS_TASK) at `epoch`, and the fused image."""
        with autocast(self.device, self.opts.precision):
            out = model(normalize(a), normalize(b), route=task)
        terms = task_loss(LOSS_TASK[task], out.fused, a, b, out.prompts("encoder"), out.prompts("decoder"),
                          out.aux_loss, epoch, self.opts.loss_version, self.opts.warmup_epochs)
        return terms, out.fused

    def train_step(self, model: TCMoA | SyncedModel, optimizer: torch.optim.Optimizer, step: int, epoch: int,
                   micro: MicroBatches) -> dict[str, Tensor]:
        """One optimiser step per task, in order, each on its own batches (one per micro-batch)."""
        o, logged = self.opts, {}
        for i, task in enumerate(self.tasks):
            def terms(part: int, i: int = i, task: str = task) -> dict[str, Tensor]:
                a, b = training_batch(self.banks, task, o.batch, o.size, generator=stream_seed(o.seed, step, 1 + i, part),
                                      zoom=o.zoom)
                return self.loss(model, task, a, b, epoch)[0]

            logged[task] = micro.step(terms, optimizer, o.clip)["loss"]
        logged["loss"] = torch.stack(list(logged.values())).sum()
        return logged

    # --- evaluation -------------------------------------------------------------------------
    def _validation_set(self) -> dict[str, tuple[Tensor, ...]]:
        """Fixed crops of held-out frames per task (MFF: with the all-in-focus original, for PSNR)."""
        o, val = self.opts, dict[str, tuple[Tensor, ...]]()
        for i, task in enumerate(self.tasks):
            seed = stream_seed(o.seed, -1, 100 + i)
            if task == "mff" and "natural" in self.held:
                g = torch.Generator(self.held["natural"].device).manual_seed(seed)
                sharp = self.held["natural"].sample(VAL_BATCH, o.size, TASK_SCALE["mff"], generator=g, zoom=o.zoom)
                far, near, _ = synthesize_focus_pair(sharp, g)
                val[task] = (far, near, sharp)
                continue
            try:
                val[task] = training_batch(self.held, task, VAL_BATCH, o.size, generator=seed, zoom=o.zoom)
            except (KeyError, IndexError):  # too few images to hold any out for this task
                continue
        return val

    def evaluate(self, model: TCMoA) -> dict[str, float]:
        """Held-out loss per task (main-phase weights, so comparable over the run); MFF PSNR vs the sharp original."""
        out = {}
        for task, (a, b, *truth) in self.val.items():
            terms, fused = self.loss(model, task, a, b, self.opts.warmup_epochs)
            out[f"val_{task}"] = float(terms["loss"])
            if truth:
                out[f"psnr_{task}"] = sum(reference_psnr(f, t) for f, t in zip(fused.float(), truth[0])) / len(fused)
        return out


def train(opts: TrainOptions, started: float | None = None) -> ChunkResult:
    """Load the pack and run one chunk of TC-MoA (or router-only) training; `started`: the command's start time."""
    started = time.monotonic() if started is None else started

    def schedule(total: int) -> Schedule:
        return Schedule(total, total * opts.warmup_epochs // opts.epochs, opts.lr, opts.min_lr, opts.epochs)

    with process_group(opts.device):  # under torchrun: data-parallel over its ranks
        device = pick_device(opts.device)
        banks, held = split_holdout(load_pack(opts.pack, device), opts.holdout)
        stage = FusionStage(opts, banks, held)
        # A router-only run keeps the loaded model's "trained" flag; a TC-MoA run makes a trained model.
        info = {"stage_tasks": stage.tasks} if opts.router_only else {"trained": True, "stage_tasks": stage.tasks}
        return run_stage(stage, opts, schedule, info=info, started=started)
