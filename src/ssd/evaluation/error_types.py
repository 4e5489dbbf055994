"""Where the missing AP goes: TIDE's error types (Bolya et al., ECCV 2020) and the AP gained by fixing each.

The definitions and numbers are those of ``tidecv`` (its ``TIDE(pos_threshold=0.5,
background_threshold=0.1)`` on boxes), reimplemented on NumPy because ``tidecv`` walks every
detection in Python and needs OpenCV (the tests compare the two). Per image, the 100 best detections
are matched in score order to the same-class ground truth of highest IoU, a true positive at
IoU >= 0.5; crowd regions swallow unmatched detections of their class covering them by more than 0.5
(of the detection's area). Each false positive is then, in this order:

- **Loc**: IoU with an object of its class in [0.1, 0.5] (it would count if better placed);
- **Cls**: IoU >= 0.5 with an object of another class;
- **Dupe**: IoU >= 0.5 with an object of its class that a better detection already took;
- **Bkg**: IoU <= 0.1 with every object;
- **Both**: anything else (wrong class and badly placed);

and an object nothing matched, which no Loc or Cls error could claim, is **Miss**. The AP gained by a
type is AP50 (101 recall points, classes averaged) with every error of that type fixed, minus AP50 as it
is: a Loc or Cls detection becomes a true positive (the highest-scoring one per object; the others go),
Dupe, Bkg and Both detections are removed, and a missed object leaves the ground truth. Also:
``FalsePos``, AP50 if every false positive scored 0, and ``FalseNeg``, AP50 if no object were missed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssd.evaluation.boxes import coco_boxes_xyxy, covered_fraction, pairwise_iou

ERROR_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")  # tidecv's order
SPECIAL_TYPES = ("FalsePos", "FalseNeg")
POSITIVE_IOU, BACKGROUND_IOU, MAX_DETECTIONS = 0.5, 0.1, 100


@dataclass(frozen=True)
class ErrorTypes:
    """AP50 as it is, the AP50 points each type costs (overall and per class name), and how many errors of each type."""

    ap50: float
    gained: dict[str, float]
    counts: dict[str, int]
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)  # class -> {"AP50": ..., type: gain or None}

    def to_dict(self) -> dict[str, Any]:
        return {"AP50": self.ap50, "gained": self.gained, "counts": self.counts, "per_class": self.per_class}


@dataclass
class _Point:
    """A detection's data point: its class, score, whether it is a true positive, and its error."""

    label: int
    score: float
    correct: bool
    error: str | None = None
    fixed_label: int | None = None  # Loc / Cls: the class it counts for when fixed, if it wins its object
    ignored: bool = False  # on a crowd region: no data point, but still an error


def error_types(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], class_names: Mapping[int, str] | None = None,
) -> ErrorTypes:
    """TIDE's error breakdown of COCO-results ``detections`` on COCO ``ground_truth`` (module docstring)."""
    names = {int(c["id"]): str((class_names or {}).get(int(c["id"]), c.get("name", c["id"]))) for c in ground_truth["categories"]}
    truths: dict[int, list[Mapping[str, Any]]] = {}
    for ann in ground_truth["annotations"]:
        truths.setdefault(int(ann["image_id"]), []).append(ann)
    found: dict[int, list[Mapping[str, Any]]] = {}
    for det in detections:
        found.setdefault(int(det["image_id"]), []).append(det)

    points: list[_Point] = []
    positives: dict[int, int] = {}
    missed: list[int] = []  # the class of every missed object
    for image in ground_truth["images"]:
        image_id = int(image["id"])
        objects = [a for a in truths.get(image_id, []) if not a.get("iscrowd", 0)]
        crowds = [a for a in truths.get(image_id, []) if a.get("iscrowd", 0)]
        for a in objects:
            positives[int(a["category_id"])] = positives.get(int(a["category_id"]), 0) + 1
        dets = sorted(found.get(image_id, []), key=lambda d: -float(d["score"]))[:MAX_DETECTIONS]
        points += _image_points(objects, crowds, dets, missed)

    base = _mean_ap(points, positives, lambda p: (p.label, p.correct) if not p.ignored else None)
    gained: dict[str, float] = {}
    per_class_gain: dict[str, dict[str, float | None]] = {name: {} for name in names.values()}
    for kind in ERROR_TYPES:
        fixed_positives = dict(positives)
        if kind == "Miss":
            for label in missed:
                fixed_positives[label] -= 1
        fixed = _mean_ap(points, fixed_positives, lambda p, kind=kind: _fixed(p, kind))
        gained[kind] = max(fixed[0] - base[0], 0.0)
        for label in base[1]:  # None: the fix leaves the class nothing to measure (all its objects missed)
            ap = fixed[1].get(label)
            per_class_gain[names[label]][kind] = None if ap is None else max(ap - base[1][label], 0.0)
    false_pos = _mean_ap(points, positives, lambda p: None if p.ignored else (p.label, p.correct), zero_false=True)
    false_neg_positives = dict(positives)
    for point_label in _false_negative_labels(points, positives):
        false_neg_positives[point_label] -= 1
    false_neg = _mean_ap(points, false_neg_positives, lambda p: None if p.ignored else (p.label, p.correct))
    gained["FalsePos"], gained["FalseNeg"] = false_pos[0] - base[0], false_neg[0] - base[0]
    counts = {kind: sum(p.error == kind for p in points) for kind in ERROR_TYPES if kind != "Miss"}
    counts["Miss"] = len(missed)
    per_class = {names[label]: {"AP50": ap, **per_class_gain[names[label]]} for label, ap in base[1].items()}
    return ErrorTypes(base[0], gained, counts, per_class)


