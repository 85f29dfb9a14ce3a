"""Where to run: the device asked for, else the GPU when present, else the CPU (inference and training alike)."""
from __future__ import annotations

import torch


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
