"""The alignment tab: how the sources sit on the reference, as a figure and in words.

`checkerboard` interleaves two images in squares, so a misplaced edge breaks where the squares meet;
`alignment_figure` shows each source over the reference as given and as fused (aligned), the
pixels a warped source does not cover hatched, and, for exposure stacks, the moving content taken
from the reference; `alignment_table` says per source what was done. Plain functions of arrays (RGB
uint8 out), drawn like tcmoa.fuse.figures (matplotlib's Agg canvas, no pyplot).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from tcmoa.align import SourceAlignment
from tcmoa.fuse.figures import DPI, figure_to_array
from tcmoa.imaging import bt601_luma, resize_to

CELLS = 8  # squares along the longer side of a checkerboard
UNCOVERED_RGB = (1.0, 0.55, 0.0)  # orange: no pixels of the source here (the reference's are fused)
MOVING_RGB = (0.85, 0.0, 0.85)  # magenta: moving content, taken from the reference exposure
TINT = 0.55  # how strongly a marked pixel takes its colour
HINT_PREFIX = "alignment off, but "  # tcmoa.fuse.prepare's misalignment hint with alignment off
STATUS_WORDS = {"reference": "the reference frame", "unchanged": "already aligned, left as given",
                "aligned": "aligned", "failed": "left as given (could not be aligned reliably)"}


@dataclass(frozen=True)
class AlignmentShown:
    """What the alignment tab needs from one fusion: display copies, small (a session keeps it)."""

    reference: int  # 0-based
    given: tuple[np.ndarray, ...]  # uint8 display copies of the sources as given, in the reference frame's size
    records: tuple[SourceAlignment, ...] | None  # None: alignment off
    uncovered: tuple[np.ndarray | None, ...]  # display-size (H, W) bool per source: no pixels of it; None = covers all
    moving: tuple[np.ndarray, ...] | None  # display-size (H, W) bool: moving content replaced (exposure stacks)
    notes: tuple[str, ...]  # the fusion's notes about reading, alignment and moving content


def grey(image: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1], grey or RGB -> float32 grey in [0, 1]."""
    x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return bt601_luma(x) if x.ndim == 3 else x


def stretched(image: np.ndarray) -> np.ndarray:
    """Grey, its 1st..99th percentile stretched to [0, 1]: a dark infrared and a bright visible image compare."""
    g = grey(image)
    low, high = np.percentile(g, (1, 99))
    if high - low < 1e-3:  # one flat tone: shown as it is
        return g
    return np.clip((g - low) / float(high - low), 0.0, 1.0)


def checkerboard(reference: np.ndarray, source: np.ndarray, cells: int = CELLS) -> np.ndarray:
    """(H, W) float in [0, 1]: squares of `reference` and of `source` (same size) in turn, each contrast-stretched."""
    if reference.shape[:2] != source.shape[:2]:
        raise ValueError(f"a checkerboard needs images of one size, got {reference.shape[:2]} and {source.shape[:2]}")
    h, w = reference.shape[:2]
    side = max(1, math.ceil(max(h, w) / cells))
    ys, xs = np.arange(h)[:, None] // side, np.arange(w)[None, :] // side
    return np.where((ys + xs) % 2 == 0, stretched(reference), stretched(source))


def marked(plane: np.ndarray, mask: np.ndarray | None, colour: tuple[float, float, float],
           hatch: bool = False) -> np.ndarray:
    """(H, W) grey -> (H, W, 3) with `mask` (bool, or > 0.5; resized to the plane) tinted `colour`, in diagonal
    stripes when `hatch`."""
    rgb = np.repeat(plane[..., None], 3, axis=-1)
    if mask is None:
        return rgb
    mask = mask.astype(np.float32)
    if mask.shape != plane.shape:
        mask = resize_to(mask, plane.shape)
    on = mask > 0.5
    if hatch:
        ys, xs = np.indices(plane.shape)
        on &= (ys + xs) % 12 < 6
    rgb[on] = (1 - TINT) * rgb[on] + TINT * np.asarray(colour, dtype=np.float32)
    return rgb


def source_label(index: int, record: SourceAlignment | None) -> str:
    """'source 2: aligned (similarity), confidence 0.62' or 'source 2' with alignment off."""
    if record is None:
        return f"source {index + 1}"
    words = STATUS_WORDS[record.status]
    if record.status == "aligned":
        words = f"aligned ({record.model})"
    return f"source {index + 1}: {words}, confidence {record.confidence:.2f}"


