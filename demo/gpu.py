"""Hugging Face ZeroGPU: model calls run inside `spaces.GPU` when the `spaces` package is installed.

`spaces` exists only on Hugging Face Spaces. There it must be imported before CUDA initialises
(this module is imported by demo.engine, before any model loads), and CUDA is real only inside a
decorated call, which runs in a forked worker process: its arguments and results are pickled, so
decorated functions take images and settings, never the model. Off ZeroGPU the decorator does
nothing, and without the package `on_gpu` returns the function itself: nothing changes locally.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

try:
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None

# Set by Spaces on ZeroGPU hardware (the `spaces` package reads the same variable).
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
GPU_SECONDS = 60  # the most one call may hold the GPU: a sweep is 5 fusions of at most 16 MP
Fn = TypeVar("Fn", bound=Callable)


def on_gpu(fn: Fn) -> Fn:
    """`fn` wrapped in `spaces.GPU` when the package is present, else `fn` unchanged."""
    return spaces.GPU(duration=GPU_SECONDS)(fn) if spaces is not None else fn
