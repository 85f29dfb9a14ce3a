"""What alpha and beta do to a fusion, measured: the knobs of the paper's Eq. 8 swept on real pairs.

- beta shifts dominance between the sources: as it rises, the result should move towards source A,
  measured as SSIM(F, A) - SSIM(F, B) (VIFB's SSIM, grey images).
- alpha scales the per-region preference: as it rises, the prompt maps should spread out, measured
  as the standard deviation of p_A over the token grid, averaged over the TC-MoA modules.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..imaging import bt601_luma
from ..metrics.vifb import vifb_ssim_each
from ..model.moa import ALPHA_RANGE, BETA_RANGE, KnobRange
from .pipeline import Fuser, FuseSettings, canonical_order
from ..tasks import get_preset

KNOBS: dict[str, KnobRange] = {k.name: k for k in (BETA_RANGE, ALPHA_RANGE)}  # one name per knob
BETAS = (-0.3, -0.15, 0.0, 0.15, 0.3)
ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)


@dataclass
class Sweep:
    """One knob swept on one source pair: the knob values, the fused images and the measure."""

    knob: str  # "alpha" or "beta"
    values: tuple[float, ...]
    images: list[np.ndarray]
    measure: list[float]

    def rises_at_every_step(self) -> bool:
        """True when the measure strictly increases from each knob value to the next."""
        return all(b > a for a, b in zip(self.measure, self.measure[1:]))


def towards_a(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SSIM(F, A) - SSIM(F, B) on grey images: > 0 when the result resembles source A more."""
    ssim_a, ssim_b = vifb_ssim_each(*(bt601_luma(x).astype(np.float64) * 255.0 for x in (fused, a, b)))
    return ssim_a - ssim_b


def prompt_spread(p_a: np.ndarray) -> float:
    """Standard deviation of p_A over the token grid, averaged over modules; p_a is (M, h, w)."""
    return float(np.mean([m.std() for m in p_a]))


def model_order(sources: Sequence[np.ndarray], task: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair as the model sees it (A first): order-free tasks are sorted as the pipeline sorts them."""
    order = canonical_order(sources[:2], get_preset(task))
    return sources[order[0]], sources[order[1]]


def sweep_settings(settings: FuseSettings, knob: str, values: Sequence[float]) -> list[FuseSettings]:
    """`settings` with one knob ("alpha" or "beta") set to each value, checked against its range."""
    if knob not in KNOBS:
        raise ValueError(f"a sweep varies {' or '.join(KNOBS)}, not {knob!r}")
    knob_range = KNOBS[knob]
    if knob == "alpha":
        return [dataclasses.replace(settings, alpha=knob_range.check(v)) for v in values]
    return [dataclasses.replace(settings, beta=knob_range.check(v)) for v in values]


def beta_sweep(fuser: Fuser, sources: Sequence[np.ndarray], task: str, betas: Sequence[float] = BETAS,
               alpha: float | None = None) -> Sweep:
    """Fuse at every beta; measure how far each result leans towards source A (the model's stream A)."""
    a, b = model_order(sources, task)
    images = [fuser.fuse([a, b], s).image for s in sweep_settings(fuser.settings(task, alpha=alpha), "beta", betas)]
    return Sweep("beta", tuple(betas), images, [towards_a(f, a, b) for f in images])


def alpha_sweep(fuser: Fuser, sources: Sequence[np.ndarray], task: str, alphas: Sequence[float] = ALPHAS,
                beta: float | None = None) -> Sweep:
    """Fuse at every alpha; measure the spread of the prompt maps."""
    pair = list(model_order(sources, task))
    results = [fuser.fuse(pair, s, maps=True) for s in sweep_settings(fuser.settings(task, beta=beta), "alpha", alphas)]
    return Sweep("alpha", tuple(alphas), [r.image for r in results],
                 [prompt_spread(r.maps.prompt_a) for r in results if r.maps is not None])


def sweep_figure(rows: Sequence[tuple[str, Sequence[np.ndarray], Sweep]], path: str | Path) -> None:
    """One row per (title, sources, sweep): the sources, the fused strip, and the measure's curve."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay as they are

    n_img = max(len(s.images) for _, _, s in rows) + 2
    fig = Figure(figsize=(1.9 * (n_img + 1.6), 2.0 * len(rows)))
    axes = fig.subplots(len(rows), n_img + 1, gridspec_kw={"width_ratios": [1] * n_img + [1.6]}, squeeze=False)
    for r, (title, sources, sweep) in enumerate(rows):
        tiles = [("source A", sources[0]), ("source B", sources[1])]  # pass them in model order
        tiles += [(f"{sweep.knob}={v:g}", im) for v, im in zip(sweep.values, sweep.images)]
        for c, (label, im) in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(np.clip(im, 0, 1), cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
        ax = axes[r, -1]
        ax.plot(sweep.values, sweep.measure, marker="o")
        ax.set_xlabel(sweep.knob, fontsize=8)
        ax.set_ylabel("SSIM(F,A) - SSIM(F,B)" if sweep.knob == "beta" else "prompt spread (std p_A)", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
