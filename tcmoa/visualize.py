"""Figures of what TC-MoA did: prompt (dominance) maps and routing, as RGB uint8 arrays.

Everything renders off-screen with matplotlib's Agg canvas on `Figure` objects that are never
registered with pyplot, so nothing needs closing, no global backend is switched, and the app, the
CLI (`save_map_images`) and notebooks can all call these functions.

* `prompt_figure`: p_A / (p_A + p_B) per TC-MoA module and averaged over modules
  (`FusionMaps.source_a_share`), each overlaid on source A, with one colour bar:
  red where source A dominates the fused token, blue where source B does.
* `routing_figure`: each expert's gate map per module (a module x expert mosaic) and each
  expert's share of the routing mass per module (`FusionMaps.expert_share`) as a bar chart.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .imaging import read_image, to_grey
from .pipeline import FusionMaps

__all__ = ["figure_to_array", "map_cells", "prompt_figure", "routing_figure", "save_map_images"]

SHARE_CMAP = "RdBu_r"  # 0 = source B (blue), 0.5 = balanced (white), 1 = source A (red)
GATE_CMAP = "viridis"
DPI = 100
MAX_BACKGROUND_SIDE = 512  # the source under the prompt maps is shown at most this large
MAX_MAP_CELLS = 96  # gate maps are block-averaged to at most this many cells per side
# Text layout in matplotlib shares font caches between figures; concurrent requests draw in turn.
_DRAW_LOCK = threading.Lock()


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(fig)
    with _DRAW_LOCK:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def map_cells(grid: np.ndarray, max_cells: int = MAX_MAP_CELLS) -> np.ndarray:
    """Block-average the last two axes so that neither exceeds max_cells (for display only)."""
    h, w = grid.shape[-2:]
    k = max(1, math.ceil(max(h, w) / max_cells))
    if k == 1:
        return grid
    hh, ww = -(-h // k) * k, -(-w // k) * k
    pad = [(0, 0)] * (grid.ndim - 2) + [(0, hh - h), (0, ww - w)]
    padded = np.pad(grid, pad, mode="edge")
    return padded.reshape(*grid.shape[:-2], hh // k, k, ww // k, k).mean(axis=(-3, -1))


def _background(image: object | None, size: tuple[int, int]) -> np.ndarray | None:
    """Source A as a grey float image of the maps' image size, downscaled for display."""
    if image is None:
        return None
    grey = read_image(image, max_pixels=None)
    grey = to_grey(grey) if grey.ndim == 3 else grey
    h, w = size
    scale = min(1.0, MAX_BACKGROUND_SIDE / max(h, w))
    shown = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(grey).resize(shown, Image.Resampling.BILINEAR))


