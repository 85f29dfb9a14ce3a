"""Pixels <-> the backbone's input space: ImageNet normalisation, as MAE and the official code use it."""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B, 3, H, W) -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std


def unnormalize(pred: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1]-scaled pixels, unclipped (so gradients pass everywhere)."""
    mean = pred.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = pred.new_tensor(IMAGENET_STD)[:, None, None]
    return pred * std + mean


def denormalize(pred: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1], clipped, computed as the official code does (via 0..255)."""
    return (unnormalize(pred) * 255).clamp(0, 255) / 255
