"""Shared training machinery of `tcmoa pretrain` and `tcmoa train`: one loop, resumable in chunks.

A run is cut into chunks that each fit one time budget (`--minutes`); every chunk ends by saving
the model (`save_model`: config.json + backbone/tcmoa.safetensors), `state.pt` (optimizer, schedule,
step, seed, options, wall seconds; plain tensors and dicts, read with weights_only=True), `log.jsonl`
(one JSON object per line) and `loss.png` into --out. `--resume DIR` continues exactly where DIR
stopped: the learning rate is a pure function of the step, and every random draw of step s (data
crops, synthesis, router noise) comes from seeds derived from (seed, s), so a resumed run repeats
the uninterrupted one bit for bit on the same device. Under `torchrun` the same loop runs data-parallel
(tcmoa/distributed.py): every step is split into micro-batches over the ranks.

A command supplies a `Stage` (model, trainable parameters, one training step, an evaluation);
`run_stage` does the rest.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, NoReturn, Protocol, Sequence

import torch
from torch import Tensor

from ..model.checkpoint import load_model, save_model
from .data import ImageBank
from ..device import pick_device
from ..distributed import MicroBatches, SyncedModel, World, current_world, micro_batch_plan
from ..model.network import TCMoA
from .run_log import RunLog, plot_log

STATE_FILE, LOG_FILE, PLOT_FILE, SUMMARY_FILE = "state.pt", "log.jsonl", "loss.png", "run.json"
STATE_FORMAT = "tcmoa-train-state/1"
# Options that may change between chunks; every other option is fixed by the first chunk.
RUNTIME_OPTIONS = frozenset({"pack", "out", "resume", "minutes", "chunk_steps", "device", "log_every",
                             "eval_every", "precision", "accumulate"})
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
SAVE_RESERVE_S = 20.0  # kept free at the end of a chunk for the final evaluation, save and plot


# --- options ---------------------------------------------------------------------------------
def add_common_arguments(ap: argparse.ArgumentParser, *, batch: int, size: int, lr: float, min_lr: float,
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


def resolve_options(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; on --resume, every non-runtime option comes from the saved run (a differing one is reported)."""
    opts = ap.parse_args(argv)
    if opts.accumulate is not None and opts.accumulate < 1:
        ap.error("--accumulate must be at least 1")
    if opts.resume is None:
        if (opts.steps is None) == (opts.budget_minutes is None):
            ap.error("give exactly one of --steps and --budget-minutes")
        return opts
    state = read_state(opts.resume)
    for key, saved in state["args"].items():
        if key in RUNTIME_OPTIONS or not hasattr(opts, key):
            continue
        given = getattr(opts, key)
        given = str(given) if isinstance(given, Path) else given
        if given != saved and given != ap.get_default(key) and os.environ.get("RANK", "0") == "0":  # once per job
            print(f"note: --{key.replace('_', '-')} {given} ignored; the run was started with {saved}", file=sys.stderr)
        setattr(opts, key, saved)
    return opts


def plain_options(opts: argparse.Namespace) -> dict[str, Any]:
    """Options as JSON/weights_only-safe primitives."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}


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


# --- optimiser and schedule ------------------------------------------------------------------
def build_optimizer(groups: list[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the official betas (0.9, 0.95); fused kernels on CUDA."""
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda" or None)


class Schedule:
    """MAE's lr_sched on steps: linear warm-up, then half-cycle cosine to min_lr; nominal epochs for the losses."""

    def __init__(self, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float, epochs: int = 1):
        self.total_steps, self.warmup_steps = total_steps, min(warmup_steps, total_steps)
        self.base_lr, self.min_lr, self.epochs = base_lr, min_lr, epochs

    def lr(self, step: int) -> float:
        """Learning rate of (0-based) step `step`."""
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * (step - self.warmup_steps) / span))

    def epoch(self, step: int) -> int:
        """The integer epoch the official loss schedule would be in (the budget split into `epochs`)."""
        return min(self.epochs - 1, step * self.epochs // max(1, self.total_steps))

    def state_dict(self) -> dict[str, Any]:
        """Everything that defines the schedule."""
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "base_lr": self.base_lr,
                "min_lr": self.min_lr, "epochs": self.epochs}


