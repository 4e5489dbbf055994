"""Loading model weights from our checkpoints and the reference's, strictly and safely."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssd.errors import SSDError

# Where a checkpoint dict may keep the model's weights: ours, then the reference's.
STATE_DICT_KEYS = ("model", "model_state_dict")
DDP_PREFIX = "module."


class CheckpointError(SSDError):
    """A checkpoint that cannot be read or does not fit the model."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True``; a bare state dict comes back as is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with disallowed globals, not a torch file...
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: expected a dict, found {type(checkpoint).__name__}")
    return dict(checkpoint)


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model weights of a checkpoint dict (ours, the reference's, or bare), without ``module.``."""
    state = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    return {(k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k): v for k, v in state.items()}


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` naming the first key whose presence or shape differs."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r} (model expects shape {tuple(tensor.shape)})")
        found = state[key]
        if not isinstance(found, Tensor) or found.shape != tensor.shape:
            shape = tuple(found.shape) if isinstance(found, Tensor) else type(found).__name__
            raise CheckpointError(
                f"{source}: {key!r} has shape {shape} in the checkpoint but {tuple(tensor.shape)} in the model "
                "(another config or number of classes?)"
            )
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): another model?")


def load_checkpoint(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint's weights strictly into ``model`` and return the whole checkpoint dict.

    Accepts our checkpoints (``{"model": ...}``), the reference's (``{"model_state_dict": ...}``),
    bare state dicts, and keys prefixed ``module.`` by DistributedDataParallel.
    """
    checkpoint = read_checkpoint(path, map_location)
    load_model_state(model, checkpoint, str(path))
    return checkpoint


def load_model_state(model: nn.Module, checkpoint: Mapping[str, Any], source: str) -> None:
    """Load the weights of an already read checkpoint dict strictly; errors name ``source``."""
    state = extract_state_dict(checkpoint)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
