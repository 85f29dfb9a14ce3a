"""Shared training machinery of `tcmoa pretrain` and `tcmoa train`: one loop, resumable in chunks.

A run is cut into chunks that each fit one time budget (`--minutes`); every chunk ends by saving
the model (`save_model`: config.json + backbone/tcmoa.safetensors), `state.pt` (optimizer, schedule,
step, seed, options, wall seconds; plain tensors and dicts, read with weights_only=True), `log.jsonl`
(one JSON object per line) and `loss.png` into --out. `--resume DIR` continues exactly where DIR
stopped: the learning rate is a pure function of the step, and every random draw of step s (data
crops, synthesis, router noise) comes from seeds derived from (seed, s), so a resumed run repeats
the uninterrupted one bit for bit on the same device. Under `torchrun` the same loop runs data-parallel
(tcmoa/distributed.py): every step is split into micro-batches over the ranks.

A command supplies a `Stage` (model, trainable parameters, one training step, an evaluation) and
its options (tcmoa.train.options); `run_stage` drives a `Run` through one chunk.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

import torch
from torch import Tensor

from ..model.checkpoint import load_model, save_model
from .data import ImageBank
from ..device import pick_device
from ..distributed import MicroBatches, SyncedModel, World, current_world, micro_batch_plan
from ..model.network import TCMoA
from .options import OptionError, RunOptions, TrainingError, plain_options
from .run_log import RunLog, plot_log

STATE_FILE, LOG_FILE, PLOT_FILE, SUMMARY_FILE = "state.pt", "log.jsonl", "loss.png", "run.json"
STATE_FORMAT = "tcmoa-train-state/1"
SAVE_RESERVE_S = 20.0  # kept free at the end of a chunk for the final evaluation, save and plot


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
        raise TrainingError(f"{directory}: no {STATE_FILE}; not a folder written by a training chunk")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: unknown state format {state.get('format')!r}")
    return state


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def own_rng(device: torch.device) -> ContextManager:
    """Inside, the global RNG (CPU, and `device` if a GPU) may be seeded and drawn from; on exit it is as it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def probe_seconds_per_step(stage: Stage, model: TCMoA, lr: float, device: torch.device, world: World = World(),
                           parts: range = range(1), warm: int = 3, timed: int = 10) -> float:
    """Seconds per step (rank 0's, every rank stepping), timed on a throw-away copy (the run itself is untouched)."""
    with own_rng(device):  # the probe's micro-batches seed the global RNG
        seconds = _time_steps(stage, model, lr, device, world, parts, warm, timed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return world.from_main(seconds)


def _time_steps(stage: Stage, model: TCMoA, lr: float, device: torch.device, world: World, parts: range,
                warm: int, timed: int) -> float:
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
    return (time.perf_counter() - t0) / timed


def check_crop_size(size: int, model: TCMoA) -> None:
    """--size must cover whole attention windows of this model (its config decides, whatever the source)."""
    multiple = model.config.size_multiple
    if size % multiple:
        lower, upper = size // multiple * multiple, (size // multiple + 1) * multiple
        nearest = f"{lower} or {upper}" if lower else str(upper)
        raise OptionError(f"--size {size} is not a multiple of {multiple} px, one attention window of "
                          f"{model.config.name!r} ({model.config.window_size} tokens of {model.config.pixel_patch:g} px); "
                          f"try --size {nearest}")


def open_run(stage: Stage, opts: RunOptions, device: torch.device) -> tuple[TCMoA, dict[str, Any]]:
    """The model and run state: loaded from opts.resume, or fresh; the crop size checked against the model."""
    if not opts.resume:
        torch.manual_seed(opts.seed)  # a fresh model's initialisation (run_stage forks the global RNG)
        state = {"format": STATE_FORMAT, "stage": stage.name, "step": 0, "total_steps": opts.steps,
                 "seed": opts.seed, "args": plain_options(opts), "wall_seconds": 0.0, "chunks": []}
        model = stage.build_model(device)
    else:
        state = read_state(opts.resume)
        if state["stage"] != stage.name:
            raise TrainingError(f"{opts.resume} holds a '{state['stage']}' run, not '{stage.name}'")
        model = load_model(opts.resume, device)
    check_crop_size(opts.size, model)
    return model, state


class Run:
    """One chunk of a training run on this rank: opened fresh or resumed, stepped until it should stop, saved.

    Rank 0 alone evaluates, logs and writes; every rank steps (tcmoa/distributed.py).
    """

    def __init__(self, stage: Stage, opts: RunOptions, schedule_for: Callable[[int], Schedule],
                 started: float | None = None):
        self.stage, self.opts = stage, opts
        self.started = time.monotonic() if started is None else started
        self.world = world = current_world()
        self.device = pick_device(opts.device)  # under torchrun "cuda" is this rank's GPU (distributed.process_group)
        self.out = Path(opts.out)
        if world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.out / LOG_FILE, Path(opts.resume) / LOG_FILE if opts.resume else None, active=world.is_main)
        self.model, self.state = open_run(stage, opts, self.device)
        self.model.train()
        self.optimizer = build_optimizer(stage.param_groups(self.model), opts.lr, self.device)
        if opts.resume:
            self.optimizer.load_state_dict(self.state["optimizer"])
            torch.set_rng_state(self.state["rng"]["cpu"])  # unused by the loop (it re-seeds per step); kept for completeness
        # A step is `per_step` micro-batches of opts.batch crops, `per_rank` of them on each rank.
        saved = self.state.get("micro_batches", 1) if opts.resume else None
        self.per_step, per_rank, change = micro_batch_plan(saved, opts.accumulate, world.size)
        if change:
            self.log.say(f"note: {change}")
        self.state["micro_batches"] = self.per_step
        self.parts = range(world.rank * per_rank, (world.rank + 1) * per_rank)
        self.net = world.wrap(self.model, self.device)
        if self.state["total_steps"] is None:
            self._probe_total_steps()
        self.schedule = schedule_for(self.state["total_steps"])
        self.first = self.step = self.state["step"]
        self.base_s = self.state["wall_seconds"]  # the earlier chunks' wall seconds
        self.pending: list[dict[str, Tensor]] = []  # step scalars not yet logged
        self.step_s: float | None = None  # running mean of seconds per step, evaluations excluded
        self.eval_s = 0.0  # seconds of the last periodic evaluation
        self.loop_started = time.monotonic()

    def _probe_total_steps(self) -> None:
        """budget_minutes: fix the run's step count once, from a timing probe."""
        minutes = self.opts.budget_minutes
        if minutes is None:
            raise OptionError("a new run needs --steps or --budget-minutes")
        sec = probe_seconds_per_step(self.stage, self.model, self.opts.lr, self.device, self.world, self.parts)
        total = self.state["total_steps"] = max(1, int(minutes * 60 / sec))
        self.log.append({"event": "probe", "seconds_per_step": round(sec, 5), "total_steps": total,
                         "budget_minutes": minutes})
        self.log.say(f"[probe] {sec * 1e3:.1f} ms/step -> {total} steps in {minutes} min")

    def seconds(self) -> float:
        """Wall seconds of the whole stage so far (earlier chunks included)."""
        return self.base_s + time.monotonic() - self.started

    def begin(self) -> None:
        """Say what this chunk runs; a new run first evaluates the untrained model (the curves' step 0)."""
        ranks = f" x {self.world.size} ranks" if self.world.size > 1 else ""
        self.log.say(f"[{self.stage.name}] steps {self.first}..{self.schedule.total_steps} on {self.device}{ranks}, "
                     f"{self.per_step} micro-batch(es) of {self.opts.batch} per step, "
                     f"chunk budget {self.opts.minutes} min")
        if self.first == 0 and self.world.is_main:
            self._held_out()
        self.loop_started = time.monotonic()

    def should_stop(self) -> bool:
        """True when the run is done, the chunk's steps are done, or a step, evaluation and save no longer fit."""
        if self.step >= self.schedule.total_steps:
            return True
        if self.opts.chunk_steps is not None and self.step - self.first >= self.opts.chunk_steps:
            return True
        spent = time.monotonic() - self.started
        late = self.step_s is not None and spent + 2 * self.step_s + self.eval_s + SAVE_RESERVE_S > self.opts.minutes * 60
        return bool(self.world.from_main(late))  # rank 0's clock decides for every rank

    def train_step(self) -> None:
        """One (outer) step at the schedule's learning rate; its random draws come from (seed, step)."""
        t0 = time.monotonic()
        step, seed, lr = self.step, self.state["seed"], self.schedule.lr(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        micro = MicroBatches(self.parts, self.net, self.device, lambda g: stream_seed(seed, step, 0, g))
        self.pending.append(self.stage.train_step(self.net, self.optimizer, step, self.schedule.epoch(step), micro))
        self.step += 1
        if self.step % self.opts.log_every == 0 or self.step == self.schedule.total_steps:
            self._log_pending(lr)
        dt = time.monotonic() - t0
        self.step_s = dt if self.step_s is None else 0.9 * self.step_s + 0.1 * dt

    def evaluation_due(self) -> bool:
        """Every eval_every steps, except at the run's last step (the save evaluates)."""
        every = self.opts.eval_every
        return bool(every) and self.step % every == 0 and self.step < self.schedule.total_steps

    def evaluate(self) -> None:
        """Held-out metrics now (rank 0), logged; their time is kept free at the end of the chunk."""
        if self.world.is_main:
            t0 = time.monotonic()
            self._held_out()
            self.eval_s = time.monotonic() - t0

    def save(self, info: dict[str, Any]) -> ChunkResult:
        """Log what is pending, evaluate, save model, state, summary and plot (rank 0); every rank returns after."""
        if self.pending:
            self._log_pending(self.schedule.lr(self.step - 1))
        loop_s = time.monotonic() - self.loop_started
        if self.world.is_main:
            self._held_out()
        state, total = self.state, self.schedule.total_steps
        done, wall = self.step >= total, time.monotonic() - self.started
        chunk = {"event": "chunk", "chunk": len(state["chunks"]), "first_step": self.first, "last_step": self.step,
                 "wall_s": round(wall, 1), "loop_s": round(loop_s, 1), "device": _device_name(self.device),
                 "ranks": self.world.size, "micro_batches": self.per_step, "done": done}
        state.update(step=self.step, wall_seconds=self.base_s + wall, chunks=state["chunks"] + [chunk],
                     schedule=self.schedule.state_dict(), optimizer=self.optimizer.state_dict(),
                     rng={"cpu": torch.get_rng_state()})
        self.log.append({**chunk, "stage_wall_s": round(state["wall_seconds"], 1)})
        summary = _save_chunk(self.stage, self.model, state, self.out, self.log, {"total_steps": total, **info},
                              write=self.world.is_main)
        self.log.say(f"[{self.stage.name}] saved {self.out} at step {self.step}/{total} "
                     f"({'done' if done else 'resume to continue'}); chunk {wall / 60:.1f} min, "
                     f"stage {state['wall_seconds'] / 60:.1f} min")
        self.world.barrier()  # every rank returns with the chunk saved
        return ChunkResult(summary, self.model)

    def _log_pending(self, lr: float) -> None:
        _log_steps(self.log, self.pending, self.step, lr, self.seconds(), self.world)
        self.pending = []

    def _held_out(self) -> None:
        self.model.eval()
        with torch.no_grad():
            metrics = self.stage.evaluate(self.model)
        self.model.train()
        self.log.append({"event": "eval", "step": self.step, "seconds": round(self.seconds(), 2), **metrics})
        self.log.say(f"[eval] step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def run_stage(stage: Stage, opts: RunOptions, schedule_for: Callable[[int], Schedule],
              info: dict[str, Any] | None = None, started: float | None = None) -> ChunkResult:
    """Run (or continue) one chunk of a stage; returns the run summary (as in run.json) and the model.

    `schedule_for(total_steps)` builds the schedule; `started` (time.monotonic() at the command's
    start) makes the chunk budget and the recorded wall time include loading the data. The run seeds
    and draws from the global RNG (a fresh model's initialisation, router noise) inside a fork of it:
    the caller's random stream is left as it was.
    """
    with own_rng(pick_device(opts.device)):
        run = Run(stage, opts, schedule_for, started)
        run.begin()
        while not run.should_stop():
            run.train_step()
            if run.evaluation_due():
                run.evaluate()
        return run.save(info or {})


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
