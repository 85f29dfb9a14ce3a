"""tcmoa: Task-Customized Mixture of Adapters (TC-MoA, CVPR 2024) for general image fusion.

    import tcmoa
    model = tcmoa.load_model()                  # the shipped model (or a folder / official .pth / preset)
    fuser = tcmoa.Fuser(model)                  # GPU when present, CPU otherwise
    result = fuser.fuse(["vis.jpg", "ir.png"], task="vif", alpha=1.0, beta=0.0, maps=True)
    result.image                                # float32 [0, 1], the sources' size
    result.maps.prompt_a, result.maps.gates     # per-module prompts and routing on the token grid
"""
from .checkpoint import CheckpointError, load_model, save_model
from .config import PRESETS, ModelConfig, get_config
from .imaging import ImageError, read_image, save_image
from .model import FusionOutput, TCMoA
from .moa import PromptControl
from .pipeline import FusionMaps, FusionResult, Fuser
from .tasks import TASKS, TaskPreset, get_task

__all__ = [
    "CheckpointError", "FusionMaps", "FusionOutput", "FusionResult", "Fuser", "ImageError", "ModelConfig",
    "PRESETS", "PromptControl", "TASKS", "TCMoA", "TaskPreset", "get_config", "get_task", "load_model",
    "read_image", "save_image", "save_model",
]
__version__ = "0.1.0"
