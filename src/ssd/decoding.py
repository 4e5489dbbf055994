"""Decoding raw network outputs into detections: the reference's rules, batched over images and classes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import nms

from ssd.box_ops import DEFAULT_VARIANCES, decode_offsets

# normalised coordinates beyond this are dropped: in pixels of any image, and as widths, they stay finite
MAX_COORDINATE = 1e6
# from this many candidates (CPU, CUDA), NMS runs group by group in float32 instead of over shifted groups in float64
PER_GROUP_FROM = (1000, 25000)


def postprocess(
    locs: Tensor,
    confs: Tensor,
    anchors: Tensor,
    *,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_per_class: int = 200,
    max_detections: int = 200,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> list[dict[str, Tensor]]:
    """Turn ``locs [N, 4, A]`` and ``confs [N, C, A]`` into detections, one dict per image.

    Softmax over classes; for every class but background, the ``max_per_class`` highest scores above
    ``score_threshold``, their boxes decoded; NMS at ``nms_threshold`` within each class of each
    image (:func:`nms_per_group`, for the whole batch); then the ``max_detections`` best per image.

    Returns dicts with ``boxes [K, 4]`` (x1, y1, x2, y2, normalised to [0, 1], or pixels of the image
    when ``image_sizes`` gives its (height, width)), ``scores [K]`` (descending) and ``labels [K]``.
    As in the reference, boxes are not clipped to the image; boxes with a coordinate that is not
    finite or lies more than ``MAX_COORDINATE`` image sizes away (a diverged or untrained model: the
    size offset's ``exp`` overflowed, or would once scaled to pixels) are dropped, since no
    evaluator can score them. As in the reference, NMS suppresses a box whose IoU with a
    better one is >= ``nms_threshold`` (:func:`nms_per_group`).
    """
    num_images, num_classes, num_anchors = confs.shape
    scores = torch.softmax(confs.float(), dim=1)[:, 1:, :]  # [N, C-1, A], background dropped
    k = min(max_per_class, num_anchors)
    top_scores, top_anchor = scores.topk(k, dim=2)  # [N, C-1, k]
    keep = top_scores > score_threshold
    image_index, class_index, _ = keep.nonzero(as_tuple=True)
    cand_scores = top_scores[keep]
    cand_anchor = top_anchor[keep]
    # only the candidates' boxes are decoded: the same arithmetic per box as decoding every anchor
    cand_offsets = locs[image_index, :, cand_anchor].float()  # [K, 4]
    cand_boxes = decode_offsets(cand_offsets, anchors.to(locs.device)[cand_anchor], variances)
    # exp() of a wild size offset overflows, or leaves a box whose pixel coordinates would
    scorable = cand_boxes.abs().amax(dim=1) < MAX_COORDINATE  # False for inf and NaN too
    image_index, class_index = image_index[scorable], class_index[scorable]
    cand_scores, cand_boxes = cand_scores[scorable], cand_boxes[scorable]
    groups = image_index * num_classes + class_index
    kept = nms_per_group(cand_boxes, cand_scores, groups, nms_threshold)

    kept_image = image_index[kept]
    results = []
    for n in range(num_images):
        mine = kept[kept_image == n][:max_detections]
        image_boxes = cand_boxes[mine]
        if image_sizes is not None:
            height, width = image_sizes[n]
            image_boxes = image_boxes * image_boxes.new_tensor([width, height, width, height])
        results.append({"boxes": image_boxes, "scores": cand_scores[mine], "labels": class_index[mine] + 1})
    return results


def nms_per_group(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes ``[K, 4]`` kept by NMS within each group, by descending score; exact on every device.

    A box goes when its IoU with a kept box of its group is >= ``iou_threshold``, the reference's
    rule (it keeps ``iou < criteria``). torchvision suppresses only IoU > its threshold, and its CUDA
    kernel compares with the threshold as a float32, so it is given the float32 just below ours: on
    both devices an IoU at the threshold goes, one a float32 step (3e-8 at 0.5) below it stays.

    Two ways, by the number of boxes (:data:`PER_GROUP_FROM` per device):

    - few boxes: one NMS over every group at once, each group's boxes shifted by group x (largest
      coordinate + 1), torchvision's offset trick. One far-out box, an untrained model's, makes those
      shifts so large that float32 IoUs lose whole pixels, so duplicates survive or real boxes go and
      the CPU and the GPU disagree; in float64 the shifts of the largest coordinates decoding keeps
      (:data:`MAX_COORDINATE`) still resolve 1e-4 px of an 8 MP image. Few boxes cost little in float64.
    - many boxes (MLPerf's 8 MP frames): one NMS per group on the boxes as they are, in float32 as the
      reference computes them, since nothing is shifted.
    """
    just_below = float(np.nextafter(np.float32(iou_threshold), np.float32(-np.inf)))
    if len(boxes) < PER_GROUP_FROM[boxes.device.type == "cuda"]:
        return _nms_shifted_groups(boxes.double(), scores.double(), groups, just_below)
    return _nms_each_group(boxes.float(), scores.float(), groups, just_below)


def _nms_shifted_groups(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """One NMS over every group, each group's boxes shifted apart by group x (largest coordinate + 1)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    shifts = groups.to(boxes) * (boxes.max() + 1)
    return nms(boxes + shifts[:, None], scores, iou_threshold)


def _nms_each_group(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group separately (no coordinate shifts), kept indices by descending score."""
    kept = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for group in torch.unique(groups).tolist():
        members = torch.nonzero(groups == group).flatten()
        kept[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    survivors = torch.nonzero(kept).flatten()
    return survivors[scores[survivors].sort(descending=True, stable=True).indices]


@dataclass(frozen=True)
class DecodeSettings:
    """The limits of :func:`postprocess`; the defaults are the reference's COCO evaluation.

    Each dataset kind names its preset (:mod:`ssd.data.kinds`): COCO these defaults, Cognata
    :meth:`mlperf` (500 detections per 8 MP frame, the MLPerf Automotive scoring).
    """

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_per_class: int = 200
    max_detections: int = 200

    @classmethod
    def reference(cls, nms_threshold: float = 0.5) -> "DecodeSettings":
        """The reference's COCO evaluation: score > 0.05, NMS 0.5, 200 per class and per image."""
        return cls(nms_threshold=nms_threshold)

    @classmethod
    def mlperf(cls, nms_threshold: float = 0.5) -> "DecodeSettings":
        """MLPerf Automotive's decoding: score > 0.05, NMS 0.5, 200 per class, 500 per image."""
        return cls(nms_threshold=nms_threshold, max_detections=500)

    def decode(self, locs: Tensor, confs: Tensor, anchors: Tensor, image_sizes: Sequence[tuple[int, int]] | None) -> list[dict[str, Tensor]]:
        """:func:`postprocess` with these settings."""
        return postprocess(
            locs, confs, anchors, score_threshold=self.score_threshold, nms_threshold=self.nms_threshold,
            max_per_class=self.max_per_class, max_detections=self.max_detections, image_sizes=image_sizes,
        )
