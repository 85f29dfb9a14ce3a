"""The data folders the benchmarks (and the tests that need real data) read: not part of the library.

Where they are is `tcmoa.data_root.DATA_ROOT` (`$TCMOA_DATA`, else ../shared/data beside the checkout);
commands with `--root` take another.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tcmoa.imaging import image_files, read_image, shrink_to
from tcmoa.metrics.evaluation import discover_sets
from tcmoa.train.synthesis import synthesize_focus_pair



def need_data(folder: Path, command: str) -> Path:
    """`folder`, or exit with one line saying where the data sets go (they are not in the repository)."""
    if not Path(folder).is_dir():
        raise SystemExit(f"{command}: no data at {folder}; this benchmark reads the research data sets (README, "
                         "'Data and credits'), which are not in the repository: set $TCMOA_DATA or pass --root")
    return Path(folder)


def evenly(items: list, n: int) -> list:
    """n items taken evenly through the list (all of them when it is shorter)."""
    idx = np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int)
    return [items[i] for i in idx]


def training_pairs(root: Path, task: str, n: int, max_side: int = 320) -> list[list[np.ndarray]]:
    """N source pairs of a router's task from root/train (MFF: synthetic focus pairs from root/pretrain/natural).

    Taken evenly through the task's training sets, shrunk to max_side; never from eval/.
    """
    if task == "mff":  # no real multi-focus training pairs: defocus natural images as training does
        pairs = []
        for i, path in enumerate(evenly(list(image_files(root / "pretrain" / "natural").values()), n)):
            sharp = torch.from_numpy(shrink_to(read_image(path, collapse_grey=False), max_side)).permute(2, 0, 1)[None]
            far, near, _ = synthesize_focus_pair(sharp, generator=1000 + i)
            pairs.append([x[0].permute(1, 2, 0).numpy() for x in (far, near)])
        return pairs
    items = [paths for s in discover_sets(root / "train") if s.task == task for _, paths in s.items]
    return [[shrink_to(read_image(p), max_side) for p in paths] for paths in evenly(items, n)]
