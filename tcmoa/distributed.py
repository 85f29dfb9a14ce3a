"""Data-parallel training over `torch.distributed` (launched by `torchrun`): process group, DDP, micro-batches.

    torchrun --nproc_per_node=8 -m tcmoa train --pack PACK --backbone B --out OUT --steps 20000

One optimiser step consumes G *micro-batches* of `--batch` crops: G = ranks x `--accumulate`. Micro-batch
g of step s draws its crops and its router noise from streams seeded (seed, s, g), whichever rank runs
it; gradients are the mean over the G micro-batches (DDP averages over ranks, accumulation over a
rank's own). So a step is the same computation for every way of splitting G: 2 ranks x 1 equals
1 rank x 2 up to the order of a float sum, and a run started on N ranks resumes on M ranks as the same
run when M divides G (else G changes, and the run says so). A single process without torchrun has
G = 1 and g = 0, whose streams are the (seed, s) streams of a plain run: nothing changes there.

Only rank 0 evaluates, logs, plots and saves; every rank runs the same steps. Decisions taken from
the clock (the chunk budget, the step count of --budget-minutes) are rank 0's, broadcast over a CPU
(gloo) group, so no rank waits in a collective the others skipped.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .device import pick_device

ModelT = TypeVar("ModelT", bound=nn.Module)

StepTerms = dict[str, Tensor]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    control: Any = None  # a gloo group for CPU-side decisions (the default group when that is gloo)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, evaluates and saves."""
        return self.rank == 0

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank (a CPU broadcast; no GPU sync)."""
        if self.size == 1:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.broadcast(t, 0, group=self.control)
        return float(t)

    def mean(self, values: Tensor) -> Tensor:
        """The mean over ranks of a tensor of scalars (on the training device)."""
        if self.size == 1:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.size

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.size > 1:
            dist.barrier(group=self.control)

    def wrap(self, model: ModelT, device: torch.device) -> ModelT | SyncedModel:
        """What training steps call: the model itself for one rank, else the model under DDP."""
        return model if self.size == 1 else SyncedModel(model, device)


def launched_ranks() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_device(device: str | torch.device | None) -> torch.device:
    """The device of this rank: under torchrun, CUDA means cuda:LOCAL_RANK (one GPU per rank)."""
    picked = pick_device(device)
    if picked.type == "cuda" and launched_ranks() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return picked


def current_world() -> World:
    """The World of the initialised process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    control = None if dist.get_backend() == "gloo" else _control_group()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), control)


_CONTROL: dict[str, Any] = {}


def _control_group() -> Any:
    if "group" not in _CONTROL:  # new_group is collective: every rank creates it at the same point
        _CONTROL["group"] = dist.new_group(backend="gloo")
    return _CONTROL["group"]


@contextmanager
def process_group(device: str | torch.device | None, backend: str | None = None) -> Iterator[World]:
    """Join the torchrun job, if any, for the duration: NCCL on CUDA, gloo on the CPU; rank 0 of 1 otherwise."""
    if launched_ranks() == 1 or dist.is_initialized():
        yield current_world()
        return
    dev = rank_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # so that "cuda" (no index) everywhere else means this rank's GPU
    dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"))
    try:
        world = current_world()
        world.barrier()  # every rank is up (and the control group exists) before work starts
        yield world
    finally:
        _CONTROL.clear()
        dist.destroy_process_group()


class _Methods(nn.Module):
    """Runs a named model method as this module's forward: DDP arms its gradient all-reduce only in forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """model.<method>(*args, **kwargs)."""
        return getattr(self.model, method)(*args, **kwargs)


class SyncedModel:
    """The model as a training step sees it under DDP: its forward and `reconstruct` run through DDP."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.module = model
        # Every trainable parameter gets a gradient in every step (dense adapters, one-hot routes
        # through einsum), so no find_unused_parameters; LayerNorm only, so no buffers to broadcast.
        self.ddp = nn.parallel.DistributedDataParallel(
            _Methods(model), device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda" else None, broadcast_buffers=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """model(*args, **kwargs), gradients synchronised in the backward."""
        return self.ddp("forward", *args, **kwargs)

    def reconstruct(self, images: Tensor) -> Tensor:
        """model.reconstruct(images), gradients synchronised in the backward."""
        return self.ddp("reconstruct", images)

    def no_sync(self) -> ContextManager:
        """Accumulate gradients locally (no all-reduce) inside."""
        return self.ddp.no_sync()


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class MicroBatches:
    """The micro-batches one rank runs in one step: global indices `parts`, each with its own global-RNG stream."""

    def __init__(self, parts: range, model: nn.Module | SyncedModel, device: torch.device,
                 noise_seed: Callable[[int], int]):
        self.parts, self.model, self.device = parts, model, device
        self._states: dict[int, tuple[Tensor, Tensor | None]] = {}
        for g in parts:  # router noise and anything else drawn from the global RNG
            torch.manual_seed(noise_seed(g))
            if len(parts) > 1:
                self._states[g] = _rng_state(device)

    @contextmanager
    def _stream(self, part: int) -> Iterator[None]:
        """Draws from the global RNG inside come from micro-batch `part`'s stream, which continues across tasks."""
        if not self._states:
            yield
            return
        _set_rng_state(self._states[part], self.device)
        yield
        self._states[part] = _rng_state(self.device)

    def step(self, terms_of: Callable[[int], StepTerms], optimizer: torch.optim.Optimizer, clip: float) -> StepTerms:
        """One optimiser step on the mean loss of the micro-batches (`terms_of(g)`: loss terms of part g); mean terms."""
        optimizer.zero_grad(set_to_none=True)
        k, logged = len(self.parts), []
        for n, part in enumerate(self.parts):
            last = n == k - 1
            sync = nullcontext() if last or not isinstance(self.model, SyncedModel) else self.model.no_sync()
            with self._stream(part), sync:
                terms = terms_of(part)
                (terms["loss"] if k == 1 else terms["loss"] / k).backward()
            logged.append({name: v.detach() for name, v in terms.items()})
        if clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        return logged[0] if k == 1 else {name: torch.stack([t[name] for t in logged]).mean(0) for name in logged[0]}


def micro_batch_plan(saved: int | None, accumulate: int | None, ranks: int) -> tuple[int, int, str | None]:
    """(micro-batches per step G, per rank K, a note when G changes) for a new run (saved None) or a resumed one."""
    if saved is None:
        k = accumulate or 1
        return ranks * k, k, None
    if accumulate is None and saved % ranks == 0:
        return saved, saved // ranks, None
    k = accumulate or max(1, round(saved / ranks))
    if ranks * k == saved:
        return saved, k, None
    return ranks * k, k, (f"the global batch changes from {saved} to {ranks * k} micro-batches per step "
                          f"({ranks} ranks x {k}); from here on the run differs from one without the change, "
                          "and the learning-rate schedule is kept as it was")