def stream_seed(seed: int, step: int, stream: int = 0, part: int = 0) -> int:
    """A seed for random stream `stream` of micro-batch `part` of step `step`: what makes chunked runs repeat exactly."""
    return (seed * 0x9E3779B1 + step * 1_000_003 + stream * 7919 + part * 0x632BE5AB + 12345) % (2**62)


# --- data ------------------------------------------------------------------------------------
def holdout_count(n: int, frac: float) -> int:
    """Images kept out of training in a group of n (none from groups too small to spare one)."""
    return 0 if n < 4 or frac <= 0 else min(n - 2, max(1, round(frac * n)))


def _sub_bank(bank: ImageBank, lo: int, hi: int) -> ImageBank:
    """Images lo..hi-1 of a bank (their pixel rows are contiguous)."""
    rows = bank.offsets[lo:hi]
    start = int(rows[0]) if hi > lo else 0
    end = int(bank.offsets[hi]) if hi < len(bank) else bank.pixels.shape[0]
    return ImageBank(bank.pixels[start:end], bank.sizes[lo:hi].cpu(), bank.name, bank.info, bank.channels)


def split_holdout(banks: dict[str, ImageBank], frac: float) -> tuple[dict[str, ImageBank], dict[str, ImageBank]]:
    """(training banks, held-out banks): the last images of every group are held out, the same in every stage."""
    train, held = {}, {}
    for name, bank in banks.items():
        k = holdout_count(len(bank), frac)
        train[name] = _sub_bank(bank, 0, len(bank) - k) if k else bank
        if k:
            held[name] = _sub_bank(bank, len(bank) - k, len(bank))
    return train, held


# --- the stage interface and run state -------------------------------------------------------
@dataclass
class ChunkResult:
    """What a chunk leaves: the summary written to run.json, and the model as saved."""

    summary: dict[str, Any]
    model: TCMoA


class Stage(Protocol):
    """What a command supplies to `run_stage`."""

    name: str
    plot_series: tuple[str, ...]  # log keys drawn as loss curves

    def build_model(self, device: torch.device) -> TCMoA:
        """A fresh model for a new run (the global RNG is already seeded)."""

    def param_groups(self, model: TCMoA) -> list[dict[str, Any]]:
        """Set requires_grad and return the optimizer's parameter groups."""

    def train_step(self, model: TCMoA | SyncedModel, optimizer: torch.optim.Optimizer, step: int, epoch: int,
                   micro: MicroBatches) -> dict[str, Tensor]:
        """One (outer) step, optimizer steps (micro.step) included; returns detached scalars, 'loss' among them."""

    def evaluate(self, model: TCMoA) -> dict[str, float]:
        """Held-out metrics (the model is in eval mode; no_grad is on)."""


