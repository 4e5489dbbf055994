"""Ground truth -> per-anchor training targets, with the reference's matching rules.

Each anchor takes the ground-truth box it overlaps most; each ground-truth box is also forced onto
its best anchor (IoU set to 2, so it always counts); anchors with IoU > threshold are positive and
carry that box's label, the rest get label 0. The IoU matrix is computed in anchor chunks, so 8 MP
configs (~780k anchors) with hundreds of boxes stay within a few hundred MB.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ssd.box_ops import DEFAULT_VARIANCES, cxcywh_to_xyxy, xyxy_to_cxcywh
from ssd.loss import LossTargets

# IoU entries per chunk (boxes x anchors): small enough for a chunk's planes to stay in the CPU's cache
# while the IoU steps run over them (faster than whole-image planes: docs/performance.md), and memory
# bounded whatever the number of boxes.
CHUNK_ELEMENTS = 1 << 19
# On CUDA every chunk costs its own series of kernel launches (an 8 MP image with 40 boxes is 60
# cache-sized chunks); 2^27 entries (512 MB planes) take such an image in one chunk, 500 boxes in three.
CUDA_CHUNK_ELEMENTS = 1 << 27


def chunk_elements_for(device: torch.device) -> int:
    """IoU entries per chunk of :func:`match_anchors` on ``device`` (the targets are the same, bitwise)."""
    return CUDA_CHUNK_ELEMENTS if device.type == "cuda" else CHUNK_ELEMENTS


def iou_with_anchors(gt_boxes: Tensor, anchor_coords: Tensor, anchor_areas: Tensor) -> Tensor:
    """IoU ``[G, K]`` of ground truth ``[G, 4]`` (xyxy) with anchors given column-wise.

    Same numbers as ``torchvision.ops.box_iou(gt_boxes, anchors)``, but each step runs on a
    contiguous ``[G, K]`` plane in place instead of ``[G, K, 2]`` temporaries, so far less memory is
    written and read (the 8 MP figure: docs/performance.md).

    Args:
        anchor_coords: ``[4, K]`` anchor x1, y1, x2, y2 rows; ``anchor_areas``: ``[K]``.
    """
    x1, y1, x2, y2 = (gt_boxes[:, i : i + 1] for i in range(4))
    inter_w = torch.minimum(x2, anchor_coords[2]).sub_(torch.maximum(x1, anchor_coords[0])).clamp_(min=0)
    inter_h = torch.minimum(y2, anchor_coords[3]).sub_(torch.maximum(y1, anchor_coords[1])).clamp_(min=0)
    inter = inter_w.mul_(inter_h)
    gt_areas = (x2 - x1) * (y2 - y1)
    union = (gt_areas + anchor_areas).sub_(inter)
    return inter.div_(union)


def match_anchors(
    gt_boxes: Tensor, anchor_coords: Tensor, iou_threshold: float = 0.5, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[Tensor, Tensor]:
    """Match one image's ground truth to anchors.

    Args:
        gt_boxes: ``[G, 4]`` ground-truth boxes, xyxy, normalised like the anchors.
        anchor_coords: ``[4, A]`` anchors column-wise (x1, y1, x2, y2 rows), see :func:`anchor_columns`.
    Returns:
        ``matched_gt [A]`` (index of each anchor's ground-truth box) and ``positive [A]`` (bool).
        With no ground truth every anchor is negative.
    """
    num_anchors = anchor_coords.shape[1]
    device = anchor_coords.device
    if gt_boxes.numel() == 0:
        return torch.zeros(num_anchors, dtype=torch.long, device=device), torch.zeros(num_anchors, dtype=torch.bool, device=device)
    num_gt = gt_boxes.shape[0]
    best_iou = torch.empty(num_anchors, dtype=gt_boxes.dtype, device=device)
    matched_gt = torch.empty(num_anchors, dtype=torch.long, device=device)
    gt_best_iou = torch.full((num_gt,), -1.0, dtype=gt_boxes.dtype, device=device)
    gt_best_anchor = torch.zeros(num_gt, dtype=torch.long, device=device)
    areas = (anchor_coords[2] - anchor_coords[0]) * (anchor_coords[3] - anchor_coords[1])
    chunk_size = max(1024, chunk_elements // num_gt)
    for start in range(0, num_anchors, chunk_size):
        stop = start + chunk_size
        iou = iou_with_anchors(gt_boxes, anchor_coords[:, start:stop], areas[start:stop])  # [G, chunk]
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


def anchor_columns(anchors_xyxy: Tensor) -> Tensor:
    """``[A, 4]`` xyxy anchors -> ``[4, A]`` contiguous rows, the layout :func:`match_anchors` reads."""
    return anchors_xyxy.t().contiguous()


class TargetEncoder:
    """Turns ground truth into the loss's targets for a fixed set of anchors.

    ``offsets [A, 4]`` are the regression targets of :func:`ssd.box_ops.encode_offsets` (to float
    rounding; zero for negative anchors, which the loss ignores) and ``labels [A]`` the class of
    each anchor (0 = background). Boxes are xyxy, normalised to [0, 1].
    """

    def __init__(
        self,
        anchors_cxcywh: Tensor,
        iou_threshold: float = 0.5,
        variances: tuple[float, float] = DEFAULT_VARIANCES,
        chunk_elements: int | None = None,
    ):
        self.anchors_cxcywh = anchors_cxcywh
        self.chunk_elements = chunk_elements_for(anchors_cxcywh.device) if chunk_elements is None else chunk_elements
        self.anchor_coords = anchor_columns(cxcywh_to_xyxy(anchors_cxcywh))
        self.iou_threshold = iou_threshold
        self.variances = variances
        # encode_offsets rearranged as (box term - anchor term) * anchor scale with the box terms
        # (cx, cy, log w, log h) taken per ground-truth box: one pass over the anchors, not eight
        anchor_wh = anchors_cxcywh[:, 2:]
        self.anchor_terms = torch.cat((anchors_cxcywh[:, :2], anchor_wh.log()), dim=1)
        self.anchor_scales = torch.cat((1.0 / (anchor_wh * variances[0]), torch.full_like(anchor_wh, 1.0 / variances[1])), dim=1)

    @property
    def num_anchors(self) -> int:
        return self.anchors_cxcywh.shape[0]

    def to(self, device: torch.device | str) -> "TargetEncoder":
        """A copy whose anchors live on ``device`` (encode on the training device)."""
        return TargetEncoder(self.anchors_cxcywh.to(device), self.iou_threshold, self.variances)  # the device's chunking

    def __call__(self, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One image: ``boxes [G, 4]``, ``labels [G]`` -> ``offsets [A, 4]``, ``labels [A]``.

        Dense over all anchors, then masked: nothing here reads a device value back to the host
        (a ``nonzero`` of the positives would), so encoding on a GPU never waits for its queue.
        """
        device = self.anchors_cxcywh.device
        anchor_labels = torch.zeros(self.num_anchors, dtype=torch.long, device=device)
        offsets = torch.zeros(self.num_anchors, 4, dtype=torch.float32, device=device)
        if boxes.shape[0] == 0:
            return offsets, anchor_labels
        boxes = boxes.to(device=device, dtype=torch.float32)
        labels = labels.to(device=device, dtype=torch.long)
        matched_gt, positive = match_anchors(boxes, self.anchor_coords, self.iou_threshold, self.chunk_elements)
        anchor_labels = torch.where(positive, labels[matched_gt], anchor_labels)
        boxes_cxcywh = xyxy_to_cxcywh(boxes)
        box_terms = torch.cat((boxes_cxcywh[:, :2], boxes_cxcywh[:, 2:].log()), dim=1)
        offsets = box_terms[matched_gt].sub_(self.anchor_terms).mul_(self.anchor_scales)
        return offsets.masked_fill_(~positive.unsqueeze(1), 0.0), anchor_labels

    def encode_batch(self, boxes: list[Tensor], labels: list[Tensor]) -> LossTargets:
        """Several images -> the loss's targets: ``offsets [N, A, 4]``, ``labels [N, A]`` and their sizes."""
        encoded = [self(b, l) for b, l in zip(boxes, labels)]
        return LossTargets(torch.stack([e[0] for e in encoded]), torch.stack([e[1] for e in encoded]))
