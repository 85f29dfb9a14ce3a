"""The task vocabulary, three words for three things, each with one table here.

- An **objective** is one of the official code's training losses, by its index (VIF, MEF, MFF):
  `OBJECTIVES`. Only training uses it (tcmoa.train.losses.task_loss).
- A **router** is one row of every TC-MoA module's router bank, trained for one kind of fusion with
  one objective: `ROUTERS`. Their order (`ROUTER_NAMES`) is part of the checkpoint format; a model
  config lists the routers it has (`ModelConfig.routers`). Data folders and crop scales live here too.
- A **preset** is what a user picks (`--task`, `task=`, the app's dropdown): roles, α/β defaults, the
  router it uses and how colour is handled: `PRESETS`, looked up case-insensitively by `get_preset`.

A **route** (`Route`) is what a forward pass is given: a router's index or name, or a weighting over
the routers. Adding a task (say NIR + visible) is one `Router`, its presets, and a router in the model
config. No torch here: the vocabulary is read by modules that do not need it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    import torch

# The official code's objectives, by its indices (engine_train.py: {"VIF": 0, "MEF": 1, "MFF": 2}).
OBJECTIVES = ("vif", "mef", "mff")
VIF, MEF, MFF = range(len(OBJECTIVES))

# A route: a router's index or name, or weights over the routers (blended router logits).
Route = Union[int, str, Sequence[float], "torch.Tensor"]


@dataclass(frozen=True)
class Router:
    """A kind of fusion with a router of its own: the objective that trains it and where its data lives."""

    name: str
    objective: int  # the official loss it trains with: VIF, MEF or MFF
    # A data set's source folders (<root>/<split>/<task>/<set>/<folder>/) in the model's order: A first,
    # then B, the first of the others present (medical sets hold mri and one of ct, pet, spect).
    folders: tuple[str, ...]
    crop_scale: tuple[float, float]  # area range of the training crops (RandomResizedCrop)
    # The pyramid output head's per-router switches (tcmoa/model/fusion_head.py), the initial values of a
    # model built for these routers (a saved model carries its own). Required, so a new router states them.
    # base_clip_gain: how strongly a clipped source gives way on the base band. On where a clipped region
    # is glare or saturation hiding the other source (VIF, medical); off where the clipped exposure's
    # brightness is wanted (MEF: pulling the base to the darker exposure lowers MEF-SSIM on training
    # pairs) or where both sources share one exposure (MFF).
    base_clip_gain: float
    # coarse_levels: the base band blended level by level on its own pyramid (large-scale tone kept, VIF
    # and MEF), or as one blend (MFF: focus differs in detail, not in tone; medical: lower Qabf on train/).
    coarse_levels: bool


# Dict order is the router index, part of the checkpoint format: append, never reorder. Crop
# scales are the official recipe for VIF/MEF/MFF; medical's, and its objective, are our choice (the
# official zero-shot medical route is the VIF router, so its objective is VIF's).
ROUTERS: dict[str, Router] = {r.name: r for r in (
    Router("vif", VIF, ("vi", "ir"), (0.81, 1.0), base_clip_gain=4.0, coarse_levels=True),
    Router("mef", MEF, ("over", "under"), (0.2, 1.0), base_clip_gain=0.0, coarse_levels=True),
    Router("mff", MFF, ("a", "b"), (0.64, 1.0), base_clip_gain=0.0, coarse_levels=False),
    Router("medical", VIF, ("mri", "ct", "pet", "spect"), (0.5, 1.0), base_clip_gain=4.0, coarse_levels=False),
)}
ROUTER_NAMES = tuple(ROUTERS)


@dataclass(frozen=True)
class Preset:
    """How to fuse one kind of source set: what a user picks."""

    key: str
    label: str
    roles: tuple[str, str]  # what source A (the decoded stream) and source B are
    router: str  # a ROUTERS name; unseen tasks name a trained router to borrow
    alpha: float = 1.0
    beta: float = 0.0
    # Exposure brackets and focal stacks have no natural order: the pipeline sorts them so the
    # result does not depend on upload order. Role-based tasks keep the user's order.
    order_free: bool = False
    seen: bool = True  # trained on (False: zero-shot through a borrowed router)
    colour_rule: str = ""

    def route_for(self, routers: Sequence[str]) -> str:
        """The router this preset uses on a model with these routers (falls back to VIF's)."""
        if self.router in routers:
            return self.router
        return "vif"  # the official zero-shot route for unseen tasks (medical, pan-sharpening)


_ONE_COLOUR = "one colour source: its luminance is fused and its colour restored"
_ALL_COLOUR = "colour in, colour out (fused in RGB)"

PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("vif", "Infrared + visible", ("visible", "infrared"), "vif",
               colour_rule=_ONE_COLOUR + "; grey visible gives a grey result"),
    Preset("mef", "Multi-exposure", ("over-exposed", "under-exposed"), "mef", order_free=True,
               colour_rule=_ALL_COLOUR),
    Preset("mff", "Multi-focus", ("far focus", "near focus"), "mff", order_free=True,
               colour_rule=_ALL_COLOUR),
    # Medical alpha/beta: chosen on train/medical only (python -m benchmarks.tune_medical, Qabf + VIF;
    # docs/BENCHMARKS.md). The metrics keep rising towards CT's and PET's strong edges (beta -0.2,
    # alpha 3); beta -0.1 leans every band towards CT/PET already (beta moves each band by 16 logits
    # per unit) and keeps the MRI's soft tissue; SPECT peaks at beta 0.
    Preset("mri-pet", "MRI + PET (unseen)", ("MRI", "PET"), "medical", alpha=2.0, beta=-0.1, seen=False,
               colour_rule=_ONE_COLOUR + " (the PET pseudo-colour)"),
    Preset("mri-spect", "MRI + SPECT (unseen)", ("MRI", "SPECT"), "medical", alpha=2.0, beta=0.0, seen=False,
               colour_rule=_ONE_COLOUR + " (the SPECT pseudo-colour)"),
    Preset("mri-ct", "MRI + CT (unseen)", ("MRI", "CT"), "medical", alpha=2.0, beta=-0.1, seen=False,
               colour_rule="grey in, grey out"),
)}
PRESET_ALIASES = {"medical": "mri-pet", "ivf": "vif", "multi-exposure": "mef", "multi-focus": "mff"}


class UnknownPresetError(ValueError):
    """A preset name that is neither a key nor an alias of PRESETS (the one message for it everywhere)."""

    def __init__(self, name: object):
        aliases = ", ".join(f"{a} = {k}" for a, k in PRESET_ALIASES.items())
        super().__init__(f"unknown task {name!r}; choose one of {', '.join(PRESETS)} (aliases: {aliases})")


def preset_key(name: str) -> str:
    """The PRESETS key of a preset name or alias, any case ('VIF' -> 'vif', 'medical' -> 'mri-pet')."""
    key = str(name).strip().lower()
    key = PRESET_ALIASES.get(key, key)
    if key not in PRESETS:
        raise UnknownPresetError(name)
    return key


def get_preset(name: str) -> Preset:
    """Look up a preset by key or alias, any case; UnknownPresetError lists the valid ones."""
    return PRESETS[preset_key(name)]
