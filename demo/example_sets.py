"""The bundled example sets: demo/examples/<task>/<set>/<n>_<role>.<ext>, one folder per set.

Sets under demo/examples/unaligned/ are not registered: they open with alignment on, under the task whose
roles their files name (`1_visible`, `2_infrared`: infrared + visible).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcmoa import PRESETS
from tcmoa.imaging import image_files

from .engine import DEFAULT_ALIGN, MAX_SOURCES

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TASK_ORDER = tuple(PRESETS)  # vif, mef, mff, mri-pet, mri-spect, mri-ct
UNALIGNED = "unaligned"  # the folder of sets that need alignment
UNALIGNED_ALIGN = "auto"  # how they open


@dataclass(frozen=True)
class ExampleSet:
    """One clickable example: a task and its source files in order."""

    task: str
    name: str
    files: tuple[Path, ...]
    unaligned: bool = False  # sources that are not registered (demo/examples/unaligned/)

    @property
    def align(self) -> str:
        """"Align sources" as the example opens."""
        return UNALIGNED_ALIGN if self.unaligned else DEFAULT_ALIGN

    @property
    def label(self) -> str:
        """What the example button says, e.g. 'Infrared + visible: tno 18' or '...: tno 18 thermal camera
        (unaligned)'."""
        extra = f" ({len(self.files)} sources)" if len(self.files) > 2 else ""
        extra += " (unaligned)" if self.unaligned else ""
        return f"{PRESETS[self.task].label}: {self.name.replace('_', ' ')}{extra}"

    def row(self) -> list[object]:
        """[task, source 1, ..., source MAX_SOURCES] with None for unused slots (gr.Examples)."""
        paths: list[object] = [str(f) for f in self.files[:MAX_SOURCES]]
        return [self.task, *paths, *[None] * (MAX_SOURCES - len(paths))]


def task_of(files: tuple[Path, ...]) -> str | None:
    """The task whose roles the files name in order (`1_visible`, `2_infrared`: vif), or None."""
    roles = tuple(f.stem.partition("_")[2].lower() for f in files[:2])
    return next((key for key, p in PRESETS.items() if tuple(r.lower() for r in p.roles) == roles), None)


def find_examples(root: Path = EXAMPLES_DIR) -> list[ExampleSet]:
    """Every example set under root, in task order then by name; the unaligned sets last."""
    found = []
    for task in TASK_ORDER:
        for folder in sorted((root / task).glob("*/")):
            files = tuple(image_files(folder).values())
            if len(files) >= 2:
                found.append(ExampleSet(task, folder.name, files))
    for folder in sorted((root / UNALIGNED).glob("*/")):
        files = tuple(image_files(folder).values())
        named = task_of(files) if len(files) >= 2 else None
        if named is not None:
            found.append(ExampleSet(named, folder.name, files, unaligned=True))
    return found
