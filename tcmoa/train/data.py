"""Training data: the batches each task trains on, drawn from the image banks of a training pack.

The pack (one safetensors file of every training image) is tcmoa.train.image_pack; the banks that hold
it on the training device, with their random resized crops, tcmoa.train.image_bank; both are
re-exported here. This module draws task batches from the banks (real pairs, or pairs synthesised
from natural images); `python -m tcmoa pack` / `bench` is tcmoa/train_cli.py. Only pretrain/natural and
train/ are read, never eval/.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..tasks import ROUTERS, ROUTER_NAMES
from .image_bank import ImageBank
from .image_pack import discover, load_pack, pack, read_meta
from .synthesis import as_generator, rand, synthesize_exposure_pair, synthesize_focus_pair

__all__ = ["RECON_SCALE", "TASK_SCALE", "ImageBank", "bench", "discover", "load_pack", "pack", "read_meta",
           "reconstruction_batch", "split_counts", "training_batch"]

TASK_SCALE = {t.name: t.crop_scale for t in ROUTERS.values()}  # RandomResizedCrop area ranges
RECON_SCALE = (0.2, 1.0)  # MAE-style pre-training crops


def split_counts(batch: int, weights: Sequence[float]) -> list[int]:
    """Deterministic largest-remainder split of `batch` by weights (no random draw, so no device sync)."""
    total = float(sum(weights))
    quota = [batch * wt / total for wt in weights]
    counts = [int(q) for q in quota]
    for i in sorted(range(len(quota)), key=lambda i: counts[i] - quota[i])[: batch - sum(counts)]:
        counts[i] += 1
    return counts


def _mixed(banks: Sequence[ImageBank], weights: Sequence[float], batch: int, size: int, scale, g,
           zoom: tuple[float, float] | None = None) -> Tensor:
    """Crops from several banks of the same channel count, split by weights, concatenated: (B, C, S, S)."""
    parts = [bk.sample(n, size, scale, generator=g, zoom=zoom) for bk, n in zip(banks, split_counts(batch, weights)) if n]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _device(banks: dict[str, ImageBank]) -> torch.device:
    """The device the banks live on."""
    return next(iter(banks.values())).device


def training_batch(
    banks: dict[str, ImageBank], task: int | str, batch: int, size: int,
    generator: torch.Generator | int | None = None, mef_real_frac: float = 0.5,
    scale: tuple[float, float] | None = None, zoom: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """A fusion batch (A, B) for a task (index or name): each (B, 3, size, size) in [0, 1], model role order."""
    name = ROUTER_NAMES[task] if isinstance(task, int) else task
    g = as_generator(generator, _device(banks))
    sc = scale or TASK_SCALE[name]
    if name == "mef":  # real pairs + exposures synthesised from natural images
        n_real = round(batch * mef_real_frac) if "mef" in banks else 0
        a, b = [], []
        if n_real:
            x = banks["mef"].sample(n_real, size, sc, generator=g, zoom=zoom)
            a.append(x[:, :3])
            b.append(x[:, 3:])
        if batch - n_real:
            nat = banks["natural"].sample(batch - n_real, size, sc, generator=g, zoom=zoom)
            over, under = synthesize_exposure_pair(nat, g)
            a.append(over)
            b.append(under)
        return torch.cat(a), torch.cat(b)
    if name == "mff":  # no real training pairs: complementary defocus of natural images
        far, near, _ = synthesize_focus_pair(banks["natural"].sample(batch, size, sc, generator=g, zoom=zoom), g)
        return far, near
    # Every other task: its real pairs; several groups (medical: CT, PET, SPECT) in proportion to their sizes.
    pairs = [banks[k] for k in sorted(banks) if k == name or k.startswith(f"{name}_")]
    if not pairs:
        raise KeyError(f"no training pairs for task {name!r} in the banks ({', '.join(banks)})")
    x = _mixed(pairs, [len(bk) for bk in pairs], batch, size, sc, g, zoom)
    return x[:, :3], x[:, 3:]


def reconstruction_batch(
    banks: dict[str, ImageBank], batch: int, size: int, generator: torch.Generator | int | None = None,
    natural_frac: float = 0.5, scale: tuple[float, float] = RECON_SCALE,
) -> Tensor:
    """Single images (B, 3, size, size) in [0, 1] for backbone pre-training: natural + frames of train pairs."""
    dev = _device(banks)
    g = as_generator(generator, dev)
    pairs = [banks[k] for k in sorted(banks) if banks[k].channels == 6]
    nat = banks.get("natural")
    n_nat = batch if not pairs else (round(batch * natural_frac) if nat is not None else 0)
    parts = [nat.sample(n_nat, size, scale, generator=g)] if n_nat and nat is not None else []
    if batch - n_nat:
        x = _mixed(pairs, [len(bk) for bk in pairs], batch - n_nat, size, scale, g)  # (n, 6, S, S)
        pick_a = rand(g, (x.shape[0], 1, 1, 1), dev) < 0.5  # either source of the pair
        parts.append(torch.where(pick_a, x[:, :3], x[:, 3:]))
    return torch.cat(parts)


# --- command line ----------------------------------------------------------------------------
def bench(path: str | Path, device: str = "cpu", batches: int = 100, batch: int = 16, size: int = 224) -> None:
    """Time loading a pack and drawing batches of every kind."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    t0 = time.perf_counter()
    banks = load_pack(path, device)
    sync()
    print(f"load: {time.perf_counter() - t0:.2f} s, " + ", ".join(f"{k} {len(b)}" for k, b in banks.items()))
    g = torch.Generator(device=device).manual_seed(0)
    kinds: list[tuple[str, Callable[[], object]]] = [(t, functools.partial(training_batch, banks, t, batch, size, g))
                                                     for t in ROUTER_NAMES]
    kinds.append(("recon", functools.partial(reconstruction_batch, banks, batch, size, g)))
    for name, fn in kinds:
        fn()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(batches):
            fn()
        sync()
        wall, cpu = (time.perf_counter() - t0) / batches, (time.process_time() - c0) / batches
        print(f"{name:>8}: {1e3 * wall:.1f} ms per {batch}×{size}² batch (process CPU time {1e3 * cpu:.1f} ms)")