def _share(p_a: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """p_A / (p_A + p_B) clipped to [0, 1] (alpha/beta can push prompts outside (0, 1))."""
    return np.clip(p_a / np.maximum(p_a + p_b, 1e-6), 0.0, 1.0)


def _axes(fig: Figure, left: float, top: float, width: float, height: float):
    """Add axes placed in inches from the figure's top-left corner (fast, exact layout)."""
    fw, fh = fig.get_size_inches()
    return fig.add_axes((left / fw, 1 - (top + height) / fh, width / fw, height / fh))


def prompt_figure(maps: FusionMaps, background: object | None = None,
                  roles: tuple[str, str] = ("source A", "source B"), overlay: float = 0.6,
                  width_px: int = 760) -> np.ndarray:
    """Source-A share per module and averaged over modules, overlaid on `background`, as RGB uint8."""
    shares = [np.clip(maps.source_a_share(), 0.0, 1.0)] + \
        [_share(a, b) for a, b in zip(maps.prompt_a, maps.prompt_b)]
    titles = ["all modules (mean)"] + list(maps.module_names)
    bg = _background(background, maps.image_size)
    h, w = maps.image_size
    gh, gw = maps.prompt_a.shape[-2:]
    extent = (0, gw * maps.pixel_patch, gh * maps.pixel_patch, 0)  # the grid may overhang the image
    cols = math.ceil(math.sqrt(len(shares)))
    rows = math.ceil(len(shares) / cols)
    fig_w, margin, gap, head, title_h = width_px / DPI, 0.1, 0.1, 0.4, 0.25
    panel_w = (fig_w - 2 * margin - (cols - 1) * gap) / cols
    panel_h = panel_w * h / w
    row_h = title_h + panel_h + 0.05
    fig = Figure(figsize=(fig_w, head + rows * row_h + 0.85), dpi=DPI)
    image = None
    for i, (share, title) in enumerate(zip(shares, titles)):
        r, c = divmod(i, cols)
        ax = _axes(fig, margin + c * (panel_w + gap), head + r * row_h + title_h, panel_w, panel_h)
        if bg is not None:
            ax.imshow(bg, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0), interpolation="bilinear")
        image = ax.imshow(map_cells(share, 4 * MAX_MAP_CELLS), cmap=SHARE_CMAP, vmin=0, vmax=1, extent=extent,
                          interpolation="nearest", alpha=overlay if bg is not None else 1.0)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(title, fontsize=9, fontweight="bold" if i == 0 else "normal", pad=3)
        ax.set_axis_off()
    cax = _axes(fig, margin + 0.2, head + rows * row_h + 0.1, fig_w - 2 * margin - 0.4, 0.14)
    bar = fig.colorbar(image, cax=cax, orientation="horizontal")
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1])
    bar.set_label(f"prompt share p_A/(p_A+p_B):  0 = {roles[1]} dominates,  1 = {roles[0]} dominates",
                  fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle("Prompts: which source each region takes its intensity from", fontsize=10,
                 y=1 - 0.12 / fig.get_size_inches()[1], va="top")
    return figure_to_array(fig)


def gate_mosaic(gates: np.ndarray, gap: int = 1) -> np.ndarray:
    """(M, E, h, w) gate maps -> one (M*h', E*w') image with NaN gaps between the cells."""
    small = map_cells(gates)
    m, e, h, w = small.shape
    out = np.full((m * (h + gap) - gap, e * (w + gap) - gap), np.nan, dtype=np.float32)
    for i in range(m):
        for j in range(e):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = small[i, j]
    return out


def routing_figure(maps: FusionMaps, width_px: int = 760) -> np.ndarray:
    """Per-expert gate maps of every module and each expert's share of tokens, as RGB uint8."""
    m, e = maps.gates.shape[:2]
    mosaic = gate_mosaic(maps.gates)
    cell_h, cell_w = (mosaic.shape[0] + 1) / m, (mosaic.shape[1] + 1) / e
    fig_w, left, right, head = width_px / DPI, 0.95, 0.75, 0.7
    mosaic_w = fig_w - left - right
    mosaic_h = mosaic_w * mosaic.shape[0] / mosaic.shape[1]
    if mosaic_h > 4.5:  # many modules: keep the figure short, narrow the mosaic instead
        mosaic_w, mosaic_h = mosaic_w * 4.5 / mosaic_h, 4.5
    bars_top = head + mosaic_h + 0.75
    fig = Figure(figsize=(fig_w, bars_top + 1.6 + 0.35), dpi=DPI)
    ax = _axes(fig, left, head, mosaic_w, mosaic_h)
    cmap = colormaps[GATE_CMAP].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                      aspect="auto")
    ax.set_xticks([(j + 0.5) * cell_w - 1 for j in range(e)], [f"expert {j + 1}" for j in range(e)], fontsize=8)
    ax.set_yticks([(i + 0.5) * cell_h - 1 for i in range(m)], maps.module_names, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("Gate weight of each expert per token (top-k routing)", fontsize=9, pad=4)
    bar = fig.colorbar(image, cax=_axes(fig, left + mosaic_w + 0.12, head, 0.13, mosaic_h))
    bar.ax.tick_params(labelsize=7)
    share = maps.expert_share()
    bars = _axes(fig, left, bars_top, fig_w - left - 0.3, 1.6)
    width = 0.8 / m
    for i, name in enumerate(maps.module_names):
        bars.bar(np.arange(e) + (i - (m - 1) / 2) * width, share[i], width, label=name)
    bars.set_xticks(np.arange(e), [f"expert {j + 1}" for j in range(e)], fontsize=8)
    bars.set_ylabel("share of tokens", fontsize=8)
    bars.set_ylim(0, 1)
    bars.tick_params(labelsize=7)
    bars.legend(fontsize=7, ncols=min(m, 4), loc="upper right", frameon=False)
    bars.set_title("Each expert's share of the routing mass per module", fontsize=9, pad=4)
    fig.suptitle("Routing: which adapters (experts) each module uses", fontsize=10,
                 y=1 - 0.12 / fig.get_size_inches()[1], va="top")
    return figure_to_array(fig)


def save_map_images(maps: FusionMaps, sources: Sequence[object], out_dir: str | Path,
                    roles: tuple[str, str] = ("source A", "source B"),
                    order: Sequence[int] | None = None) -> list[Path]:
    """Write prompts.png and routing.png for one fusion into out_dir; returns the paths.

    `sources` are the fused inputs (paths or arrays); the first in `order` (the fusion order,
    `FusionResult.order`, default as given) is source A and is drawn under the prompt maps.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = sources[order[0] if order else 0] if len(sources) else None
    paths = [out / "prompts.png", out / "routing.png"]
    for path, rgb in zip(paths, (prompt_figure(maps, first, roles), routing_figure(maps))):
        Image.fromarray(rgb).save(path, optimize=False)
    return paths
