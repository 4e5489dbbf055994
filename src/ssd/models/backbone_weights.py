"""ImageNet backbone weights from a local file: nothing is ever downloaded."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssd.errors import SSDError, parameter

IMAGENET = "imagenet"


class BackboneWeightsError(SSDError):
    """Backbone weights that cannot be found or do not fit the backbone."""


def resolve_weights_path(weights: str | Path, cache_file_name: str) -> Path:
    """A weights file: an explicit path, or ``"imagenet"`` for torchvision's cache file of that name."""
    if str(weights) == IMAGENET:
        path = Path(torch.hub.get_dir()) / "checkpoints" / cache_file_name
        if not path.is_file():
            raise BackboneWeightsError(
                f"ImageNet weights not found at {path}; nothing is downloaded: copy torchvision's "
                f"{cache_file_name} there or pass its path as {parameter('backbone_weights')}"
            )
        return path
    path = Path(weights)
    if not path.is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {path}")
    return path


def load_backbone_weights(network: nn.Module, weights: str | Path, cache_file_name: str) -> None:
    """Load ImageNet weights into a full torchvision classifier (the classifier head may be absent)."""
    path = resolve_weights_path(weights, cache_file_name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a corrupt file
        raise BackboneWeightsError(f"{path}: cannot read backbone weights: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise BackboneWeightsError(f"{path}: weights do not fit the backbone: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "classifier."))]
    if missing:
        raise BackboneWeightsError(f"{path}: not a backbone checkpoint, missing {len(missing)} keys such as {missing[0]!r}")
