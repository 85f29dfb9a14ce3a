"""Evaluation harness: find the eval sets, run fusion methods on them, score and tabulate.

Layout of a set: <root>/<task>/<set>/<role>/<id>.<ext>; a pair is the
files with the same id under the set's role folders. Sets of scenes (lytro_triples) hold
<scene>/{a,b,c}.<ext> instead.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..imaging import image_files, read_image, to_uint8
from .scores import METRICS, evaluate
from ..tasks import ROUTERS, PRESETS

# fuse(list of float [0,1] images, set) -> float [0,1] image
FuseFn = Callable[[list[np.ndarray], "EvalSet"], np.ndarray]


@dataclass
class EvalSet:
    """One evaluation set: its name (task/set), task preset key, and source files per item."""

    name: str
    task: str  # a tcmoa.tasks key: vif, mef, mff, mri-ct, mri-pet, mri-spect
    items: list[tuple[str, list[Path]]] = field(default_factory=list)


def discover_sets(root: Path, names: Sequence[str] | None = None) -> list[EvalSet]:
    """Every set under root (or only `names`, e.g. 'vif/tno25'), with its items in id order."""
    found = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in ROUTERS):
        for set_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            name = f"{task_dir.name}/{set_dir.name}"
            if names and name not in names:
                continue
            roles = [r for r in ROUTERS[task_dir.name].folders if (set_dir / r).is_dir()]
            if len(roles) >= 2:
                by_role = [image_files(set_dir / r) for r in roles]
                ids = sorted(set.intersection(*(set(b) for b in by_role)))
                items = [(i, [b[i] for b in by_role]) for i in ids]
            else:  # one folder per scene, any number of sources
                items = [(d.name, list(image_files(d).values())) for d in sorted(set_dir.iterdir()) if d.is_dir()]
            task = task_dir.name if task_dir.name in PRESETS else "-".join(roles[:2])  # medical: mri-ct, ...
            found.append(EvalSet(name, task, items))
    if names:
        missing = sorted(set(names) - {s.name for s in found})
        if missing:
            raise ValueError(f"no such eval set under {root}: {', '.join(missing)}")
    return found


def metric_names(eval_set: EvalSet) -> list[str]:
    """The metrics reported for a set: all two-source ones, plus MEF-SSIM on exposure sets."""
    names = [n for n, info in METRICS.items() if n not in ("MEF-SSIM",)]
    if eval_set.task == "mef":
        names.append("MEF-SSIM")
    return names


@dataclass
class Row:
    """The scores of one method on one item."""

    set_name: str
    method: str
    item: str
    seconds: float
    scores: dict[str, float]


def run_method(eval_set: EvalSet, method: str, fuse: FuseFn, limit: int | None = None,
               progress: Callable[[Iterable], Iterable] = lambda x: x,
               metrics: Sequence[str] | None = None) -> list[Row]:
    """Fuse and score every item with `metrics` (default: all of the set's); 3+ source items are timed only."""
    names = metric_names(eval_set) if metrics is None else [m for m in metric_names(eval_set) if m in metrics]
    rows = []
    for item, paths in progress(eval_set.items[:limit]):
        sources = [read_image(p) for p in paths]
        start = time.perf_counter()
        fused = fuse(sources, eval_set)
        seconds = time.perf_counter() - start
        scores = {}
        if len(sources) == 2:
            scores = evaluate(to_uint8(fused), [to_uint8(s) for s in sources], names)
        rows.append(Row(eval_set.name, method, item, seconds, scores))
    return rows


def markdown_table(rows: Sequence[Row], metrics: Sequence[str]) -> str:
    """Methods x mean metrics (+ median seconds per pair), one line per method in first-seen order.

    Metrics no row has (scenes of 3+ sources are timed, not scored) are left out.
    """
    methods = list(dict.fromkeys(r.method for r in rows))
    metrics = [m for m in metrics if any(m in r.scores for r in rows)]
    arrow = {n: ("↑" if METRICS[n].higher_is_better else "↓") for n in metrics}
    header = ["method", "n", *(f"{m} {arrow[m]}" for m in metrics), "s/pair"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        mine = [r for r in rows if r.method == method]
        cells = []
        for metric in metrics:
            values = [r.scores[metric] for r in mine if metric in r.scores]
            cells.append(f"{np.nanmean(values):.4g}" if values else "—")
        seconds = np.median([r.seconds for r in mine])
        lines.append("| " + " | ".join([method, str(len(mine)), *cells, f"{seconds:.3f}"]) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per (set, method, item) with every score and the seconds."""
    metrics = list(dict.fromkeys(m for r in rows for m in r.scores))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "method", "item", "seconds", *metrics])
        for r in rows:
            writer.writerow([r.set_name, r.method, r.item, f"{r.seconds:.4f}",
                             *(f"{r.scores[m]:.6g}" if m in r.scores else "" for m in metrics)])


def read_csv(path: Path) -> list[Row]:
    """The rows of a results.csv written by `write_csv` (empty cells: metrics not scored)."""
    with open(path, newline="") as f:
        return [Row(r["set"], r["method"], r["item"], float(r["seconds"]),
                    {k: float(v) for k, v in r.items() if k not in ("set", "method", "item", "seconds") and v})
                for r in csv.DictReader(f)]

