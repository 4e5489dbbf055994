"""Detector networks built from a config, through the architecture table (:mod:`ssd.architectures`)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ssd.architectures import get_architecture
from ssd.config import Config, ModelConfig

__all__ = ["build_model"]


def build_model(config: Config | ModelConfig, num_classes: int, backbone_weights: str | Path | None = None) -> nn.Module:
    """The network for ``config`` with ``num_classes`` classes (background included).

    ``backbone_weights``: None (random backbone), a path to ImageNet weights, or ``"imagenet"`` for
    the file in torchvision's cache. Nothing is downloaded.
    """
    model_config = config.model if isinstance(config, Config) else config
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    return get_architecture(model_config.arch).build(model_config, num_classes, backbone_weights)
