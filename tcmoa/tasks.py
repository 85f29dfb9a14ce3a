"""The task vocabulary: the kinds of fusion the model has routers for, and the presets users pick.

Every other module derives its task names from the two tables here: the router order
(`TASK_NAMES`, part of the checkpoint format), the official loss each router trains with, the
source folders of the data sets (tcmoa.train.data, tcmoa.metrics.evaluation), the baselines' task argument, and
the presets of the pipeline, CLI and app. Adding a task (say NIR + visible) is one `RouterTask`
entry, its presets, and a router in the model config (`task_names`). No torch here: the
vocabulary is read by modules that do not need it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model.network import Route

# The official code's tasks, by its indices (engine_train.py: {"VIF": 0, "MEF": 1, "MFF": 2}): one loss each.
OFFICIAL_TASKS = ("vif", "mef", "mff")
VIF, MEF, MFF = range(len(OFFICIAL_TASKS))


@dataclass(frozen=True)
class RouterTask:
    """A kind of fusion with a router of its own: the loss that trains it and where its data lives."""

    name: str
    loss: int  # the official loss it trains with: VIF, MEF or MFF
    # A data set's source folders (<root>/<split>/<task>/<set>/<folder>/) in the model's order: A first,
    # then B, the first of the others present (medical sets hold mri and one of ct, pet, spect).
    folders: tuple[str, ...]
    crop_scale: tuple[float, float]  # area range of the training crops (RandomResizedCrop)


# Dict order is the router index, part of the checkpoint format: append, never reorder. Crop
# scales are the official recipe for VIF/MEF/MFF; medical's, and its loss, are our choice (the
# official zero-shot medical route is the VIF router, so its loss is VIF's).
ROUTER_TASKS: dict[str, RouterTask] = {t.name: t for t in (
    RouterTask("vif", VIF, ("vi", "ir"), (0.81, 1.0)),
    RouterTask("mef", MEF, ("over", "under"), (0.2, 1.0)),
    RouterTask("mff", MFF, ("a", "b"), (0.64, 1.0)),
    RouterTask("medical", VIF, ("mri", "ct", "pet", "spect"), (0.5, 1.0)),
)}
TASK_NAMES = tuple(ROUTER_TASKS)


@dataclass(frozen=True)
class TaskPreset:
    """How to fuse one kind of source set."""

    key: str
    label: str
    roles: tuple[str, str]  # what source A (the decoded stream) and source B are
    router: str  # a ROUTER_TASKS name; unseen tasks name a trained router to borrow
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
    # Medical alpha/beta: tuned on train/medical only (python -m benchmarks.tune_medical, Qabf + VIF;
    # docs/BENCHMARKS.md), with beta kept within +-0.2: the metrics favour CT's and PET's strong edges
    # further out, while MRI soft-tissue findings (e.g. a lesion) fade from the result.
    TaskPreset("mri-pet", "MRI + PET (unseen)", ("MRI", "PET"), "medical", alpha=2.0, beta=-0.2, seen=False,
               colour_rule=_ONE_COLOUR + " (the PET pseudo-colour)"),
    TaskPreset("mri-spect", "MRI + SPECT (unseen)", ("MRI", "SPECT"), "medical", alpha=2.0, beta=-0.2, seen=False,
               colour_rule=_ONE_COLOUR + " (the SPECT pseudo-colour)"),
    TaskPreset("mri-ct", "MRI + CT (unseen)", ("MRI", "CT"), "medical", alpha=2.0, beta=-0.2, seen=False,
               colour_rule="grey in, grey out"),
)}
TASK_ALIASES = {"medical": "mri-pet", "ivf": "vif", "multi-exposure": "mef", "multi-focus": "mff"}


def get_task(key: str) -> TaskPreset:
    """Look up a preset by key or alias, listing the valid keys when unknown."""
    key = TASK_ALIASES.get(key.lower(), key.lower())
    if key not in TASKS:
        raise ValueError(f"unknown task {key!r}; choose one of {', '.join(TASKS)}")
    return TASKS[key]
