"""COCO boxes as NumPy corners, their pairwise IoUs, and grouping by image: what the report's matching shares."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np


def coco_boxes_xyxy(boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes as ``[N, 4]`` float64 corners."""
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), axis=1)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of xyxy boxes (torchvision's ``box_iou`` formula, in NumPy float64)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def covered_fraction(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """``[len(boxes), len(regions)]``: the share of each xyxy box's own area inside each region (COCO's crowd IoU)."""
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inside = np.clip(rb - lt, 0, None).prod(axis=2)
    return inside / np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(axis=1), 1e-12)[:, None]


def by_image(first: np.ndarray, second: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(image id, indices into first, indices into second)`` for every image id both have."""
    order_a, order_b = np.argsort(first, kind="stable"), np.argsort(second, kind="stable")
    ids_a, starts_a = np.unique(first[order_a], return_index=True)
    ids_b, starts_b = np.unique(second[order_b], return_index=True)
    ends_a, ends_b = np.append(starts_a[1:], len(first)), np.append(starts_b[1:], len(second))
    position_b = {int(i): k for k, i in enumerate(ids_b.tolist())}
    for k, image_id in enumerate(ids_a.tolist()):
        j = position_b.get(image_id)
        if j is not None:
            yield image_id, order_a[starts_a[k]:ends_a[k]], order_b[starts_b[j]:ends_b[j]]


@dataclass(frozen=True)
class DetectionTable:
    """COCO-results detections as arrays, in their given order: built once, read by every matching."""

    image_id: np.ndarray  # [N] int64
    category_id: np.ndarray  # [N] int64
    boxes: np.ndarray  # [N, 4] float64 corners
    scores: np.ndarray  # [N] float64

    @classmethod
    def of(cls, detections: Detections) -> DetectionTable:
        """``detections`` as a table (a table is returned as it is)."""
        if isinstance(detections, DetectionTable):
            return detections
        return cls(
            np.array([int(d["image_id"]) for d in detections], dtype=np.int64),
            np.array([int(d["category_id"]) for d in detections], dtype=np.int64),
            coco_boxes_xyxy([d["bbox"] for d in detections]),
            np.array([float(d["score"]) for d in detections], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.scores)


Detections = Union[Sequence[Mapping[str, Any]], DetectionTable]  # COCO results, or their table
