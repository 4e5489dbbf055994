"""The SSD multibox loss with the reference's semantics, computed where it is non-zero.

Only positives and the mined negatives contribute to the loss (a few thousand of ~780k anchors at
8 MP), so after one gradient-free cross-entropy pass over every anchor to rank the negatives, the
differentiable part runs on the gathered few: no full sort of the anchors, and a backward pass over
the gathered anchors only. Values and gradients equal those of the dense loss over every anchor (the
reference's, which ranks the negatives with two full argsorts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.device import HostValues

NEGATIVES_PER_POSITIVE = 3


@dataclass
class LossParts:
    """The batch loss and its two parts (each already normalised per image and averaged)."""

    total: Tensor
    localisation: Tensor
    classification: Tensor


def _counts(target_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Positive mask ``[N, A]``, positives and negatives to mine per image ``[N]``."""
    positive = target_labels > 0
    num_positive = positive.sum(dim=1)
    return positive, num_positive, torch.clamp(NEGATIVES_PER_POSITIVE * num_positive, max=target_labels.shape[1])


@dataclass
class LossTargets:
    """What the loss needs of a batch's ground truth (:meth:`ssd.matching.TargetEncoder.encode_batch` makes it).

    ``offsets [N, A, 4]`` and ``labels [N, A]`` (0 = background) per anchor; ``sizes``: the most
    positives and the most negatives to mine of any image, the sizes the loss gathers. They must
    be known on the host, so their copy starts as soon as the targets exist and runs while the
    forward pass does (:class:`ssd.device.HostValues`): reading them never leaves the device idle.
    """

    offsets: Tensor
    labels: Tensor
    sizes: HostValues = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _, num_positive, num_negative = _counts(self.labels)
        self.sizes = HostValues(torch.stack((num_positive.max(), num_negative.max())))


def _gather_anchors(values: Tensor, index: Tensor) -> Tensor:
    """``values [N, D, A]`` at anchors ``index [N, K]`` -> ``[N, D, K]``."""
    return values.gather(2, index.unsqueeze(1).expand(-1, values.shape[1], -1))


class MultiBoxLoss(nn.Module):
    """Smooth-L1 on positives + cross-entropy with 3:1 hard negative mining, per image / positives.

    Per image: loc = sum over positive anchors of Smooth-L1 (beta 1) summed over the 4 offsets;
    conf = cross-entropy summed over positives and over the ``3 * positives`` (capped at the anchor
    count) anchors with the highest cross-entropy once positives are zeroed out -- as in the
    reference, a positive can be picked as a "negative" too when negatives run short, and then
    counts twice; (loc + conf) / positives, 0 for an image without positives; mean over the batch.
    """

    def forward(self, locs: Tensor, confs: Tensor, targets: LossTargets) -> LossParts:
        """``locs [N, 4, A]`` predicted offsets and ``confs [N, C, A]`` class logits against ``targets``."""
        target_offsets, target_labels = targets.offsets, targets.labels
        positive, num_positive, num_negative = _counts(target_labels)
        max_positive, max_negative = targets.sizes.get()

        with torch.no_grad():
            mining_scores = F.cross_entropy(confs.float(), target_labels, reduction="none").masked_fill_(positive, 0.0)
            negative_index = mining_scores.topk(max_negative, dim=1).indices
            # positives first: a top-k over the mask returns them, then padding marked invalid
            positive_values, positive_index = positive.to(torch.uint8).topk(max_positive, dim=1)
        ranks = torch.arange(max_negative, device=confs.device)
        negative_weight = (ranks[None, :] < num_negative[:, None]).float()
        positive_weight = positive_values.float()

        picked_locs = _gather_anchors(locs, positive_index).float()
        picked_offsets = target_offsets.gather(1, positive_index.unsqueeze(2).expand(-1, -1, 4)).transpose(1, 2)
        smooth_l1 = F.smooth_l1_loss(picked_locs, picked_offsets, reduction="none").sum(dim=1)
        loc_loss = (smooth_l1 * positive_weight).sum(dim=1)

        picked = torch.cat((positive_index, negative_index), dim=1)
        weights = torch.cat((positive_weight, negative_weight), dim=1)
        cross_entropy = F.cross_entropy(
            _gather_anchors(confs, picked).float(), target_labels.gather(1, picked), reduction="none"
        )
        conf_loss = (cross_entropy * weights).sum(dim=1)

        per_image = (num_positive > 0).float() / num_positive.float().clamp(min=1e-6)
        localisation = (loc_loss * per_image).mean()
        classification = (conf_loss * per_image).mean()
        return LossParts(total=localisation + classification, localisation=localisation, classification=classification)
