"""The network: configs, the MAE-style backbone, the TC-MoA module, the output head, and checkpoints.

    config       ModelConfig and the presets (official-large/base/tiny, compact)
    backbone     transformer blocks, windowed attention, relative positions (timm layers)
    moa          one TC-MoA module: router bank, shared adapters, prompts, alpha/beta (Eq. 8)
    fusion_head  the output heads' interface (PromptMargin, trust), and the per-pixel source-weight head
    pyramid_head the shipped head: per-band weights of the sources' Laplacian pyramids
    pyramid      Laplacian pyramids (the 5-tap binomial kernel; OpenCV where no gradient is needed)
    strips       strips of rows with halos: the pyramid head's finest levels on large images
    normalization  ImageNet normalisation of the backbone's input
    network      TCMoA: two streams through the backbone with TC-MoA modules (token_path), then the head
    checkpoint   save/load (safetensors + config.json; official .pth with weights_only=True)

Imports torch; nothing here reads images or knows about the app.
"""
