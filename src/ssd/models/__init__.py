"""Detector networks built from a config, through the architecture table (:mod:`ssd.architectures`)."""
from __future__ import annotations

from itertools import chain
from pathlib import Path

import torch
from torch import nn

from ssd.architectures import get_architecture
from ssd.config import Config, ModelConfig

__all__ = ["build_model", "build_model_to_load"]


def build_model(config: Config | ModelConfig, num_classes: int, backbone_weights: str | Path | None = None) -> nn.Module:
    """The network for ``config`` with ``num_classes`` classes (background included).

    ``backbone_weights``: None (random backbone), a path to ImageNet weights, or ``"imagenet"`` for
    the file in torchvision's cache. Nothing is downloaded.
    """
    model_config = config.model if isinstance(config, Config) else config
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    return get_architecture(model_config.arch).build(model_config, num_classes, backbone_weights)


def build_model_to_load(config: Config | ModelConfig, num_classes: int) -> nn.Module:
    """The network for ``config`` on the CPU with uninitialised storage, for a strict state-dict load to fill.

    Nothing is initialised at random: the network is built on the meta device and then given empty
    storage, which skips most of a build's time (ResNet-50's initialisation, layer4 included) when
    the weights are loaded next, and leaves the global random state as it was. A strict load sets every
    value, since every parameter and buffer is a state-dict entry; a network with state outside its
    state dict (a non-persistent buffer) is built by :func:`build_model` instead, initialised.
    """
    with torch.device("meta"):
        model = build_model(config, num_classes)
    state = model.state_dict(keep_vars=True)
    if any(name not in state for name, _ in chain(model.named_parameters(), model.named_buffers())):
        return build_model(config, num_classes)
    return model.to_empty(device="cpu")
