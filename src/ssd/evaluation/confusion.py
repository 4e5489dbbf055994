"""A confusion matrix between classes at a stated IoU and score, and each frame's errors at that point.

Per image, the detections scoring at least ``score_threshold`` are taken by descending score; each is
matched to the not yet matched ground-truth box of any class with which its IoU is highest, if that
IoU is at least ``iou_threshold``. A match counts in row (true class, predicted class); a detection
left unmatched in (background, predicted class); a ground-truth box left unmatched in (true class,
background). Detections on crowd regions (COCO's intersection over the detection's own area at least
``iou_threshold``) and the crowd regions themselves count nowhere, as COCOeval ignores them.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

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
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *, iou_threshold: float = 0.5, score_threshold: float = 0.5,
    class_names: Mapping[int, str] | None = None,
) -> ConfusionMatrix:
    """The matrix of COCO ground truth against COCO-results ``detections`` (see the module docstring)."""
    category_ids = sorted(int(c["id"]) for c in ground_truth["categories"])
    names = {int(c["id"]): str((class_names or {}).get(int(c["id"]), c.get("name", c["id"]))) for c in ground_truth["categories"]}
    row = {category_id: k for k, category_id in enumerate(category_ids)}
    background = len(category_ids)
    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    truths: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ann in ground_truth["annotations"]:
        truths[int(ann["image_id"])].append(ann)
    found: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for det in detections:
        if float(det["score"]) >= score_threshold:
            found[int(det["image_id"])].append(det)
    frames = []
    for image in ground_truth["images"]:
        image_id = int(image["id"])
        gts = [g for g in truths.get(image_id, []) if not g.get("iscrowd", 0)]
        crowds = [g for g in truths.get(image_id, []) if g.get("iscrowd", 0)]
        dets = sorted(found.get(image_id, []), key=lambda d: -float(d["score"]))
        dets = [d for d, on_crowd in zip(dets, _on_crowd(dets, crowds, iou_threshold)) if not on_crowd]
        true_rows = [row[int(g["category_id"])] for g in gts]
        matched_gt = np.zeros(len(gts), dtype=bool)
        missed = false_positives = confused = 0
        iou = box_iou(coco_boxes_xyxy([d["bbox"] for d in dets]), coco_boxes_xyxy([g["bbox"] for g in gts])).numpy() if dets and gts else None
        for k, det in enumerate(dets):
            predicted = row[int(det["category_id"])]
            best = -1
            if iou is not None:
                candidates = np.where(matched_gt, -1.0, iou[k])
                best = int(candidates.argmax())
                if candidates[best] < iou_threshold:
                    best = -1
            if best < 0:
                counts[background, predicted] += 1
                false_positives += 1
            else:
                matched_gt[best] = True
                counts[true_rows[best], predicted] += 1
                confused += true_rows[best] != predicted
        for g, matched in zip(true_rows, matched_gt.tolist()):
            if not matched:
                counts[g, background] += 1
                missed += 1
        frames.append(FrameErrors(image_id, missed, false_positives, int(confused), len(gts)))
    labels = [names[c] for c in category_ids] + [BACKGROUND]
    return ConfusionMatrix(labels, counts, float(iou_threshold), float(score_threshold), frames)


def _on_crowd(dets: list[Mapping[str, Any]], crowds: list[Mapping[str, Any]], iou_threshold: float) -> list[bool]:
    """Whether each detection lies on a crowd region (intersection over its own area >= the threshold)."""
    if not dets or not crowds:
        return [False] * len(dets)
    d, c = coco_boxes_xyxy([x["bbox"] for x in dets]), coco_boxes_xyxy([x["bbox"] for x in crowds])
    lt, rb = torch.max(d[:, None, :2], c[None, :, :2]), torch.min(d[:, None, 2:], c[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    own = ((d[:, 2:] - d[:, :2]).prod(dim=1)).clamp(min=1e-12)
    return ((inter / own[:, None]).amax(dim=1) >= iou_threshold).tolist()


def coco_boxes_xyxy(boxes: list[Sequence[float]]) -> torch.Tensor:
    """COCO ``[x, y, w, h]`` boxes as ``[N, 4]`` float64 corners."""
    xywh = torch.tensor([list(map(float, b)) for b in boxes], dtype=torch.float64).reshape(-1, 4)
    return torch.cat((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), dim=1)
