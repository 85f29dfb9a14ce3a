"""How the token path is executed: eager PyTorch (the fallback, and the default on a GPU), or int8 on the CPU.

    auto     int8 on the CPU for models with an output head (the shipped compact model); eager on a GPU
             and for official checkpoints, which must reproduce the official numbers exactly
    eager    the model as it is
    int8     dynamic int8 quantisation of the backbone blocks' linear layers (weights int8, activations
             quantised per call); the TC-MoA modules, the output head and the norms stay float32

docs/BENCHMARKS.md ("Runtimes") measures each against eager in one run, speed and quality, beside the
candidates that lost and are not offered: torch.compile (1.18x at 640x480 after a 45-s cold compile, and
it recompiled on every 12 MP call) and ONNX Runtime (1.22x at 640x480, 1.04x at 12 MP; a new dependency
needs 1.5x at both). int8 won and is the default on the CPU.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..model.network import TCMoA

RUNTIMES = ("auto", "eager", "int8")


def quantized(model: TCMoA) -> TCMoA:
    """A copy of `model` whose backbone blocks' linear layers run in dynamic int8 (CPU only)."""
    fast = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch.ao's notice that this API is moving to torchao
        warnings.simplefilter("ignore")
        for name in ("blocks", "decoder_blocks"):
            blocks = getattr(fast, name)
            setattr(fast, name, torch.ao.quantization.quantize_dynamic(blocks, {nn.Linear}, dtype=torch.qint8))
    return fast


def resolve(model: TCMoA, runtime: str, device: torch.device) -> str:
    """The runtime `runtime` (one of RUNTIMES) means for this model on this device ("auto" decided)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return "int8" if device.type == "cpu" and model.fusion_head is not None else "eager"
    return runtime


def prepare(model: TCMoA, runtime: str, device: torch.device) -> TCMoA:
    """The model to run for `runtime` (one of RUNTIMES other than "auto") on `device`."""
    if runtime == "int8":
        if device.type != "cpu":
            raise ValueError("runtime 'int8' is for the CPU; on a GPU use precision bf16 or fp16")
        return quantized(model)
    return model
