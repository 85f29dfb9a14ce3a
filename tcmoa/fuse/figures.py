"""Figures of what TC-MoA did (prompts, routing, source weights) and of its result, as RGB uint8 arrays.

Everything renders off-screen with matplotlib's Agg canvas on `Figure` objects that are never
registered with pyplot, so nothing needs closing, no global backend is switched, and the app, the
CLI (`save_map_images`) and notebooks can all call these functions.

* `prompt_figure`: p_A / (p_A + p_B) per TC-MoA module and averaged over modules
  (`FusionMaps.source_a_share`), each overlaid on source A, with one colour bar:
  red where source A dominates the fused token, blue where source B does.
* `routing_figure`: each expert's gate map per module (a module x expert mosaic) and each
  expert's share of the routing mass per module (`FusionMaps.expert_share`) as a bar chart.
* `weight_figure`: the weight of source A of models whose output head has one: the pyramid's base band
  (the shipped `compact` model: the large-scale tones), or per pixel (the `source_weights` head).
* `difference_figure`: the fused image's luminance minus each source's, on one symmetric scale.
* `sweep_curve`: a metric against the values of alpha or beta (the app's sweep strip).
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

from ..imaging import ImageSource, read_image, bt601_luma
from .pipeline import FusionMaps

__all__ = ["difference_figure", "figure_to_array", "map_cells", "panel_figure", "prompt_figure", "routing_figure",
           "save_map_images", "sweep_curve", "weight_figure"]

SHARE_CMAP = "RdBu_r"  # 0 = source B (blue), 0.5 = balanced (white), 1 = source A (red)
DIFF_CMAP = "RdBu_r"  # signed differences: 0 is white
GATE_CMAP = "viridis"
DPI = 100
MAX_BACKGROUND_SIDE = 512  # the source under the prompt maps is shown at most this large
MAX_MAP_CELLS = 96  # gate maps are block-averaged to at most this many cells per side
# (panel name, title) of the weight map of each output head that has one (tcmoa.model.fusion_head). The
# pyramid head mixes every Laplacian band with its own weight; the map is the base band's, upsampled.
WEIGHT_MEANING = {
    "pyramid": ("weight of source A in the base band (large-scale tones)",
                "Base band: fused tone = w · A + (1 − w) · B  (each detail band has its own weight)"),
    "source_weights": ("weight of source A per pixel", "Fused image = w · A + (1 − w) · B + a small residual"),
}
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


def _background(image: ImageSource | None, size: tuple[int, int]) -> np.ndarray | None:
    """Source A as a grey float image of the maps' image size, downscaled for display."""
    if image is None:
        return None
    grey = read_image(image, max_pixels=None, min_side=1)  # a backdrop, not a source: any size
    grey = bt601_luma(grey) if grey.ndim == 3 else grey
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


def panel_figure(panels: Sequence[tuple[str, np.ndarray]], size: tuple[int, int], *, cmap: str, limits: tuple[float, float],
                 bar_label: str, title: str, background: ImageSource | None = None, cell: float = 1,
                 overlay: float = 0.6, width_px: int = 760) -> np.ndarray:
    """Maps of one image as a grid of panels with one shared colour bar, as RGB uint8.

    Each panel is (title, (h, w) map) whose cells cover `cell` x `cell` image pixels of an image of
    `size` (H, W) (the map may overhang it by part of a cell), drawn over `background` when given.
    """
    bg = _background(background, size)
    h, w = size
    cols = math.ceil(math.sqrt(len(panels)))
    rows = math.ceil(len(panels) / cols)
    fig_w, margin, gap, head, title_h = width_px / DPI, 0.1, 0.1, 0.4, 0.25
    panel_w = (fig_w - 2 * margin - (cols - 1) * gap) / cols
    panel_h = min(panel_w * h / w, 4.0)  # tall images: keep the figure short
    row_h = title_h + panel_h + 0.05
    fig = Figure(figsize=(fig_w, head + rows * row_h + 0.85), dpi=DPI)
    image = None
    for i, (name, grid) in enumerate(panels):
        r, c = divmod(i, cols)
        ax = _axes(fig, margin + c * (panel_w + gap), head + r * row_h + title_h, panel_w, panel_h)
        gh, gw = grid.shape[-2:]
        if bg is not None:
            ax.imshow(bg, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0), interpolation="bilinear")
        image = ax.imshow(map_cells(grid, 4 * MAX_MAP_CELLS), cmap=cmap, vmin=limits[0], vmax=limits[1],
                          extent=(0, gw * cell, gh * cell, 0), interpolation="nearest",
                          alpha=overlay if bg is not None else 1.0)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(name, fontsize=9, pad=3)
        ax.set_axis_off()
    cax = _axes(fig, margin + 0.2, head + rows * row_h + 0.1, fig_w - 2 * margin - 0.4, 0.14)
    assert image is not None, "panel_figure needs at least one panel"
    bar = fig.colorbar(image, cax=cax, orientation="horizontal")
    bar.set_ticks(np.linspace(limits[0], limits[1], 5).tolist())
    bar.set_label(bar_label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / fig.get_size_inches()[1], va="top")
    return figure_to_array(fig)


