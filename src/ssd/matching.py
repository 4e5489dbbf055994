"""Ground truth -> per-anchor training targets, with the reference's matching rules.

Each anchor takes the ground-truth box it overlaps most; each ground-truth box is also forced onto
its best anchor (IoU set to 2, so it always counts); anchors with IoU > threshold are positive and
carry that box's label, the rest get label 0. The IoU matrix is computed in anchor chunks, so 8 MP
configs (~780k anchors) with hundreds of boxes stay within a few hundred MB.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ssd.box_ops import DEFAULT_VARIANCES, cxcywh_to_xyxy, encode_offsets, xyxy_to_cxcywh

# anchors per IoU chunk: 2**18 anchors x 500 boxes x 4 bytes = 512 MiB at worst
DEFAULT_CHUNK = 1 << 18


def match_anchors(
    gt_boxes: Tensor, anchors_xyxy: Tensor, iou_threshold: float = 0.5, chunk_size: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """Match one image's ground truth to anchors.

    Args:
        gt_boxes: ``[G, 4]`` ground-truth boxes, xyxy, normalised like the anchors.
        anchors_xyxy: ``[A, 4]`` anchors, xyxy.
    Returns:
        ``matched_gt [A]`` (index of each anchor's ground-truth box) and ``positive [A]`` (bool).
        With no ground truth every anchor is negative.
    """
    num_anchors = anchors_xyxy.shape[0]
    device = anchors_xyxy.device
    if gt_boxes.numel() == 0:
        return torch.zeros(num_anchors, dtype=torch.long, device=device), torch.zeros(num_anchors, dtype=torch.bool, device=device)
    num_gt = gt_boxes.shape[0]
    best_iou = torch.empty(num_anchors, dtype=gt_boxes.dtype, device=device)
    matched_gt = torch.empty(num_anchors, dtype=torch.long, device=device)
    gt_best_iou = torch.full((num_gt,), -1.0, dtype=gt_boxes.dtype, device=device)
    gt_best_anchor = torch.zeros(num_gt, dtype=torch.long, device=device)
    for start in range(0, num_anchors, chunk_size):
        iou = box_iou(gt_boxes, anchors_xyxy[start : start + chunk_size])  # [G, chunk]
        best_iou[start : start + iou.shape[1]], matched_gt[start : start + iou.shape[1]] = iou.max(dim=0)
        chunk_best, chunk_arg = iou.max(dim=1)
        better = chunk_best > gt_best_iou  # strict: the first maximum wins, as one global max would
        gt_best_iou = torch.where(better, chunk_best, gt_best_iou)
        gt_best_anchor = torch.where(better, chunk_arg + start, gt_best_anchor)
    # Force each box onto its best anchor. When two boxes share a best anchor the later box wins,
    # as with the reference's indexed assignment on the CPU; scatter_reduce makes it deterministic.
    forced = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    forced.scatter_reduce_(0, gt_best_anchor, torch.arange(num_gt, device=device), reduce="amax")
    is_forced = forced >= 0
    matched_gt = torch.where(is_forced, forced, matched_gt)
    positive = (best_iou > iou_threshold) | is_forced
    return matched_gt, positive


class TargetEncoder:
    """Turns ground truth into the loss's targets for a fixed set of anchors.

    ``offsets [A, 4]`` are the regression targets of :func:`ssd.box_ops.encode_offsets` (zero for
    negative anchors, which the loss ignores) and ``labels [A]`` the class of each anchor (0 =
    background). Boxes are xyxy, normalised to [0, 1].
    """

    def __init__(
        self,
        anchors_cxcywh: Tensor,
        iou_threshold: float = 0.5,
        variances: tuple[float, float] = DEFAULT_VARIANCES,
        chunk_size: int = DEFAULT_CHUNK,
    ):
        self.anchors_cxcywh = anchors_cxcywh
        self.anchors_xyxy = cxcywh_to_xyxy(anchors_cxcywh)
        self.iou_threshold = iou_threshold
        self.variances = variances
        self.chunk_size = chunk_size

    @property
    def num_anchors(self) -> int:
        return self.anchors_cxcywh.shape[0]

    def to(self, device: torch.device | str) -> "TargetEncoder":
        """A copy whose anchors live on ``device`` (encode on the training device)."""
        return TargetEncoder(self.anchors_cxcywh.to(device), self.iou_threshold, self.variances, self.chunk_size)

    def __call__(self, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One image: ``boxes [G, 4]``, ``labels [G]`` -> ``offsets [A, 4]``, ``labels [A]``."""
        device = self.anchors_xyxy.device
        boxes = boxes.to(device=device, dtype=torch.float32)
        labels = labels.to(device=device, dtype=torch.long)
        matched_gt, positive = match_anchors(boxes, self.anchors_xyxy, self.iou_threshold, self.chunk_size)
        anchor_labels = torch.zeros(self.num_anchors, dtype=torch.long, device=device)
        offsets = torch.zeros(self.num_anchors, 4, dtype=torch.float32, device=device)
        if positive.any():
            index = positive.nonzero().squeeze(1)
            gt = matched_gt[index]
            anchor_labels[index] = labels[gt]
            offsets[index] = encode_offsets(xyxy_to_cxcywh(boxes[gt]), self.anchors_cxcywh[index], self.variances)
        return offsets, anchor_labels

    def encode_batch(self, boxes: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Several images -> ``offsets [N, A, 4]``, ``labels [N, A]``."""
        encoded = [self(b, l) for b, l in zip(boxes, labels)]
        return torch.stack([e[0] for e in encoded]), torch.stack([e[1] for e in encoded])
