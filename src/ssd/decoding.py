"""Decoding raw network outputs into detections: the reference's rules, batched over images and classes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ssd.box_ops import DEFAULT_VARIANCES, decode_offsets

# normalised coordinates beyond this are dropped: in pixels of any image, and as widths, they stay finite
MAX_COORDINATE = 1e6


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
    ``score_threshold``; NMS at ``nms_threshold`` within each class of each image (one
    ``batched_nms`` call for the whole batch); then the ``max_detections`` best per image.

    Returns dicts with ``boxes [K, 4]`` (x1, y1, x2, y2, normalised to [0, 1], or pixels of the image
    when ``image_sizes`` gives its (height, width)), ``scores [K]`` (descending) and ``labels [K]``.
    As in the reference, boxes are not clipped to the image; boxes with a coordinate that is not
    finite or lies more than ``MAX_COORDINATE`` image sizes away (a diverged or untrained model: the
    size offset's ``exp`` overflowed, or would once scaled to pixels) are dropped, since no
    evaluator can score them. As in the reference, NMS suppresses a box whose IoU with a
    better one is >= ``nms_threshold`` (:func:`nms_per_group`).
    """
    num_images, num_classes, num_anchors = confs.shape
    boxes = decode_offsets(locs.float().transpose(1, 2), anchors.to(locs.device), variances)  # [N, A, 4]
    scores = torch.softmax(confs.float(), dim=1)[:, 1:, :]  # [N, C-1, A], background dropped
    k = min(max_per_class, num_anchors)
    top_scores, top_anchor = scores.topk(k, dim=2)  # [N, C-1, k]
    keep = top_scores > score_threshold
    image_index, class_index, _ = keep.nonzero(as_tuple=True)
    cand_scores = top_scores[keep]
    cand_anchor = top_anchor[keep]
    cand_boxes = boxes[image_index, cand_anchor]
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

    torchvision's ``batched_nms`` separates the groups by shifting each one's boxes by group x
    (largest coordinate + 1) whenever there are few enough boxes (1,000 on the CPU, 25,000 on CUDA:
    MLPerf decoding at batch 4 has up to 11,200 candidates). One far-out box, an untrained model's,
    makes those shifts so large that float32 IoUs lose whole pixels, so duplicates survive or real
    boxes go, and the CPU and the GPU disagree. In float64 the shifts of the largest coordinates
    decoding keeps (:data:`MAX_COORDINATE`) still resolve 1e-4 px of an 8 MP image.
    """
    just_below = float(np.nextafter(np.float32(iou_threshold), np.float32(-np.inf)))
    return batched_nms(boxes.double(), scores.double(), groups, just_below)


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
