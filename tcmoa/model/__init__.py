"""The network: configs, the MAE-style backbone, the TC-MoA module, the output head, and checkpoints.

    config       ModelConfig and the presets (official-large/base/tiny, compact)
    backbone     transformer blocks, windowed attention, relative positions (timm layers)
    moa          one TC-MoA module: router bank, shared adapters, prompts, alpha/beta (Eq. 8)
    fusion_head  the compact model's outputs: per-band weights of the sources' Laplacian pyramids (shipped),
                 or per-pixel source weights
    network      TCMoA: two streams through the backbone with TC-MoA modules, decoded
    checkpoint   save/load (safetensors + config.json; official .pth with weights_only=True)

Imports torch; nothing here reads images or knows about the app.
"""
