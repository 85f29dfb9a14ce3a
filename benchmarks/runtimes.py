"""The runtime A/B: eager PyTorch against int8, torch.compile and ONNX Runtime, in one process, one run.

The library offers eager and int8 (tcmoa.fuse.runtime); torch.compile and ONNX Runtime are candidates
built here, which lost (docs/BENCHMARKS.md, "Runtimes") and so are not offered.

    python -m benchmarks.runtimes [--runs 5] [--sizes 640x480 4000x3000] [--ort]

For each size, the bundled MSRS pair (scaled) is fused end to end by `Fuser.fuse` with every runtime,
alternating runtimes run by run so that all see the same machine load; best wall and CPU seconds of
--runs, after a warm-up. "first call" is the warm-up's seconds (torch.compile compiles there: the cost
at an app's start). Exactness is the largest and the mean difference from eager, in grey levels of the
uint8 result.

--ort adds ONNX Runtime (not a dependency of the project: `pip install onnxruntime`): the token path
exported by torch.onnx for the exact input shape of each size (the exporter cannot keep the windowed
attention's shapes dynamic in torch 2.14), run by an InferenceSession with 2 threads in place of the
eager token path; its first call includes the export.
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tcmoa.device import reuse_freed_memory
from tcmoa.fuse.pipeline import Fuser
from tcmoa.imaging import image_files, read_image, resize_to, to_uint8
from tcmoa.model.checkpoint import load_model
from tcmoa.model.moa import ModuleTrace, PromptControl
from tcmoa.model.network import TCMoA

PAIR = Path("demo/examples/vif/msrs_00047N")


def with_onnx_runtime(model: TCMoA) -> TCMoA:
    """A copy of `model` whose token path runs in ONNX Runtime, exported on the first call of each shape."""
    import onnxruntime as ort

    fast = copy.copy(model)
    sessions: dict[tuple[Any, ...], Any] = {}
    n_enc, n_dec = len(model.encoder_moa), len(model.decoder_moa)

    class TokenPath(torch.nn.Module):
        """The token path with its outputs as tensors: tokens, then every module's p_A, p_B and gates, stacked."""

        def __init__(self, route: torch.Tensor, control: PromptControl):
            super().__init__()
            self.model, self.route, self.control = model, route, control

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
            tokens, _, enc, dec = self.model.token_path(a, b, self.route, self.control)
            traces = enc + dec
            return (tokens, torch.stack([t.prompt_a for t in traces]), torch.stack([t.prompt_b for t in traces]),
                    torch.stack([t.gates for t in traces]))

    def token_path(a: torch.Tensor, b: torch.Tensor, route: torch.Tensor, control: PromptControl):
        key = (tuple(a.shape), tuple(route.tolist()), control)
        if key not in sessions:
            path = f"/tmp/tcmoa_token_path_{len(sessions)}.onnx"
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(TokenPath(route, control), (a.clone(), b.clone()), path, input_names=["a", "b"],
                                  opset_version=18, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            sessions[key] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        tokens, p_a, p_b, gates = (torch.from_numpy(x) for x in sessions[key].run(None, {"a": a.numpy(), "b": b.numpy()}))
        none = torch.zeros(())
        traces = [ModuleTrace(p_a[i], p_b[i], none, gates[i], none) for i in range(n_enc + n_dec)]
        return tokens, model.token_grid(a.shape[2], a.shape[3]), traces[:n_enc], traces[n_enc:]

    fast.token_path = token_path  # type: ignore[method-assign]
    return fast


def with_torch_compile(model: TCMoA) -> TCMoA:
    """A copy of `model` whose token path is compiled by torch.compile (inductor, static shapes), once per size.

    Static shapes: with dynamic=True the first call at 640x480 had not finished after 14 minutes on
    this 2-core machine (shared with other jobs at the time).
    """
    fast = copy.copy(model)  # shares the weights; only the bound token path differs
    fast.token_path = torch.compile(model.token_path, dynamic=False)  # type: ignore[method-assign]
    return fast


def fusers(model: TCMoA, ort: bool) -> dict[str, Fuser]:
    """One Fuser per runtime, all at the library's defaults otherwise: the library's two, and the candidates."""
    out = {name: Fuser(model, device="cpu", max_pixels=10**9, runtime=name) for name in ("eager", "int8")}
    out["compile"] = Fuser(with_torch_compile(model), device="cpu", max_pixels=10**9, runtime="eager")
    if ort:
        out["onnxruntime"] = Fuser(with_onnx_runtime(model), device="cpu", max_pixels=10**9, runtime="eager")
    return out


def fused_image(fuser: Fuser, sources: list[np.ndarray]) -> np.ndarray:
    """The VIF fusion of `sources`."""
    return fuser.fuse(sources, "vif").image


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of one call, and what it returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    """Print one row per (size, runtime)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", nargs="*", default=["640x480", "4000x3000"])
    ap.add_argument("--ort", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    reuse_freed_memory()  # as the app and the CLI do
    model = load_model(None)
    images = [read_image(p) for p in sorted(image_files(PAIR).values())]
    print("| size | runtime | first call s | best s | best CPU s | speed-up | max diff | mean diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        w, h = map(int, size.split("x"))
        sources = [resize_to(im, (h, w)) for im in images]
        runtimes = fusers(model, args.ort)
        first = {name: timed(partial(fused_image, f, sources)) for name, f in runtimes.items()}
        best = {name: [float("inf"), float("inf")] for name in runtimes}
        for _ in range(args.runs if w * h <= 4_000_000 else max(1, args.runs // 3)):
            for name, f in runtimes.items():
                wall, cpu, _ = timed(partial(fused_image, f, sources))
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
        eager = to_uint8(first["eager"][2]).astype(int)
        for name in runtimes:
            diff = np.abs(to_uint8(first[name][2]).astype(int) - eager)
            print(f"| {w}x{h} | {name} | {first[name][0]:.2f} | {best[name][0]:.3f} | {best[name][1]:.2f} | "
                  f"{best['eager'][0] / best[name][0]:.2f}x | {diff.max()} | {diff.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
