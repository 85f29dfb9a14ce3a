"""tcmoa: Task-Customized Mixture of Adapters (TC-MoA, CVPR 2024) for general image fusion.

    import tcmoa
    model = tcmoa.load_model()                  # the shipped model (or a folder / official .pth / preset)
    fuser = tcmoa.Fuser(model)                  # GPU when present, CPU otherwise
    result = fuser.fuse(["vis.jpg", "ir.png"], task="vif", alpha=1.0, beta=0.0, maps=True)
    result.image                                # float32 [0, 1], the sources' size
    result.maps.prompt_a, result.maps.gates     # per-module prompts and routing on the token grid

The names below load on first use (PEP 562), so `import tcmoa`, `tcmoa.metrics` (all of it) and `tcmoa.imaging`
need no torch; the model's names bring it in when asked for.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model.checkpoint import CheckpointError, load_model, save_model
    from .model.config import CONFIGS, ModelConfig, get_config
    from .imaging import ImageError, read_image, save_image
    from .model.network import FusionOutput, TCMoA
    from .model.moa import PromptControl
    from .fuse.pipeline import FusionMaps, FusionResult, Fuser
    from .tasks import PRESETS, Preset, get_preset

# Public name -> the submodule that defines it (the same list as the imports above).
_SOURCES = {
    "model.checkpoint": ("CheckpointError", "load_model", "save_model"),
    "model.config": ("CONFIGS", "ModelConfig", "get_config"),
    "imaging": ("ImageError", "read_image", "save_image"),
    "model.network": ("FusionOutput", "TCMoA"),
    "model.moa": ("PromptControl",),
    "fuse.pipeline": ("FusionMaps", "FusionResult", "Fuser"),
    "tasks": ("PRESETS", "Preset", "get_preset"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's submodule the first time the name is used."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    """The module's attributes, the not-yet-loaded public names included."""
    return sorted(set(globals()) | set(__all__))