def read_state(directory: str | Path) -> dict[str, Any]:
    """The run state of a chunk folder (weights_only: plain tensors and containers only)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {STATE_FILE}; not a folder written by a training chunk")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: unknown state format {state.get('format')!r}")
    return state


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_seconds_per_step(stage: Stage, model: TCMoA, lr: float, device: torch.device, world: World = World(),
                           parts: range = range(1), warm: int = 3, timed: int = 10) -> float:
    """Seconds per step (rank 0's, every rank stepping), timed on a throw-away copy (the run itself is untouched)."""
    clone = copy.deepcopy(model).train()
    optimizer = build_optimizer(stage.param_groups(clone), lr, device)
    net = world.wrap(clone, device)
    for i in range(warm + timed):
        if i == warm:
            _sync(device)
            t0 = time.perf_counter()
        micro = MicroBatches(parts, net, device, lambda g: stream_seed(-1, i, 0, g))  # noqa: B023 (called at once)
        stage.train_step(net, optimizer, -1 - i, 0, micro)
    _sync(device)
    seconds = (time.perf_counter() - t0) / timed
    del clone, optimizer, net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return world.from_main(seconds)


def _evaluate(stage: Stage, model: TCMoA, step: int, seconds: float, log: RunLog) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = stage.evaluate(model)
    model.train()
    log.append({"event": "eval", "step": step, "seconds": round(seconds, 2), **metrics})
    log.say(f"[eval] step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return metrics


def option_error(message: str) -> NoReturn:
    """Stop on a bad option as argparse does: one line on stderr, exit code 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_crop_size(size: int, model: TCMoA) -> None:
    """--size must cover whole attention windows of this model (its config decides, whatever the source)."""
    multiple = model.config.size_multiple
    if size % multiple:
        lower, upper = size // multiple * multiple, (size // multiple + 1) * multiple
        nearest = f"{lower} or {upper}" if lower else str(upper)
        option_error(f"--size {size} is not a multiple of {multiple} px, one attention window of "
                     f"{model.config.name!r} ({model.config.window_size} tokens of {model.config.pixel_patch:g} px); "
                     f"try --size {nearest}")


def _open_run(stage: Stage, opts: argparse.Namespace, device: torch.device) -> tuple[TCMoA, dict[str, Any]]:
    """The model and run state: loaded from --resume, or fresh; the crop size checked against the model."""
    if not opts.resume:
        torch.manual_seed(opts.seed)
        state = {"format": STATE_FORMAT, "stage": stage.name, "step": 0, "total_steps": opts.steps,
                 "seed": opts.seed, "args": plain_options(opts), "wall_seconds": 0.0, "chunks": []}
        model = stage.build_model(device)
    else:
        state = read_state(opts.resume)
        if state["stage"] != stage.name:
            raise SystemExit(f"{opts.resume} holds a '{state['stage']}' run, not '{stage.name}'")
        model = load_model(opts.resume, device)
    check_crop_size(opts.size, model)
    return model, state


def run_stage(stage: Stage, opts: argparse.Namespace, schedule_for: Callable[[int], Schedule],
              info: dict[str, Any] | None = None, started: float | None = None) -> ChunkResult:
    """Run (or continue) one chunk of a stage; returns the run summary (as in run.json) and the model.

    `schedule_for(total_steps)` builds the schedule; `started` (time.monotonic() at the command's
    start) makes the chunk budget and the recorded wall time include loading the data.
    """
    t_start = time.monotonic() if started is None else started
    world = current_world()
    device = pick_device(opts.device)  # under torchrun "cuda" is this rank's GPU (distributed.process_group)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out = Path(opts.out)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / LOG_FILE, Path(opts.resume) / LOG_FILE if opts.resume else None, active=world.is_main)
    model, state = _open_run(stage, opts, device)
    model.train()
    optimizer = build_optimizer(stage.param_groups(model), opts.lr, device)
    if opts.resume:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["cpu"])  # unused by the loop (it re-seeds per step); kept for completeness
    # A step is `per_step` micro-batches of --batch crops, `per_rank` of them on each rank.
    per_step, per_rank, change = micro_batch_plan(state.get("micro_batches", 1) if opts.resume else None,
                                                  opts.accumulate, world.size)
    if change:
        log.say(f"note: {change}")
    state["micro_batches"] = per_step
    parts = range(world.rank * per_rank, (world.rank + 1) * per_rank)
    net = world.wrap(model, device)
    if state["total_steps"] is None:  # --budget-minutes: fix the step count once, from a timing probe
        sec = probe_seconds_per_step(stage, model, opts.lr, device, world, parts)
        state["total_steps"] = max(1, int(opts.budget_minutes * 60 / sec))
        log.append({"event": "probe", "seconds_per_step": round(sec, 5), "total_steps": state["total_steps"],
                    "budget_minutes": opts.budget_minutes})
        log.say(f"[probe] {sec * 1e3:.1f} ms/step -> {state['total_steps']} steps in {opts.budget_minutes} min")
    schedule = schedule_for(state["total_steps"])
    seed, first, base_s = state["seed"], state["step"], state["wall_seconds"]
    clock = lambda: base_s + time.monotonic() - t_start  # noqa: E731  (stage wall seconds so far)
    ranks = f" x {world.size} ranks" if world.size > 1 else ""
    log.say(f"[{stage.name}] steps {first}..{schedule.total_steps} on {device}{ranks}, {per_step} micro-batch(es) "
            f"of {opts.batch} per step, chunk budget {opts.minutes} min")

    step, pending, step_s, eval_s = first, [], None, 0.0
    if first == 0 and world.is_main:  # the baseline point of the held-out curves
        _evaluate(stage, model, 0, clock(), log)
    t_loop = time.monotonic()
    while step < schedule.total_steps:
        if opts.chunk_steps is not None and step - first >= opts.chunk_steps:
            break
        t_step = time.monotonic()
        # Stop while a step, an evaluation and the save still fit in the chunk's budget (rank 0's clock decides).
        late = step_s is not None and t_step - t_start + 2 * step_s + eval_s + SAVE_RESERVE_S > opts.minutes * 60
        if world.from_main(late):
            break
        lr = schedule.lr(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        micro = MicroBatches(parts, net, device, lambda g: stream_seed(seed, step, 0, g))  # noqa: B023 (called at once)
        pending.append(stage.train_step(net, optimizer, step, schedule.epoch(step), micro))
        step += 1
        if step % opts.log_every == 0 or step == schedule.total_steps:
            _log_steps(log, pending, step, lr, clock(), world)
            pending = []
        if opts.eval_every and step % opts.eval_every == 0 and step < schedule.total_steps and world.is_main:
            t_eval = time.monotonic()
            _evaluate(stage, model, step, clock(), log)
            eval_s = time.monotonic() - t_eval
            t_step += eval_s  # keep the step-time estimate free of evaluation time
        dt = time.monotonic() - t_step
        step_s = dt if step_s is None else 0.9 * step_s + 0.1 * dt
    if pending:
        _log_steps(log, pending, step, schedule.lr(step - 1), clock(), world)
    loop_s = time.monotonic() - t_loop
    if world.is_main:
        _evaluate(stage, model, step, clock(), log)
    done = step >= schedule.total_steps
    wall = time.monotonic() - t_start
    chunk = {"event": "chunk", "chunk": len(state["chunks"]), "first_step": first, "last_step": step,
             "wall_s": round(wall, 1), "loop_s": round(loop_s, 1), "device": _device_name(device), "ranks": world.size,
             "micro_batches": per_step, "done": done}
    state.update(step=step, wall_seconds=base_s + wall, chunks=state["chunks"] + [chunk],
                 schedule=schedule.state_dict(), optimizer=optimizer.state_dict(), rng={"cpu": torch.get_rng_state()})
    log.append({**chunk, "stage_wall_s": round(state["wall_seconds"], 1)})
    summary = _save_chunk(stage, model, state, out, log, {"total_steps": schedule.total_steps, **(info or {})},
                          write=world.is_main)
    log.say(f"[{stage.name}] saved {out} at step {step}/{schedule.total_steps} ({'done' if done else 'resume to continue'}); "
            f"chunk {wall / 60:.1f} min, stage {state['wall_seconds'] / 60:.1f} min")
    world.barrier()  # every rank returns with the chunk saved
    return ChunkResult(summary, model)


def _save_chunk(stage: Stage, model: TCMoA, state: dict[str, Any], out: Path, log: RunLog,
                info: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Model, state.pt, run.json and loss.png into `out` (if `write`: rank 0); returns the summary."""
    total, done = state["total_steps"], state["step"] >= state["total_steps"]
    summary = {"stage": stage.name, "done": done, "step": state["step"], "total_steps": total,
               "wall_seconds": round(state["wall_seconds"], 1), "gpu_minutes": round(state["wall_seconds"] / 60, 2),
               "chunks": state["chunks"], "args": state["args"]}
    if not write:
        return summary
    save_model(model, out, {"stage": stage.name, "step": state["step"], "done": done, **info})
    torch.save(state, out / STATE_FILE)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    try:  # the weights and state are saved already: a plotting problem must not fail the chunk
        plot_log(log.records, out / PLOT_FILE, f"{stage.name}: step {state['step']}/{total}", stage.plot_series)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: no {PLOT_FILE}: {exc}", file=sys.stderr)
    return summary


def _log_steps(log: RunLog, pending: list[dict[str, Tensor]], step: int, lr: float, seconds: float,
               world: World = World()) -> None:
    """Average the pending steps' scalars over steps and ranks (one device sync), append a record; stop on a non-finite loss."""
    keys = list(pending[0])
    values = world.mean(torch.stack([torch.stack([p[k].float() for k in keys]) for p in pending]).mean(0)).tolist()
    record = {"step": step, "lr": lr, "seconds": round(seconds, 2), **{k: v for k, v in zip(keys, values)}}
    if not math.isfinite(record["loss"]):
        raise FloatingPointError(f"non-finite loss at step {step}: {record}")
    log.append(record)
    log.say(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
