"""A confusion matrix between classes at a stated IoU and score, and each frame's errors at that point.

Per image, the detections scoring at least ``score_threshold`` are taken by descending score; each is
matched to the not yet matched ground-truth box of any class with which its IoU is highest, if that
IoU is at least ``iou_threshold``. A match counts in row (true class, predicted class); a detection
left unmatched in (background, predicted class); a ground-truth box left unmatched in (true class,
background). Detections on crowd regions (COCO's intersection over the detection's own area at least
``iou_threshold``) and the crowd regions themselves count nowhere, as COCOeval ignores them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssd.evaluation.boxes import DetectionTable, Detections, by_image, coco_boxes_xyxy, covered_fraction, pairwise_iou

BACKGROUND = "background"


@dataclass(frozen=True)
class FrameErrors:
    """One image's errors at the matrix's operating point."""

    image_id: int
    missed: int  # ground truth no detection matched
    false_positives: int  # detections that matched nothing
    confused: int  # matched, but with another class
    ground_truth: int

    @property
    def total(self) -> int:
        return self.missed + self.false_positives + self.confused

    def to_dict(self) -> dict[str, int]:
        return {"image_id": self.image_id, "missed": self.missed, "false_positives": self.false_positives, "confused": self.confused,
                "ground_truth": self.ground_truth, "total": self.total}


@dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[true][predicted]`` over ``labels`` (the classes, then :data:`BACKGROUND`), and per-frame errors."""

    labels: list[str]
    counts: np.ndarray  # [K + 1, K + 1] int64
    iou_threshold: float
    score_threshold: float
    frames: list[FrameErrors]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "counts": self.counts.tolist(), "iou_threshold": self.iou_threshold,
                "score_threshold": self.score_threshold}

    def worst_frames(self, count: int) -> list[FrameErrors]:
        """The ``count`` frames with the most errors (most missed first among equals), worst first."""
        ranked = sorted(self.frames, key=lambda f: (-f.total, -f.missed, f.image_id))
        return [frame for frame in ranked[:count] if frame.total > 0]


def confusion_matrix(
    ground_truth: Mapping[str, Any], detections: Detections, *, iou_threshold: float = 0.5, score_threshold: float = 0.5,
    class_names: Mapping[int, str] | None = None,
) -> ConfusionMatrix:
    """The matrix of COCO ground truth against COCO-results ``detections`` or their table (see the module docstring)."""
    category_ids = sorted(int(c["id"]) for c in ground_truth["categories"])
    names = {int(c["id"]): str((class_names or {}).get(int(c["id"]), c.get("name", c["id"]))) for c in ground_truth["categories"]}
    row_of = {category_id: k for k, category_id in enumerate(category_ids)}
    background = len(category_ids)
    annotations = ground_truth["annotations"]
    gt_image = np.array([int(a["image_id"]) for a in annotations], dtype=np.int64)
    gt_row = np.array([row_of[int(a["category_id"])] for a in annotations], dtype=np.int64)
    gt_boxes = coco_boxes_xyxy([a["bbox"] for a in annotations])
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
    table = DetectionTable.of(detections)
    chosen = np.flatnonzero(table.scores >= score_threshold)
    order = chosen[np.argsort(-table.scores[chosen], kind="stable")]  # by descending score, ties in the given order
    dt_image = table.image_id[order]
    dt_row = np.array([row_of[c] for c in table.category_id[order].tolist()], dtype=np.int64)
    dt_boxes = table.boxes[order]

    counted = np.ones(len(dt_image), dtype=bool)  # False: on a crowd region
    crowds = np.flatnonzero(crowd)
    for _, dts, regions in by_image(dt_image, gt_image[crowds]):
        counted[dts[covered_fraction(dt_boxes[dts], gt_boxes[crowds[regions]]).max(axis=1) >= iou_threshold]] = False
    objects = np.flatnonzero(~crowd)
    match = np.full(len(dt_image), -1, dtype=np.int64)  # the object each detection matched
    for _, dts, gts in by_image(dt_image, gt_image[objects]):
        dts, gts = dts[counted[dts]], objects[gts]
        iou = pairwise_iou(dt_boxes[dts], gt_boxes[gts])
        taken = np.zeros(len(gts), dtype=bool)
        for k in np.flatnonzero((iou >= iou_threshold).any(axis=1)):  # the others match nothing
            candidates = np.where(taken, -1.0, iou[k])
            best = int(candidates.argmax())
            if candidates[best] >= iou_threshold:
                taken[best] = True
                match[dts[k]] = gts[best]

    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    matched = match >= 0
    np.add.at(counts, (gt_row[match[matched]], dt_row[matched]), 1)
    false_positive = counted & ~matched
    np.add.at(counts, (np.full(int(false_positive.sum()), background), dt_row[false_positive]), 1)
    found = np.zeros(len(annotations), dtype=bool)
    found[match[matched]] = True
    missed = ~crowd & ~found
    np.add.at(counts, (gt_row[missed], np.full(int(missed.sum()), background)), 1)

    image_ids = [int(image["id"]) for image in ground_truth["images"]]
    slot = {image_id: k for k, image_id in enumerate(image_ids)}
    gt_slot = np.array([slot.get(i, -1) for i in gt_image.tolist()], dtype=np.int64)
    dt_slot = np.array([slot.get(i, -1) for i in dt_image.tolist()], dtype=np.int64)
    confused_det = np.zeros(len(match), dtype=bool)
    confused_det[matched] = gt_row[match[matched]] != dt_row[matched]

    def per_image(slots: np.ndarray, mask: np.ndarray) -> list[int]:
        inside = mask & (slots >= 0)
        return np.bincount(slots[inside], minlength=len(image_ids)).tolist()

    frames = [
        FrameErrors(image_id, m, f, c, g) for image_id, m, f, c, g in zip(
            image_ids, per_image(gt_slot, missed), per_image(dt_slot, false_positive), per_image(dt_slot, confused_det), per_image(gt_slot, ~crowd),
        )
    ]
    labels = [names[c] for c in category_ids] + [BACKGROUND]
    return ConfusionMatrix(labels, counts, float(iou_threshold), float(score_threshold), frames)

