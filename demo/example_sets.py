"""The bundled example sets: demo/examples/<task>/<set>/<n>_<role>.<ext>, one folder per set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcmoa import PRESETS
from tcmoa.imaging import image_files

from .engine import MAX_SOURCES

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TASK_ORDER = tuple(PRESETS)  # vif, mef, mff, mri-pet, mri-spect, mri-ct


@dataclass(frozen=True)
class ExampleSet:
    """One clickable example: a task and its source files in order."""

    task: str
    name: str
    files: tuple[Path, ...]

    @property
    def label(self) -> str:
        """What the example button says, e.g. 'Infrared + visible: tno 18'."""
        extra = f" ({len(self.files)} sources)" if len(self.files) > 2 else ""
        return f"{PRESETS[self.task].label}: {self.name.replace('_', ' ')}{extra}"

    def row(self) -> list[object]:
        """[task, source 1, ..., source MAX_SOURCES] with None for unused slots (gr.Examples)."""
        paths: list[object] = [str(f) for f in self.files[:MAX_SOURCES]]
        return [self.task, *paths, *[None] * (MAX_SOURCES - len(paths))]


def find_examples(root: Path = EXAMPLES_DIR) -> list[ExampleSet]:
    """Every example set under root, in task order then by name."""
    found = []
    for task in TASK_ORDER:
        for folder in sorted((root / task).glob("*/")):
            files = tuple(image_files(folder).values())
            if len(files) >= 2:
                found.append(ExampleSet(task, folder.name, files))
    return found
