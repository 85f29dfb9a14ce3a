"""The metrics by name, and `evaluate`: whole images in, VIFB's grey or per-channel mode, {name: value} out.

The metric functions themselves (2-D float64 arrays on 0..255) are in tcmoa.metrics.vifb.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import matlab as mf
from .vifb import (average_gradient, cross_entropy, edge_intensity, entropy, mefb_mef_ssim, mutual_information, nabf, psnr,
                   qabf, qcb, qcv, rmse, spatial_frequency, vifb_ssim, standard_deviation, vif)


@dataclass(frozen=True)
class MetricInfo:
    """Registry entry: ``kind`` is 'fused' f(F), 'pair' f(F, A, B) or 'stack' f(F, [S...])."""

    name: str
    func: Callable[..., float]
    higher_is_better: bool
    needs_sources: bool
    kind: str
    colour: str = "channels"  # 'channels' (VIFB per-channel mean), 'hstack' (SF), 'gray' (MEF-SSIM)


METRICS: dict[str, MetricInfo] = {
    m.name: m for m in (
        MetricInfo("EN", entropy, True, False, "fused"),
        MetricInfo("SD", standard_deviation, True, False, "fused"),
        MetricInfo("SF", spatial_frequency, True, False, "fused", "hstack"),
        MetricInfo("AG", average_gradient, True, False, "fused"),
        MetricInfo("MI", mutual_information, True, True, "pair"),
        MetricInfo("PSNR", psnr, True, True, "pair"),
        MetricInfo("RMSE", rmse, False, True, "pair"),
        MetricInfo("Qabf", qabf, True, True, "pair"),
        MetricInfo("SSIM", vifb_ssim, True, True, "pair"),
        MetricInfo("CE", cross_entropy, False, True, "pair"),
        MetricInfo("EI", edge_intensity, True, False, "fused"),
        MetricInfo("Qcb", qcb, True, True, "pair"),
        MetricInfo("Qcv", qcv, False, True, "pair"),
        MetricInfo("VIF", vif, True, True, "pair"),
        MetricInfo("MEF-SSIM", mefb_mef_ssim, True, True, "stack", "gray"),
        MetricInfo("Nabf", nabf, False, True, "pair"),
    )
}


def _as_image(x: np.ndarray, what: str) -> np.ndarray:
    """Validate one input image and return it as float64 (H,W) or (H,W,3) on 0..255."""
    arr = np.asarray(x)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{what}: expected shape (H,W) or (H,W,3), got {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{what}: unsupported dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} contains {'NaN' if np.isnan(out).any() else 'infinite'} values")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"{what}: values must lie in 0..255, got [{lo:g}, {hi:g}] (clip first)")
    if arr.dtype.kind == "f" and 0 < hi <= 1.0:
        raise ValueError(f"{what}: float image in 0..1; metrics expect 0..255 (multiply by 255)")
    return out


def _is_grey(img: np.ndarray) -> bool:
    """2-D, or three identical channels."""
    if img.ndim == 2:
        return True
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def _vifb_grey(img: np.ndarray) -> np.ndarray:
    """Grey-mode conversion: R=G=B images keep a channel, colour ones go through rgb2gray."""
    if img.ndim == 2:
        return img
    return np.ascontiguousarray(img[..., 0]) if _is_grey(img) else mf.rgb2gray(img)


def _call(info: MetricInfo, f: np.ndarray, srcs: list[np.ndarray]) -> float:
    if info.kind == "fused":
        return info.func(f)
    if info.kind == "pair":
        return info.func(f, srcs[0], srcs[1])
    return info.func(f, srcs)


def evaluate(fused: np.ndarray, sources: Sequence[np.ndarray],
             names: Sequence[str] | None = None) -> dict[str, float]:
    """Score ``fused`` against ``sources`` with the metrics in ``names`` (default: all of METRICS).

    Images are uint8 (or any integer type) or float **on the 0..255 scale**, shaped (H,W),
    (H,W,1) or (H,W,3); float images within 0..1, values outside 0..255, NaN/inf, size
    mismatches and fewer than 2 sources raise ValueError. Grey mode when ``fused`` is 2-D
    or has R=G=B (colour sources then go through MATLAB rgb2gray with rounding); otherwise
    VIFB per-channel mode, grey sources replicated. Two-source metrics need exactly two
    sources; MEF-SSIM takes any number >= 2 and always scores rgb2gray images.
    """
    names = list(METRICS) if names is None else [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    F = _as_image(fused, "fused")
    srcs = [_as_image(s, f"sources[{i}]") for i, s in enumerate(sources)]
    if len(srcs) < 2:
        raise ValueError(f"need at least 2 source images, got {len(srcs)}")
    for i, s in enumerate(srcs):
        if s.shape[:2] != F.shape[:2]:
            raise ValueError(f"sources[{i}] has size {s.shape[:2]}, fused has {F.shape[:2]}")
    pair_names = [n for n in names if METRICS[n].kind == "pair"]
    if pair_names and len(srcs) != 2:
        raise ValueError(f"{pair_names} need exactly 2 sources, got {len(srcs)}")
    colour = not _is_grey(F)
    grey: tuple[np.ndarray, list[np.ndarray]] | None = None
    if colour:  # contiguous planes once; grey sources are replicated
        planes = [(np.ascontiguousarray(F[..., k]),
                   [s if s.ndim == 2 else np.ascontiguousarray(s[..., k]) for s in srcs])
                  for k in range(3)]
    out: dict[str, float] = {}
    for name in names:
        info = METRICS[name]
        if info.colour == "gray" or not colour:
            if grey is None:
                grey = _vifb_grey(F), [_vifb_grey(s) for s in srcs]
            out[name] = float(_call(info, *grey))
        elif info.colour == "hstack":
            out[name] = float(info.func(np.concatenate([F[..., k] for k in range(3)], axis=1)))
        else:
            vals = [_call(info, f, ss) for f, ss in planes]
            out[name] = float(np.mean(vals))
    return out
