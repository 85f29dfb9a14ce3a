"""How the token path is executed: eager PyTorch (the default and the fallback), or a faster variant.

    auto     int8 on the CPU for models with an output head (the shipped compact model); eager on a GPU
             and for official checkpoints, which must reproduce the official numbers exactly
    eager    the model as it is
    int8     dynamic int8 quantisation of the backbone blocks' linear layers (weights int8, activations
             quantised per call); the TC-MoA modules, the output head and the norms stay float32
    compile  torch.compile of the token path (inductor; C++ on the CPU), exact to float rounding; it
             compiles again for every new input size (seconds each), so it suits batches of one size

docs/BENCHMARKS.md ("Runtimes") measures each against eager in one run, speed and quality; the
default is the one that won there.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..model.network import TCMoA

RUNTIMES = ("auto", "eager", "int8", "compile")


def quantized(model: TCMoA) -> TCMoA:
    """A copy of `model` whose backbone blocks' linear layers run in dynamic int8 (CPU only)."""
    fast = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch.ao's notice that this API is moving to torchao
        warnings.simplefilter("ignore")
        for name in ("blocks", "decoder_blocks"):
            blocks = getattr(fast, name)
            setattr(fast, name, torch.ao.quantization.quantize_dynamic(blocks, {nn.Linear}, dtype=torch.qint8))
    return fast


def compiled(model: TCMoA) -> TCMoA:
    """A copy of `model` whose token path is compiled by torch.compile, once per input size.

    Static shapes: with dynamic=True the first call at 640x480 had not finished after 14 minutes on
    this 2-core machine (shared with other jobs at the time; docs/BENCHMARKS.md, "Runtimes").
    """
    fast = copy.copy(model)  # shares the weights; only the bound token_path differs
    fast.token_path = torch.compile(model.token_path, dynamic=False)  # type: ignore[method-assign]
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
    if runtime == "compile":
        return compiled(model)
    return model
