"""What both SSD variants share: head output flattening and the reference's initialisation."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ssd.models.checkpointing import run_block


def flatten_predictions(
    features: list[Tensor], loc: nn.ModuleList, conf: nn.ModuleList, num_classes: int, checkpointed: bool = False
) -> tuple[Tensor, Tensor]:
    """Run each map's heads and concatenate: ``locs [N, 4, A]``, ``confs [N, C, A]``.

    Within a map the flattening order is default box, row, column (the anchors' order).
    ``reshape`` rather than the reference's ``view`` so channels-last activations work too.
    ``checkpointed``: each head recomputed in the backward pass.
    """
    locs, confs = [], []
    for feature, loc_head, conf_head in zip(features, loc, conf):
        locs.append(run_block(loc_head, feature, checkpointed).reshape(feature.shape[0], 4, -1))
        confs.append(run_block(conf_head, feature, checkpointed).reshape(feature.shape[0], num_classes, -1))
    return torch.cat(locs, dim=2).contiguous(), torch.cat(confs, dim=2).contiguous()


def xavier_init(*modules: nn.Module) -> None:
    """Xavier-uniform on every parameter with more than one dimension (the reference's init)."""
    for module in modules:
        for param in module.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
