"""Activation checkpointing: chosen blocks keep only their input in the forward pass and run again
in the backward pass (``torch.utils.checkpoint``, non-reentrant), trading compute for memory.

Modes (``--activation-checkpointing``): ``off``; ``backbone`` (the stem and every residual block
of the backbone); ``all`` (also the extra blocks, and heads with inner layers, SSDLite's separable
ones; SSD-ResNet50's heads are single convolutions whose only saved tensor is their input, kept
anyway). A recomputed block runs its BatchNorm layers in training mode a second time, which would
move their running statistics twice per step: the recomputation restores them, so they move once,
as without checkpointing. Under ``torch.compile`` the recomputation is part of the compiled
backward graph, which applies buffer updates once by itself.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ssd.choices import ACTIVATION_CHECKPOINTING as MODES
from ssd.errors import SSDError


class CheckpointingError(SSDError):
    """An unknown mode, or a model that does not take activation checkpointing."""


@contextlib.contextmanager
def _running_statistics_kept(block: nn.Module) -> Iterator[None]:
    """Put the running statistics of ``block``'s training-mode BatchNorm layers back as they were."""
    norms = [m for m in block.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(norms, saved):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


def run_checkpointed(block: nn.Module, x: Tensor) -> Tensor:
    """``block(x)``, recomputed in the backward pass when gradients are being recorded."""
    if not torch.is_grad_enabled():
        return block(x)
    if torch.compiler.is_compiling():
        return checkpoint(block, x, use_reentrant=False)
    return checkpoint(block, x, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), _running_statistics_kept(block)))


def run_block(block: nn.Module, x: Tensor, checkpointed: bool) -> Tensor:
    """``block(x)``, through :func:`run_checkpointed` when ``checkpointed``."""
    return run_checkpointed(block, x) if checkpointed else block(x)


def run_blocks(blocks: nn.Sequential, x: Tensor, checkpointed: bool) -> Tensor:
    """The blocks in order, each checkpointed on its own when ``checkpointed``."""
    for block in blocks:
        x = run_block(block, x, checkpointed)
    return x


def set_activation_checkpointing(model: nn.Module, mode: str) -> None:
    """Switch ``model`` (an SSD network, before DDP or ``torch.compile`` wrap it) to ``mode``."""
    if mode not in MODES:
        raise CheckpointingError(f"activation checkpointing {mode!r}: expected one of {', '.join(MODES)}")
    if hasattr(model, "activation_checkpointing"):
        model.activation_checkpointing = mode
    elif mode != "off":  # an architecture without it trains as it is
        raise CheckpointingError(f"{type(model).__name__} does not support activation checkpointing")
