"""Fusion task presets: which router, which source roles, and the default alpha/beta."""
from __future__ import annotations

from dataclasses import dataclass

from .model import Route


@dataclass(frozen=True)
class TaskPreset:
    """How to fuse one kind of source set."""

    key: str
    label: str
    roles: tuple[str, str]  # what source A (the decoded stream) and source B are
    router: str  # the task router to use; unseen tasks name a trained router to borrow
    alpha: float = 1.0
    beta: float = 0.0
    # Exposure brackets and focal stacks have no natural order: the pipeline sorts them so the
    # result does not depend on upload order. Role-based tasks keep the user's order.
    order_free: bool = False
    seen: bool = True  # trained on (False: zero-shot through a borrowed router)
    colour_rule: str = ""

    def route_for(self, task_names: tuple[str, ...]) -> Route:
        """The router this preset uses on a model with these routers (falls back to VIF's)."""
        if self.router in task_names:
            return self.router
        return "vif"  # the official zero-shot route for unseen tasks (medical, pan-sharpening)


_ONE_COLOUR = "one colour source: its luminance is fused and its colour restored"
_ALL_COLOUR = "colour in, colour out (fused in RGB)"

TASKS: dict[str, TaskPreset] = {p.key: p for p in (
    TaskPreset("vif", "Infrared + visible", ("visible", "infrared"), "vif",
               colour_rule=_ONE_COLOUR + "; grey visible gives a grey result"),
    TaskPreset("mef", "Multi-exposure", ("over-exposed", "under-exposed"), "mef", order_free=True,
               colour_rule=_ALL_COLOUR),
    TaskPreset("mff", "Multi-focus", ("far focus", "near focus"), "mff", order_free=True,
               colour_rule=_ALL_COLOUR),
    TaskPreset("mri-pet", "MRI + PET (unseen)", ("MRI", "PET"), "medical", seen=False,
               colour_rule=_ONE_COLOUR + " (the PET pseudo-colour)"),
    TaskPreset("mri-spect", "MRI + SPECT (unseen)", ("MRI", "SPECT"), "medical", seen=False,
               colour_rule=_ONE_COLOUR + " (the SPECT pseudo-colour)"),
    TaskPreset("mri-ct", "MRI + CT (unseen)", ("MRI", "CT"), "medical", seen=False,
               colour_rule="grey in, grey out"),
)}
TASK_ALIASES = {"medical": "mri-pet", "ivf": "vif", "multi-exposure": "mef", "multi-focus": "mff"}


def get_task(key: str) -> TaskPreset:
    """Look up a preset by key or alias, listing the valid keys when unknown."""
    key = TASK_ALIASES.get(key.lower(), key.lower())
    if key not in TASKS:
        raise ValueError(f"unknown task {key!r}; choose one of {', '.join(TASKS)}")
    return TASKS[key]
