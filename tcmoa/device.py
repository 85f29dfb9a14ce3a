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


def release_freed_memory() -> None:
    """Hand the heap memory freed so far back to the system (glibc keeps it otherwise, so RSS only grows).

    A fusion's steps peak one after another (reading, the token path, the full-resolution head); freed
    between them, the next step's peak does not stack on the last one's leftovers.
    """
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)


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