def _image_points(objects: list, crowds: list, dets: list, missed: list[int]) -> list[_Point]:
    """One image's data points (matching and error types), appending the classes of its missed objects to ``missed``."""
    obj_labels = np.array([int(a["category_id"]) for a in objects], dtype=np.int64)
    labels = [int(d["category_id"]) for d in dets]
    points = [_Point(label, float(d["score"]), False) for label, d in zip(labels, dets)]
    if not objects:
        for point in points:
            point.error = "Bkg"
        _points_on_crowds(points, dets, crowds)
        return points
    if not dets:
        missed += obj_labels.tolist()
        return points
    iou = pairwise_iou(coco_boxes_xyxy([d["bbox"] for d in dets]), coco_boxes_xyxy([a["bbox"] for a in objects]))
    same = np.array(labels)[:, None] == obj_labels[None, :]
    same_iou = iou * same
    buffer = same_iou.copy()
    used = np.zeros(len(objects), dtype=bool)
    for k in range(len(dets)):
        best = int(buffer[k].argmax())
        if buffer[k, best] >= POSITIVE_IOU:
            points[k].correct, used[best] = True, True
            buffer[:, best] = 0
    _points_on_crowds(points, dets, crowds)
    other_iou = iou * ~same
    best_score = np.full(len(objects), -1.0)  # the best Loc/Cls detection each unused object could become
    claimant = np.full(len(objects), -1)
    for k, point in enumerate(points):
        if point.correct:
            continue
        target = int(same_iou[k].argmax())
        if BACKGROUND_IOU <= same_iou[k, target] <= POSITIVE_IOU:
            point.error = "Loc"
        else:
            target = int(other_iou[k].argmax())
            if other_iou[k, target] >= POSITIVE_IOU:
                point.error = "Cls"
            elif (same_iou[k] * used).max() >= POSITIVE_IOU:
                point.error = "Dupe"
            elif iou[k].max() <= BACKGROUND_IOU:
                point.error = "Bkg"
            else:
                point.error = "Both"
        if point.error in ("Loc", "Cls") and not used[target]:
            if best_score[target] < point.score:
                best_score[target], claimant[target] = point.score, k
    for target, k in enumerate(claimant.tolist()):
        if k >= 0:
            points[k].fixed_label = points[k].label if points[k].error == "Loc" else int(obj_labels[target])
    missed += obj_labels[~used & (claimant < 0)].tolist()
    return points


def _points_on_crowds(points: list[_Point], dets: list, crowds: list) -> None:
    """Mark as ignored each unmatched detection covering a crowd region of its class by more than 0.5 of its area."""
    if not crowds:
        return
    covered = covered_fraction(coco_boxes_xyxy([d["bbox"] for d in dets]), coco_boxes_xyxy([a["bbox"] for a in crowds]))
    region_labels = np.array([int(a["category_id"]) for a in crowds])
    for k, point in enumerate(points):
        if not point.correct and (covered[k][region_labels == point.label] > POSITIVE_IOU).any():
            point.ignored = True


def _fixed(point: _Point, kind: str) -> tuple[int, bool] | None:
    """A data point with errors of ``kind`` fixed: (class, correct), or None when it goes."""
    if point.error != kind:
        return None if point.ignored else (point.label, point.correct)
    if kind in ("Loc", "Cls"):
        return None if point.fixed_label is None else (point.fixed_label, True)
    return None  # Dupe, Bkg, Both: removed


def _false_negative_labels(points: list[_Point], positives: dict[int, int]) -> list[int]:
    """The class of every object no detection matched (recall's shortfall), for ``FalseNeg``."""
    matched: dict[int, int] = {}
    for point in points:
        if point.correct:
            matched[point.label] = matched.get(point.label, 0) + 1
    return [label for label, count in positives.items() for _ in range(count - matched.get(label, 0))]


def _mean_ap(points: list[_Point], positives: dict[int, int], view, zero_false: bool = False) -> tuple[float, dict[int, float]]:
    """AP50 averaged over the classes with an object or a data point, and per class, of the data points ``view`` keeps."""
    by_class: dict[int, list[tuple[float, bool]]] = {}
    for point in points:
        kept = view(point)
        if kept is not None:
            label, correct = kept
            score = (1.0 if correct else 0.0) if zero_false else point.score
            by_class.setdefault(label, []).append((score, correct))
    labels = [label for label in {**positives, **by_class} if positives.get(label, 0) or by_class.get(label)]
    aps = {label: _ap(by_class.get(label, []), positives.get(label, 0)) for label in labels}
    return (sum(aps.values()) / len(aps) if aps else 0.0), aps


def _ap(scored: list[tuple[float, bool]], positives: int) -> float:
    """COCO-style AP of (score, correct) points: the precision envelope at 101 recall points (0 without objects)."""
    if positives <= 0 or not scored:
        return 0.0
    order = sorted(range(len(scored)), key=lambda k: -scored[k][0])
    correct = np.array([scored[k][1] for k in order], dtype=np.float64)
    true = np.cumsum(correct)
    precision = true / np.arange(1, len(correct) + 1)
    recall = true / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.searchsorted(recall, np.arange(101) / 100, side="left")  # k / 100, not linspace's rounding: tidecv's points
    return float(np.where(indices < len(precision), precision[np.minimum(indices, len(precision) - 1)], 0.0).sum() / 101)
