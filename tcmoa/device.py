"""Where to run: the device asked for, else the GPU when present, else the CPU (inference and training
alike); and handing freed memory back to the system between the large steps of a fusion."""
from __future__ import annotations

import ctypes

import torch


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_GLIBC = _glibc()


# From this many pixels a fusion's steps hand their freed memory back (release_freed_memory). Below it the
# freed memory is a few hundred MB at most and is better kept: handing it back makes the next tensors
# page-fault their memory in again, 35 ms of a 270-ms fusion at 640x480 (docs/BENCHMARKS.md, "Speed against size").
RELEASE_FROM_PIXELS = 4_000_000
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to this size are reused from the heap when freed
TRIM_THRESHOLD = 2**30  # free memory at the heap's top that glibc keeps before it trims on its own


def release_freed_memory(pixels: int) -> None:
    """Hand the heap memory freed so far back to the system, after a step over an image of `pixels` pixels
    when it is large enough to matter (RELEASE_FROM_PIXELS); glibc keeps it otherwise, so RSS only grows.

    A large fusion's steps peak one after another (reading, the token path, the full-resolution head);
    freed between them, the next step's peak does not stack on the last one's leftovers.
    """
    if _GLIBC is not None and pixels >= RELEASE_FROM_PIXELS:
        _GLIBC.malloc_trim(0)


def reuse_freed_memory() -> None:
    """Let glibc keep freed tensors' memory for the next ones (process-wide: the app and CLI call it at start).

    By default glibc maps each block over a moving threshold fresh from the system, and trims the heap
    whenever its free top exceeds twice that threshold: every fusion's tensors then page-fault their
    memory in again (a 640x480 fusion spent a fifth of its time so). With a fixed threshold of 32 MB and
    a trim threshold of 1 GB, freed blocks are reused; release_freed_memory still hands large fusions'
    memory back. Never called on import: the allocator is the process owner's choice.
    """
    if _GLIBC is not None and hasattr(_GLIBC, "mallopt"):
        _GLIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _GLIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or the GPU when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists every backend it was built with
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("a CUDA device was requested but none is available; use device='cpu'")
    return device
