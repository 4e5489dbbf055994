"""The SSD multibox loss with the reference's semantics and one partial sort instead of two full ones."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEGATIVES_PER_POSITIVE = 3


@dataclass
class LossParts:
    """The batch loss and its two parts (each already normalised per image and averaged)."""

    total: Tensor
    localisation: Tensor
    classification: Tensor


class MultiBoxLoss(nn.Module):
    """Smooth-L1 on positives + cross-entropy with 3:1 hard negative mining, per image / positives.

    Per image: loc = sum over positive anchors of Smooth-L1 (beta 1) summed over the 4 offsets;
    conf = cross-entropy summed over positives and the ``3 * positives`` (capped at the anchor count)
    anchors with the highest cross-entropy once positives are zeroed out; (loc + conf) / positives,
    0 for an image without positives; then the mean over the batch.

    The reference ranks negatives with two full argsorts of every anchor's loss; a ``topk`` of the
    largest needed count selects the same set (up to ties) for a fraction of the work.
    """

    def forward(self, locs: Tensor, confs: Tensor, target_offsets: Tensor, target_labels: Tensor) -> LossParts:
        """
        Args:
            locs: ``[N, 4, A]`` predicted offsets; confs: ``[N, C, A]`` class logits.
            target_offsets: ``[N, A, 4]`` encoded ground truth; target_labels: ``[N, A]`` (0 = background).
        """
        positive = target_labels > 0
        num_positive = positive.sum(dim=1)
        smooth_l1 = F.smooth_l1_loss(locs.float().transpose(1, 2), target_offsets, reduction="none").sum(dim=2)
        loc_loss = (smooth_l1 * positive).sum(dim=1)

        cross_entropy = F.cross_entropy(confs.float(), target_labels, reduction="none")  # [N, A]
        mining_scores = cross_entropy.detach().masked_fill(positive, 0.0)
        num_anchors = target_labels.shape[1]
        num_negative = torch.clamp(NEGATIVES_PER_POSITIVE * num_positive, max=num_anchors)
        k = int(num_negative.max())  # one host sync per step; the reference has it too (its sort)
        if k > 0:
            hardest = mining_scores.topk(k, dim=1, sorted=True).indices
            chosen = torch.arange(k, device=locs.device)[None, :] < num_negative[:, None]
            negative_loss = (cross_entropy.gather(1, hardest) * chosen).sum(dim=1)
        else:
            negative_loss = cross_entropy.new_zeros(cross_entropy.shape[0])
        conf_loss = (cross_entropy * positive).sum(dim=1) + negative_loss

        has_positive = (num_positive > 0).float()
        per_image = has_positive / num_positive.float().clamp(min=1e-6)
        localisation = (loc_loss * per_image).mean()
        classification = (conf_loss * per_image).mean()
        return LossParts(total=localisation + classification, localisation=localisation, classification=classification)