def panels(shown: AlignmentShown, fused_sources: Sequence[np.ndarray]) -> list[list[tuple[str, np.ndarray]]]:
    """One row of (title, RGB float image) per source but the reference: as given, as fused, moving content."""
    ref = shown.reference
    rows = []
    for i, fused in enumerate(fused_sources):
        if i == ref:
            continue
        record = shown.records[i] if shown.records is not None else None
        row = []
        if record is None or record.status == "aligned" or shown.given[i].shape[:2] != fused.shape[:2]:
            row.append((f"source {i + 1} as given", marked(checkerboard(shown.given[ref], shown.given[i]), None,
                                                         UNCOVERED_RGB)))
        if record is not None:
            board = checkerboard(fused_sources[ref], fused)
            row.append(("as fused: " + source_label(i, record).removeprefix(f"source {i + 1}: "),
                        marked(board, shown.uncovered[i], UNCOVERED_RGB, hatch=True)))
        if shown.moving is not None:
            share = float(shown.moving[i].mean())
            found = f"{100 * share:.1f}% of the image" if share > 0 else "none found"
            row.append((f"moving content of source {i + 1}: {found}", marked(stretched(fused), shown.moving[i],
                                                                            MOVING_RGB)))
        rows.append(row)
    return rows


def alignment_figure(shown: AlignmentShown, fused_sources: Sequence[np.ndarray], width_px: int = 760) -> np.ndarray:
    """Each source over the reference as a checkerboard, as given and as fused, with the uncovered pixels and
    moving content marked (a legend says how), as RGB uint8. `fused_sources`: the sources as fused (one size)."""
    rows = panels(shown, fused_sources)
    cols = max(len(row) for row in rows)
    h, w = fused_sources[shown.reference].shape[:2]
    fig_w, margin, gap, head, title_h = width_px / DPI, 0.1, 0.1, 0.45, 0.25
    foot = 0.2 + 0.2 * (3 if shown.moving is not None else 2)
    panel_w = (fig_w - 2 * margin - (cols - 1) * gap) / cols
    panel_h = min(panel_w * h / w, 3.2)
    row_h = title_h + panel_h + 0.05
    fig = Figure(figsize=(fig_w, head + len(rows) * row_h + foot), dpi=DPI)
    fh = fig.get_size_inches()[1]
    for r, row in enumerate(rows):
        for c, (title, image) in enumerate(row):
            left, top = margin + c * (panel_w + gap), head + r * row_h + title_h
            ax = fig.add_axes((left / fig_w, 1 - (top + panel_h) / fh, panel_w / fig_w, panel_h / fh))
            ax.imshow(np.clip(image, 0, 1), interpolation="bilinear", aspect="auto")
            ax.set_title(title, fontsize=8, pad=3)
            ax.set_axis_off()
    fig.suptitle(f"Each source over the reference (source {shown.reference + 1}) in alternating squares",
                 fontsize=10, y=1 - 0.12 / fh, va="top")
    legend = ["where the sources line up, edges run on from square to square",
              "orange stripes: no pixels of the source there (the reference's are fused)"]
    if shown.moving is not None:
        legend.append("magenta: moving content, taken from the reference exposure")
    fig.text(0.5, 0.1 / fh, "\n".join(legend), ha="center", va="bottom", fontsize=8, linespacing=1.4)
    return figure_to_array(fig)


def alignment_table(shown: AlignmentShown | None) -> str:
    """Markdown: per source what was done and how sure it is (a list), then the other notes; empty without a
    fusion."""
    if shown is None:
        return ""
    if shown.records is None:
        table = (f"**Alignment off**: the sources are fused as given (reference frame: source {shown.reference + 1}). "
                 "The squares below show whether they line up; if edges jump between squares, choose "
                 "**Align sources: auto**.")
    else:
        rows = []
        for record in shown.records:
            done = (STATUS_WORDS[record.status] if record.status == "reference"
                    else page_words(record.note.removeprefix(f"source {record.index + 1}: ")))
            if record.status != "reference" and "confidence" not in done:
                done += f" (confidence {record.confidence:.2f})"
            rows.append(f"- **source {record.index + 1}**: {done}")
        table = "\n".join(rows)
    per_source = {r.note for r in shown.records or ()}
    others = [f"- {page_note(note).removeprefix('Note: ')}" for note in shown.notes if note not in per_source]
    return "\n\n".join([table, "\n".join(others)]) if others else table


def page_words(note: str) -> str:
    """A library note in the page's words: its `align=...` options as the "Align sources" control, the overlay as
    the Alignment tab."""
    note = re.sub(r"align=(\w+)", r"**Align sources: \1**", note)
    return note.replace("check the overlay", "check the **Alignment** tab")


def page_note(note: str) -> str:
    """One note of a fusion for the status line: the misalignment hint (alignment off) as a suggestion."""
    if note.startswith(HINT_PREFIX):
        return f"💡 **Suggestion:** {page_words(note.removeprefix(HINT_PREFIX))}"
    return f"Note: {page_words(note)}"