def prompt_figure(maps: FusionMaps, background: ImageSource | None = None,
                  roles: tuple[str, str] = ("source A", "source B"), width_px: int = 760) -> np.ndarray:
    """Source-A share per module and averaged over modules, overlaid on `background`, as RGB uint8."""
    panels = [("all modules (mean)", np.clip(maps.source_a_share(), 0.0, 1.0))] + \
        [(name, _share(a, b)) for name, a, b in zip(maps.module_names, maps.prompt_a, maps.prompt_b)]
    return panel_figure(panels, maps.image_size, cmap=SHARE_CMAP, limits=(0.0, 1.0), background=background,
                        cell=maps.pixel_patch, width_px=width_px,
                        bar_label=f"prompt share p_A/(p_A+p_B):  0 = {roles[1]} dominates,  1 = {roles[0]} dominates",
                        title="Prompts: which source each region takes its intensity from")


def weight_figure(maps: FusionMaps, background: ImageSource | None = None,
                  roles: tuple[str, str] = ("source A", "source B"), width_px: int = 760,
                  head: str = "pyramid") -> np.ndarray | None:
    """The weight of source A (`FusionMaps.source_weight`) over `background`, titled for the model's output
    `head` (its `fusion_output`, WEIGHT_MEANING); None without one."""
    if maps.source_weight is None:
        return None
    if head not in WEIGHT_MEANING:
        raise ValueError(f"the {head!r} output has no weight of source A; one of {', '.join(WEIGHT_MEANING)}")
    name, title = WEIGHT_MEANING[head]
    weight = maps.source_weight  # image size, or a display-size copy of it (cells then span several pixels)
    return panel_figure([(name, weight)], maps.image_size, cmap=SHARE_CMAP,
                        limits=(0.0, 1.0), background=background, width_px=width_px,
                        cell=maps.image_size[1] / weight.shape[1],
                        bar_label=f"w:  0 = all {roles[1]},  0.5 = even mix,  1 = all {roles[0]}", title=title)


def difference_figure(fused: np.ndarray, sources: Sequence[np.ndarray], labels: Sequence[str],
                      width_px: int = 760) -> np.ndarray:
    """Luminance of the fused image minus each source's, one panel per source, as RGB uint8."""
    def luma(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        x = x / 255.0 if x.max(initial=0) > 1.0 else x
        return bt601_luma(x) if x.ndim == 3 else x

    f = luma(fused)
    diffs = [f - luma(s) for s in sources]
    # One symmetric scale for every panel, set by the strongest differences (99th percentile).
    limit = max(0.05, float(np.percentile(np.abs(np.stack(diffs)), 99)))
    limit = math.ceil(limit * 20) / 20
    return panel_figure([(f"fused − {label}", d) for label, d in zip(labels, diffs)], f.shape, cmap=DIFF_CMAP,
                        limits=(-limit, limit), width_px=width_px,
                        bar_label="luminance difference:  red = fused brighter than the source,  blue = darker",
                        title="Difference: what the fusion took from, and changed in, each source")


def sweep_curve(values: Sequence[float], scores: Sequence[float | None], knob: str, metric: str,
                current: float | None = None, width_px: int = 420) -> np.ndarray:
    """A metric against a knob's values (the sweep strip's curve), the current value marked, as RGB uint8."""
    fig = Figure(figsize=(width_px / DPI, 2.4), dpi=DPI)
    ax = _axes(fig, 0.75, 0.35, width_px / DPI - 1.0, 1.55)
    points = [(v, s) for v, s in zip(values, scores) if s is not None and math.isfinite(s)]
    if points:
        ax.plot(*zip(*points), marker="o", color="#3b5ba9")
    if current is not None:
        ax.axvline(current, color="#f0a030", linestyle="--", linewidth=1, label=f"current {knob} = {current:g}")
        ax.legend(fontsize=7, frameon=False, loc="best")
    ax.set_xticks(list(values), [f"{v:g}" for v in values])
    ax.set_xlabel(knob, fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(f"{metric} of the fused image against {knob}", fontsize=9, pad=4)
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


def save_map_images(maps: FusionMaps, out_dir: str | Path, background: ImageSource | None = None,
                    roles: tuple[str, str] = ("source A", "source B"), head: str = "pyramid") -> list[Path]:
    """Write prompts.png, routing.png (and source_weight.png when the model has one) into out_dir.

    `background` is drawn under the maps: source A of the fusion they describe
    (`FusionResult.mapped_pair[0]`); `head` is the model's `fusion_output` (weight_figure). Returns the
    paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"prompts.png": prompt_figure(maps, background, roles), "routing.png": routing_figure(maps),
               "source_weight.png": weight_figure(maps, background, roles, head=head)}
    paths = []
    for name, rgb in figures.items():
        if rgb is not None:
            paths.append(out / name)
            Image.fromarray(rgb).save(paths[-1], optimize=False)
    return paths
